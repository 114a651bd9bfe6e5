// Package yamlpath finds where a value stands in a YAML document, so that decoders can
// name the line of a bad value.
package yamlpath

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Line returns the line of the node at path (mapping keys as strings, sequence indexes
// as ints) below n - or of the deepest node on the way that exists.
func Line(n *yaml.Node, path ...any) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, el := range path {
		switch k := el.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

// Problems collects validation problems, each located by its path: "line 6:
// stages[0].hold.rate: must not be negative, got -5".
type Problems struct {
	// Line finds the line of a path (e.g. a closure over Line and the document); nil
	// or 0 leaves the line out.
	Line func(path ...any) int
	List []string
}

// Add records a problem at path (mapping keys as strings, sequence indexes as ints).
func (p *Problems) Add(path []any, format string, args ...any) {
	var b strings.Builder
	if p.Line != nil {
		if l := p.Line(path...); l > 0 {
			fmt.Fprintf(&b, "line %d: ", l)
		}
	}
	for i, el := range path {
		switch k := el.(type) {
		case string:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	b.WriteString(": ")
	fmt.Fprintf(&b, format, args...)
	p.List = append(p.List, b.String())
}

// Err returns nil without problems, else one error listing them, one per line.
func (p *Problems) Err() error {
	if len(p.List) == 0 {
		return nil
	}
	return errors.New(strings.Join(p.List, "\n"))
}

// At builds a path: At("stages", 0, "hold", "rate").
func At(els ...any) []any { return els }

var unknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type .*$`)

// CleanError rewrites yaml.v3's decoding errors for people: "line 6: unknown field
// \"colour\"" instead of Go type names, one problem per line, no "yaml: " prefix.
func CleanError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			if s := unknownField.FindStringSubmatch(m); s != nil {
				m = fmt.Sprintf("line %s: unknown field %q", s[1], s[2])
			}
			msgs[i] = m
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// Child is n's value under one path element: a mapping's value for key s, or a sequence's
// item at index s (decimal); nil when n has none.
func Child(n *yaml.Node, s string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == s {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}
