// Package yamlpath finds where a value stands in a YAML document, so that decoders can
// name the line of a bad value.
package yamlpath

import "gopkg.in/yaml.v3"

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
