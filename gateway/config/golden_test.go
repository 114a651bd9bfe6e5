package config_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"

	_ "github.com/floodgate/floodgate/filters/all"
)

var update = flag.Bool("update", false, "rewrite the expected output of the golden files")

const separator = "\n----------\n"

// TestGolden runs every testdata/validate/*.txt: a configuration, a separator line, then
// the expected result - the errors, one per line, as `floodgate validate` prints them, or
// "valid" and the effective configuration as /config shows it (every default and derived
// value filled in, so that a change of a default shows in the diff) - Caddy's
// caddyfile_adapt tests in spirit. Run with -update to rewrite the expectations after an
// intended change, and review the diff.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/validate/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(b), separator)
			if !ok {
				t.Fatalf("%s: no separator line", f)
			}
			var got string
			doc, err := config.Parse("input.yaml", []byte(in))
			var cfg *config.Config
			if err == nil {
				cfg, err = config.Load(doc)
			}
			if err != nil {
				got = err.Error() + "\n"
			} else {
				eff, err := json.MarshalIndent(cfg, "", "  ")
				if err != nil {
					t.Fatalf("the effective configuration does not marshal: %v", err)
				}
				got = "valid\n" + string(eff) + "\n"
			}
			if *update {
				os.WriteFile(f, []byte(in+separator+got), 0o644)
				return
			}
			if got != want {
				t.Errorf("%s:\n--- got ---\n%s--- want ---\n%s", f, got, want)
			}
		})
	}
}
