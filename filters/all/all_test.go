package all_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/filters"
	_ "github.com/floodgate/floodgate/filters/all"
)

const module = "github.com/floodgate/floodgate/filters/"

// notFilters are the folders of filters/ that hold no filter: this list, the decoder of
// filter configurations and the test kit.
var notFilters = map[string]bool{"all": true, "decode": true, "filtertest": true}

// TestOnePluginList checks filters/order.go, this package's imports and the filter
// folders against each other, both ways: a name in Order that nothing registers would
// only be found at config time as "unknown filter"; a folder not imported here is dead
// code; a filter without a README has no documentation.
func TestOnePluginList(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "all.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var imported []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name, ok := strings.CutPrefix(p, module)
		if !ok || strings.Contains(name, "/") {
			t.Errorf("all.go imports %s: only filter packages (%s<name>) belong here", p, module)
			continue
		}
		imported = append(imported, name)
	}
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		if e.IsDir() && !notFilters[e.Name()] {
			folders = append(folders, e.Name())
		}
	}

	for _, name := range filters.Order {
		if _, ok := filters.Lookup(name); !ok {
			t.Errorf("%s is in filters/order.go but registered by no package imported in filters/all/all.go", name)
		}
		if !slices.Contains(imported, name) {
			t.Errorf("%s is in filters/order.go but filters/all/all.go does not import %s%s", name, module, name)
		}
		if !slices.Contains(folders, name) {
			t.Errorf("%s is in filters/order.go but has no folder filters/%s", name, name)
		}
	}
	for _, name := range filters.Names() {
		if !slices.Contains(filters.Order, name) { // Register panics first; kept for clarity
			t.Errorf("%s is registered but not in filters/order.go", name)
		}
	}
	for _, name := range imported {
		if !slices.Contains(filters.Order, name) {
			t.Errorf("filters/all/all.go imports %s, which filters/order.go does not list", name)
		}
	}
	for _, name := range folders {
		if !slices.Contains(imported, name) {
			t.Errorf("folder filters/%s is not imported by filters/all/all.go", name)
		}
		if _, err := os.Stat(filepath.Join("..", name, "README.md")); err != nil {
			t.Errorf("filters/%s has no README.md (name, configuration, verdicts, metrics, examples)", name)
		}
	}
	if len(filters.Order) == 0 {
		t.Fatal("filters.Order is empty")
	}
}
