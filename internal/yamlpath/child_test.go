package yamlpath

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestChild(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("routes:\n  a:\n    prefixes: [/x, /y]\n"), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for _, c := range []struct {
		desc string
		path []string
		want string // the scalar found, or "" for none
	}{
		{desc: "mapping keys then a sequence index", path: []string{"routes", "a", "prefixes", "1"}, want: "/y"},
		{desc: "a missing key", path: []string{"routes", "b"}},
		{desc: "an index past the end", path: []string{"routes", "a", "prefixes", "2"}},
		{desc: "a negative index", path: []string{"routes", "a", "prefixes", "-1"}},
		{desc: "an index that is not a number", path: []string{"routes", "a", "prefixes", "x"}},
		{desc: "below a scalar", path: []string{"routes", "a", "prefixes", "0", "z"}},
	} {
		n := root
		for _, s := range c.path {
			if n = Child(n, s); n == nil {
				break
			}
		}
		got := ""
		if n != nil {
			got = n.Value
		}
		if got != c.want {
			t.Errorf("%s: %v gave %q, want %q", c.desc, c.path, got, c.want)
		}
	}
}
