package filters_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestFiltersDependOnNothingOfTheGateway keeps the arrow between the gateway and its
// plugins pointing one way: the gateway imports the filters, so no non-test file under
// filters/ may import the gateway (gateway/, cmd/, admin/, ...), directly or through a
// package it imports. Of this module, filters may use filters/... and internal/... only,
// and what they use must obey the same rule.
func TestFiltersDependOnNothingOfTheGateway(t *testing.T) {
	root, module := moduleRoot(t)
	for _, v := range upwardImports(t, root, module, "filters") {
		t.Error(v)
	}
}

// TestUpwardImportsCatchesAPlant proves that the check above can fail: a filter (or a
// package it uses) that imports the gateway, in a throwaway module, is reported with
// the chain of imports that leads there; a test file importing it is not.
func TestUpwardImportsCatchesAPlant(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		files map[string]string
		want  []string
	}{
		{desc: "clean", files: map[string]string{
			"filters/a/a.go":       "package a\nimport _ \"example.com/m/internal/x\"\n",
			"filters/a/a_test.go":  "package a\nimport _ \"example.com/m/gateway/config\"\n",
			"internal/x/x.go":      "package x\nimport _ \"fmt\"\n",
			"gateway/config/c.go":  "package config\nimport _ \"example.com/m/filters/a\"\n",
			"filters/b/testdata/t": "not go",
		}},
		{desc: "direct", files: map[string]string{
			"filters/a/setup.go":  "package a\nimport (\n\t\"fmt\"\n\t\"example.com/m/gateway/config\"\n)\n",
			"gateway/config/c.go": "package config\n",
		}, want: []string{"filters/a imports example.com/m/gateway/config"}},
		{desc: "through internal", files: map[string]string{
			"filters/a/a.go":     "package a\nimport _ \"example.com/m/internal/x\"\n",
			"internal/x/x.go":    "package x\nimport _ \"example.com/m/cmd/floodgate\"\n",
			"cmd/floodgate/m.go": "package main\n",
		}, want: []string{"filters/a imports example.com/m/internal/x, which imports example.com/m/cmd/floodgate"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			for name, src := range tc.files {
				p := filepath.Join(dir, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := upwardImports(t, dir, "example.com/m", "filters")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// moduleRoot finds go.mod above the working directory and the module's path.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return dir, strings.TrimSpace(m)
				}
			}
			t.Fatalf("%s/go.mod names no module", dir)
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = up
	}
}

// upwardImports lists, for every package under top (a folder of the module in root), each
// import of the module outside top/ and internal/ that its non-test files reach, with the
// chain that leads to it. Files are read with go/parser, whatever their build tags.
func upwardImports(t *testing.T, root, module, top string) []string {
	t.Helper()
	imports := map[string][]string{} // package dir (slash, relative to root) -> module imports, relative
	var load func(rel string) []string
	load = func(rel string) []string {
		if imps, ok := imports[rel]; ok {
			return imps
		}
		imports[rel] = nil
		entries, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		set := map[string]bool{}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, filepath.FromSlash(rel), name), nil, parser.ImportsOnly)
			if err != nil {
				t.Errorf("%s/%s: %v", rel, name, err)
				continue
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if r, ok := strings.CutPrefix(p, module+"/"); ok {
					set[r] = true
				}
			}
		}
		var imps []string
		for p := range set {
			imps = append(imps, p)
		}
		sort.Strings(imps)
		imports[rel] = imps
		return imps
	}
	allowed := func(rel string) bool {
		return rel == top || strings.HasPrefix(rel, top+"/") || rel == "internal" || strings.HasPrefix(rel, "internal/")
	}
	var out []string
	var walk func(pkg string, chain []string, seen map[string]bool)
	walk = func(pkg string, chain []string, seen map[string]bool) {
		for _, imp := range load(pkg) {
			c := append(chain[:len(chain):len(chain)], module+"/"+imp)
			if !allowed(imp) {
				out = append(out, chain[0]+" imports "+strings.Join(c[1:], ", which imports "))
				continue
			}
			if !seen[imp] {
				seen[imp] = true
				walk(imp, c, seen)
			}
		}
	}
	err := filepath.WalkDir(filepath.Join(root, top), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); name == "testdata" || (path != filepath.Join(root, top) && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_"))) {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		walk(rel, []string{rel}, map[string]bool{rel: true})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
