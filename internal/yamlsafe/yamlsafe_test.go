package yamlsafe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		desc, src string
		want      []string // substrings of the error; none: accepted
	}{
		{"plain mapping", "a: 1\nb: {c: 2}\nd: [1, 2]\n", nil},
		{"multi-document plain", "a: 1\n---\nb: 2\n", nil},
		{"empty", "", nil},
		{"anchor and alias", "a: &x 1\nb: *x\n", []string{"t.yaml:1: YAML anchor &x", "t.yaml:2: YAML alias *x"}},
		{"merge key", "c: &c {t: 1}\nr: {<<: *c, p: 2}\n", []string{"anchor &c", "alias *c"}},
		{"duplicate key", "routes:\n  a: {path: /a}\n  b: {path: /b}\n  a: {path: /grant}\n", []string{`t.yaml:4: key "a" given twice (lines 2 and 4)`}},
		{"duplicate key in a second document", "a: 1\n---\nb: 1\nb: 2\n", []string{`key "b" given twice`}},
		{"the same key in different mappings is fine", "a: {x: 1}\nb: {x: 2}\n", nil},
	} {
		err := Check("t.yaml", []byte(tc.src))
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v, want accepted", tc.desc, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted, want %q", tc.desc, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.desc, err, w)
			}
		}
	}
}

// TestAliasBombsRefused: every alias bomb of the attack corpus is refused by Check
// before anything expands it (a test that expanded one would run out of memory).
func TestAliasBombsRefused(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/attacks/yaml/*.yaml")
	if len(files) == 0 {
		t.Fatal("no corpus in testdata/attacks/yaml")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		err = Check(filepath.Base(f), b)
		if err == nil || !strings.Contains(err.Error(), "not accepted") {
			t.Errorf("%s: %v, want refused", f, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("a: 1\na: 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Check("f", b) // must not panic or expand
	})
}
