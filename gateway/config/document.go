package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/internal/yamlsafe"
)

// Document is the file layer: a parsed YAML configuration and the name it is reported
// under (its path). It is never modified after parsing.
type Document struct {
	Name string
	Root *yaml.Node // the top-level mapping
	// Hash identifies the content (for "skip equal content" and /config).
	Raw []byte
}

// ParseFile reads and parses a configuration file.
func ParseFile(path string) (*Document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{Where: path, Msg: fmt.Sprintf("cannot read: %v", err)}}
	}
	return Parse(path, b)
}

// Parse parses YAML bytes reported under name.
func Parse(name string, b []byte) (*Document, error) {
	// Decoding into a node tree expands nothing; yamlsafe refuses anchors, aliases and
	// duplicate keys before any decoder walks the tree.
	n, err := yamlsafe.ParseOne(name, b)
	if err != nil {
		var safeErr *yamlsafe.Error
		if !errors.As(err, &safeErr) {
			return nil, Errors{{Where: name, Msg: err.Error()}}
		}
		var errs Errors
		for _, p := range safeErr.Problems {
			where := name
			if p.Line > 0 {
				where = fmt.Sprintf("%s:%d", name, p.Line)
			}
			errs = append(errs, &Error{Where: where, Msg: p.Msg})
		}
		return nil, errs
	}
	if n.Kind != yaml.MappingNode {
		return nil, Errors{{Where: fmt.Sprintf("%s:%d", name, n.Line), Msg: "the top level must be a mapping (server:, pools:, routes:, ...)"}}
	}
	return &Document{Name: name, Root: n, Raw: b}, nil
}

// Override is one value set on top of the file: a Consul key under the prefix
// (routes/<route>/enabled, routes/<route>/<filter>/<param>) or an entry of a plan.
type Override struct {
	// Path is relative to the prefix, slash-separated, e.g. "routes/lottery/token_bucket/rate".
	Path string `json:"path"`
	// Value is the scalar as written; it is typed by the field it lands in.
	Value string `json:"value"`
	// Origin names where it came from, e.g. "consul:floodgate/routes/lottery/enabled"
	// or "plan:midnight".
	Origin string `json:"origin"`
}

// routeFields are the keys of a route that an override path addresses directly;
// any other third segment names a filter (routes/<route>/<filter>/<param>).
var routeFields = func() map[string]bool {
	m := map[string]bool{}
	for name := range yamlsafe.StructFields(reflectTypeOfRoute) {
		m[name] = true
	}
	return m
}()

// TreePath maps an override's path to the path in the configuration tree:
// routes/<r>/<filter>/<param...> becomes routes.<r>.filters.<filter>.<param...>;
// route fields (enabled, timeout, fallback/status, ...) and pools/... map as they are.
func TreePath(p string) ([]string, error) {
	p = strings.Trim(p, "/")
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("path %q has an empty segment", p)
		}
	}
	switch segs[0] {
	case "routes":
		if len(segs) < 3 {
			return nil, fmt.Errorf("path %q: want routes/<route>/<field> or routes/<route>/<filter>/<param>", p)
		}
		if routeFields[segs[2]] {
			if segs[2] == "filters" && len(segs) < 5 {
				return nil, fmt.Errorf("path %q: want routes/<route>/filters/<filter>/<param>", p)
			}
			return segs, nil
		}
		if len(segs) < 4 {
			return nil, fmt.Errorf("path %q: %q is neither a route field nor a filter parameter path (routes/<route>/<filter>/<param>)", p, segs[2])
		}
		out := append([]string{"routes", segs[1], "filters"}, segs[2:]...)
		return out, nil
	case "pools":
		if len(segs) < 3 {
			return nil, fmt.Errorf("path %q: want pools/<pool>/<field>", p)
		}
		return segs, nil
	}
	return nil, fmt.Errorf("path %q: only routes/... and pools/... can be overridden live (server and admin settings need a restart)", p)
}

// tree is a working copy of a Document with overrides applied, remembering where each
// node came from.
type tree struct {
	file    string
	root    *yaml.Node
	origins map[*yaml.Node]string
	// created: "routes.<name>" and "pools.<name>" that an override named but the file
	// does not define (a typo in a key: routes/lotery/enabled)
	created map[string]bool
	// index maps a mapping node's keys to their value nodes, built at the first
	// override that walks through it: with thousands of routes, scanning the routes
	// mapping for every key made an update quadratic in the number of keys
	index map[*yaml.Node]map[string]int
}

