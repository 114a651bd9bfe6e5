// Package yamlsafe is the one way floodgate reads YAML from anyone: configuration files,
// Consul plan values, ctl input, plan funnels and bench profiles. It parses into a node
// tree (which expands nothing) and refuses, before any decoder can expand them:
//
//   - anchors and aliases (&name, *name, merge keys <<: *name): a few hundred bytes of
//     nested aliases expand to gigabytes (the "billion laughs"), and floodgate's
//     configuration has no use for them;
//   - a key given twice in one mapping: YAML decoders keep the last one silently, so
//     deleting or duplicating one line can turn one route into another.
//
// Every problem is reported with its line, all of them at once.
package yamlsafe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one refused construct.
type Problem struct {
	Line int
	Msg  string
}

// Error lists every problem found in a document; each line is "<name>:<line>: <msg>".
type Error struct {
	Name     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.Name, p.Line, p.Msg)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.Name, p.Msg)
		}
	}
	return b.String()
}

// maxProblems bounds how many problems one document reports.
const maxProblems = 50

// Check parses every document in b and refuses anchors, aliases and duplicate keys. A
// syntax error is returned as the parser reports it. name prefixes the messages.
func Check(name string, b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var problems []Problem
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		problems = walk(&n, problems)
	}
	problems = dedupe(problems)
	if len(problems) > 0 {
		return &Error{Name: name, Problems: problems}
	}
	return nil
}

// CheckNode applies Check's rules to a parsed node tree.
func CheckNode(name string, n *yaml.Node) error {
	if p := dedupe(walk(n, nil)); len(p) > 0 {
		return &Error{Name: name, Problems: p}
	}
	return nil
}

// ParseOne parses b as one YAML document into a node tree (which expands nothing) and
// applies Check's rules to it. It returns the document's top node: an empty mapping for
// an empty or null document. Every problem is an *Error: a syntax error or a second
// document, or everything Check refuses.
func ParseOne(name string, b []byte) (*yaml.Node, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		return nil, &Error{Name: name, Problems: []Problem{{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Name: name, Problems: []Problem{{Line: extra.Line, Msg: "more than one YAML document; a configuration is one document"}}}
	}
	if err := CheckNode(name, &root); err != nil {
		return nil, err
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	return n, nil
}

func walk(n *yaml.Node, problems []Problem) []Problem {
	if n == nil || len(problems) >= maxProblems {
		return problems
	}
	if n.Kind == yaml.AliasNode {
		return append(problems, Problem{n.Line, fmt.Sprintf("YAML alias *%s: anchors and aliases are not accepted (write the value out)", n.Value)})
	}
	if n.Anchor != "" {
		problems = append(problems, Problem{n.Line, fmt.Sprintf("YAML anchor &%s: anchors and aliases are not accepted (write the value out)", n.Anchor)})
	}
	if n.Kind == yaml.MappingNode {
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode {
				if first, dup := seen[k.Value]; dup {
					problems = append(problems, Problem{k.Line, fmt.Sprintf("key %q given twice (lines %d and %d): a YAML mapping takes each key once", k.Value, first, k.Line)})
				} else {
					seen[k.Value] = k.Line
				}
			}
		}
	}
	for _, c := range n.Content {
		problems = walk(c, problems)
		if len(problems) >= maxProblems {
			break
		}
	}
	return problems
}

// dedupe keeps one report of each message per line (a line of nine aliases is one
// problem).
func dedupe(ps []Problem) []Problem {
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
