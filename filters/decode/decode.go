// Package decode reads a filter's configuration from YAML: strictly (an unknown field is
// an error naming it and the known ones), validated, with its derived defaults filled in.
// The gateway's configuration (gateway/config) decodes every route's filters through
// Config, and the filter test kit (filters/filtertest) through Filter, so that a filter's
// tests see exactly the rules and messages operators see.
//
// It depends on nothing of the gateway: filters and their tests import it, and the
// gateway imports them.
package decode

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/yamlpath"
	"github.com/floodgate/floodgate/internal/yamlsafe"
)

// Problem is one problem with a filter's configuration.
type Problem struct {
	// Node is the YAML node a decoding problem is about. It is nil for a problem that
	// Validate found: Validate names a field (Path), not a node.
	Node *yaml.Node
	// Path is the field's path, below the path given to Config.
	Path []string
	Msg  string
}

// Fields decodes node (a filter's parameters: the mapping under
// routes.<route>.filters.<name>, without the common enabled and shadow) strictly into a
// fresh Config from def.New, which holds the defaults. It neither validates nor fills in
// derived defaults: the conformance kit checks with it that Validate changes nothing.
func Fields(def filters.Definition, node *yaml.Node, path []string) (filters.Config, []Problem) {
	cfg := def.New()
	d := &yamlsafe.Decoder{}
	d.Decode(node, reflect.ValueOf(cfg).Elem(), path)
	var out []Problem
	for _, p := range d.Problems {
		out = append(out, Problem{Node: p.Node, Path: p.Path, Msg: p.Msg})
	}
	return cfg, out
}

// Config is Fields, then Validate, then Defaults (filters.Defaulter). It returns the
// Config only when there is no problem. Validate runs even when decoding found problems,
// so that one run names every problem (rate: -10 next to burst: 1e30), leaving out what
// follows from a value that did not decode.
func Config(def filters.Definition, node *yaml.Node, path []string) (filters.Config, []Problem) {
	cfg, problems := Fields(def, node, path)
	if err := cfg.Validate(); err != nil {
		for _, p := range validateProblems(path, err) {
			if !underAny(p.Path, problems) {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	if d, ok := cfg.(filters.Defaulter); ok {
		d.Defaults()
	}
	return cfg, nil
}

// validateProblems turns a Validate error into Problems below path: a filters.FieldError
// under its field, anything else under path itself.
func validateProblems(path []string, err error) []Problem {
	var list []error
	var fes filters.Errors
	if errors.As(err, &fes) {
		list = fes
	} else {
		list = []error{err}
	}
	var out []Problem
	for _, e := range list {
		var fe *filters.FieldError
		if errors.As(e, &fe) {
			msg := fe.Msg
			if fe.Value != nil {
				msg = fmt.Sprintf("%s (got %v)", fe.Msg, fe.Value)
			}
			out = append(out, Problem{Path: append(append([]string{}, path...), strings.Split(fe.Field, ".")...), Msg: msg})
			continue
		}
		out = append(out, Problem{Path: append([]string{}, path...), Msg: e.Error()})
	}
	return out
}

// underAny reports whether path is, contains or lies below the path of one of problems.
func underAny(path []string, problems []Problem) bool {
	p := strings.Join(path, ".")
	for _, e := range problems {
		q := strings.Join(e.Path, ".")
		if p == q || strings.HasPrefix(p, q+".") || strings.HasPrefix(q, p+".") {
			return true
		}
	}
	return false
}

// Error is one located problem of Filter: where (name.yaml:line), the field's path and
// what is wrong.
type Error struct {
	Where string
	Path  string
	Msg   string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", e.Where, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Where, e.Path, e.Msg)
}

// Errors is every problem Filter found, one per line.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Filter decodes, validates and fills in the defaults of the named filter's
// configuration from YAML source (its parameters, as under routes.<route>.filters.<name>,
// without enabled and shadow), with the rules and messages of the gateway's
// configuration; problems are reported as "<name>.yaml:<line>: <field>: <what>".
func Filter(name string, src []byte) (filters.Config, error) {
	return read(name, src, Config)
}

// FilterFields is Filter without Validate and Defaults (see Fields).
func FilterFields(name string, src []byte) (filters.Config, error) {
	return read(name, src, Fields)
}

func read(name string, src []byte, step func(filters.Definition, *yaml.Node, []string) (filters.Config, []Problem)) (filters.Config, error) {
	def, ok := filters.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown filter %q (known: %s)", name, strings.Join(filters.Names(), ", "))
	}
	file := name + ".yaml"
	root, err := yamlsafe.ParseOne(file, src)
	if err != nil {
		return nil, err
	}
	if root.Kind != yaml.MappingNode {
		return nil, Errors{{Where: fmt.Sprintf("%s:%d", file, root.Line), Msg: "want a mapping of parameters, got a " + yamlsafe.KindName(root)}}
	}
	cfg, problems := step(def, root, nil)
	if len(problems) == 0 {
		return cfg, nil
	}
	errs := make(Errors, len(problems))
	lines := make(map[*Error]int, len(problems))
	for i, p := range problems {
		n := p.Node
		if n == nil {
			n = deepest(root, p.Path)
		}
		where := file
		if n.Line > 0 {
			where = fmt.Sprintf("%s:%d", file, n.Line)
		}
		errs[i] = &Error{Where: where, Path: strings.Join(p.Path, "."), Msg: p.Msg}
		lines[errs[i]] = n.Line
	}
	sort.SliceStable(errs, func(i, j int) bool { return lines[errs[i]] < lines[errs[j]] })
	return nil, errs
}

// deepest is the node at path below root, or the deepest one on the way that exists.
func deepest(root *yaml.Node, path []string) *yaml.Node {
	n := root
	for _, s := range path {
		next := yamlpath.Child(n, s)
		if next == nil {
			return n
		}
		n = next
	}
	return n
}