func (t *tree) where(n *yaml.Node) string {
	if o, ok := t.origins[n]; ok {
		return o
	}
	if n.Line > 0 {
		return fmt.Sprintf("%s:%d", t.file, n.Line)
	}
	return t.file
}

func copyNode(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return copyNode(n.Alias)
	}
	c := *n
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, child := range n.Content {
			c.Content[i] = copyNode(child)
		}
	}
	return &c
}

func newTree(doc *Document) *tree {
	return &tree{file: doc.Name, root: copyNode(doc.Root), origins: map[*yaml.Node]string{}, created: map[string]bool{}}
}

// set applies one override, creating mappings on the way.
func (t *tree) set(o Override) *Error {
	segs, err := TreePath(o.Path)
	if err != nil {
		return &Error{Where: o.Origin, Msg: err.Error()}
	}
	n := t.root
	for i, s := range segs {
		if n.Kind != yaml.MappingNode {
			return &Error{Where: o.Origin, Path: strings.Join(segs[:i], "."), Msg: fmt.Sprintf("is a %s, cannot set %q inside it", yamlsafe.KindName(n), s)}
		}
		var child *yaml.Node
		if t.index == nil {
			t.index = map[*yaml.Node]map[string]int{}
		}
		idx, ok := t.index[n]
		if !ok {
			idx = make(map[string]int, len(n.Content)/2)
			for j := 0; j+1 < len(n.Content); j += 2 {
				if _, dup := idx[n.Content[j].Value]; !dup {
					idx[n.Content[j].Value] = j // the first, as the scan found it
				}
			}
			t.index[n] = idx
		}
		if j, ok := idx[s]; ok {
			child = n.Content[j+1]
			if child.Kind == yaml.AliasNode {
				child = copyNode(child)
				n.Content[j+1] = child
			}
		}
		last := i == len(segs)-1
		if child == nil {
			key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
			if last {
				child = &yaml.Node{Kind: yaml.ScalarNode}
			} else {
				child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			}
			t.origins[key] = o.Origin
			t.origins[child] = o.Origin
			idx[s] = len(n.Content)
			n.Content = append(n.Content, key, child)
			if i == 1 && (segs[0] == "routes" || segs[0] == "pools") {
				t.created[segs[0]+"."+s] = true
			}
		}
		if last {
			if child.Kind != yaml.ScalarNode {
				return &Error{Where: o.Origin, Path: strings.Join(segs, "."), Msg: fmt.Sprintf("is a %s; an override sets single values only", yamlsafe.KindName(child))}
			}
			*child = yaml.Node{Kind: yaml.ScalarNode, Value: o.Value}
			if o.Value == "" {
				child.Tag = "!!str"
			}
			t.origins[child] = o.Origin
			return nil
		}
		n = child
	}
	return nil
}

// Leaf is one value that was set, with where it came from (for /config).
type Leaf struct {
	Path   string `json:"path"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

func (t *tree) leaves() []Leaf {
	var out []Leaf
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], append(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(path, fmt.Sprint(i)))
			}
		case yaml.AliasNode:
			walk(n.Alias, path)
		case yaml.ScalarNode:
			v := n.Value
			if strings.Contains(strings.Join(path, "."), "token") && !strings.HasSuffix(strings.Join(path, "."), "token_file") && path[0] == "admin" {
				v = "(redacted)"
			}
			out = append(out, Leaf{Path: strings.Join(path, "."), Value: v, Source: t.where(n)})
		}
	}
	walk(t.root, nil)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Change is one value that differs between two configurations.
type Change struct {
	Path   string `json:"path"`
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
	Source string `json:"source,omitempty"`
}

// Diff lists what changed from old to new (both sorted by path, as Config.Sources is):
// values added, removed, changed, or whose source changed.
func Diff(old, new []Leaf) []Change {
	var out []Change
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j >= len(new) || (i < len(old) && old[i].Path < new[j].Path):
			out = append(out, Change{Path: old[i].Path, Old: old[i].Value, Source: "(removed)"})
			i++
		case i >= len(old) || new[j].Path < old[i].Path:
			out = append(out, Change{Path: new[j].Path, New: new[j].Value, Source: new[j].Source})
			j++
		default:
			if old[i].Value != new[j].Value || old[i].Source != new[j].Source {
				out = append(out, Change{Path: new[j].Path, Old: old[i].Value, New: new[j].Value, Source: new[j].Source})
			}
			i++
			j++
		}
	}
	return out
}
