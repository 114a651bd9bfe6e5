package yamlsafe

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decoder decodes a YAML node tree into a Go value strictly, walking both together so
// that every problem names the node it came from: a key that is not a field is an error
// that lists the known fields; a wrong type says what was wanted; booleans are true and
// false only (not YAML 1.1's yes/no/on/off). A field's name is its yaml tag, else its Go
// name in lower case; fields tagged "-" are not decodable. Types that implement
// encoding.TextUnmarshaler (filters.Duration, filters.KeySpec) decode from a scalar.
//
// The gateway's configuration and every filter's configuration are decoded by it, so
// that a filter's parameters obey the same rules, with the same messages, as the rest.
type Decoder struct {
	// OnNew, if set, is called with every pointer the decoder allocates (a map element of
	// pointer type, an optional section) before it decodes into it: where a caller fills
	// in the defaults that a value written partly keeps.
	OnNew func(ptr reflect.Value)
	// Problems are what Decode found, in document order.
	Problems []DecodeProblem
}

// DecodeProblem is one value that did not decode: the node it is about, the field's path
// (below the path given to Decode) and what is wrong.
type DecodeProblem struct {
	Node *yaml.Node
	Path []string
	Msg  string
}

func (d *Decoder) errorf(n *yaml.Node, path []string, format string, args ...any) {
	d.Problems = append(d.Problems, DecodeProblem{Node: n, Path: append([]string(nil), path...), Msg: fmt.Sprintf(format, args...)})
}

var textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
var yamlNodeType = reflect.TypeOf(yaml.Node{})

// Decode decodes n into v (addressable), reporting problems under path.
func (d *Decoder) Decode(n *yaml.Node, v reflect.Value, path []string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && v.Kind() != reflect.Ptr {
		return // "key:" with no value keeps the default
	}
	if v.Type() == yamlNodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a single value, got a %s", KindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.errorf(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Ptr:
		if v.Type().Elem() == yamlNodeType {
			v.Set(reflect.ValueOf(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			if d.OnNew != nil {
				d.OnNew(v)
			}
		}
		d.Decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping of name: value, got a %s", KindName(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				d.errorf(k, path, "YAML merge keys (<<) are not supported; write the values out")
				continue
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			if existing := v.MapIndex(reflect.ValueOf(k.Value)); existing.IsValid() {
				elem.Set(existing)
			}
			d.Decode(val, elem, append(path, k.Value))
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got a %s", KindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.Decode(c, s.Index(i), append(path, fmt.Sprint(i)))
		}
		v.Set(s)
	case reflect.Interface:
		d.errorf(n, path, "cannot decode into an interface")
	default:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a %s, got a %s", typeName(v.Type()), KindName(n))
			return
		}
		if v.Kind() == reflect.Bool {
			// exactly what the error says: YAML 1.1's yes/no/on/off/y/n are not booleans
			// here, and neither are 0/1
			switch n.Value {
			case "true":
				v.SetBool(true)
			case "false":
				v.SetBool(false)
			default:
				d.errorf(n, path, "want a %s, got %q", typeName(v.Type()), n.Value)
			}
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.errorf(n, path, "want a %s, got %q", typeName(v.Type()), n.Value)
		}
	}
}

func (d *Decoder) decodeStruct(n *yaml.Node, v reflect.Value, path []string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of field: value, got a %s", KindName(n))
		return
	}
	fields := StructFields(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, append(path, k.Value), "unknown field %q (known: %s)", k.Value, strings.Join(fieldNames(fields), ", "))
			continue
		}
		d.Decode(val, v.Field(idx), append(path, k.Value))
	}
}

// StructFields maps the YAML names of a struct type's decodable fields to their indexes.
func StructFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = i
	}
	return m
}

func fieldNames(m map[string]int) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// KindName names what a node holds, for messages: "mapping", "list" or the value quoted.
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return fmt.Sprintf("value %q", n.Value)
	}
	return "node"
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	}
	return t.String()
}
