package filters_test

import (
	"os"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// TestKeySpellings runs testdata/attacks/keys.txt: every spelling of one user id reads as
// one canonical key, or as a bad key; a parameter given twice is always bad.
func TestKeySpellings(t *testing.T) {
	data, err := os.ReadFile("../testdata/attacks/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	k, err := filters.ParseKeySpec("query:uin as number")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := filters.ParseKeySpec("query:uin")
	n := 0
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 2 {
			t.Fatalf("keys.txt:%d: want QUERY CANONICAL", i+1)
		}
		n++
		r := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?" + f[0]})
		got, st := k.Read(r)
		var desc string
		switch st {
		case filters.KeyBad:
			desc = "bad"
		case filters.KeyMissing:
			desc = "missing"
		default:
			desc = string(got)
		}
		if desc != f[1] {
			t.Errorf("keys.txt:%d: %s reads as %q, want %q", i+1, f[0], desc, f[1])
		}
		// text keys take no canonical form, but a parameter given twice is bad too
		if strings.Count(f[0], "&uin=")+strings.Count(f[0], "&u%69n=") > 0 {
			if _, st := text.Read(r); st != filters.KeyBad {
				t.Errorf("keys.txt:%d: %s as text: %v, want bad", i+1, f[0], st)
			}
		}
	}
	t.Logf("%d spellings", n)
}

func TestParseKeySpecFormat(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"query:uin as number", "query:uin as number", ""},
		{"query:uin as text", "query:uin", ""},
		{"header:X-Uin  as  number", "header:X-Uin as number", ""},
		{"ip as number", "", "an ip key has no format"},
		{"query:uin as int", "", `unknown format "int"`},
	} {
		k, err := filters.ParseKeySpec(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || k.String() != tc.want {
			t.Errorf("%q: %v %v, want %q", tc.in, k, err, tc.want)
		}
	}
}
