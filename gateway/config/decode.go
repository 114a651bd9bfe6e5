package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one configuration problem: where the value came from (file:line, or the
// Consul key / plan that set it), the field's path, and what is wrong.
type Error struct {
	Where string `json:"where"`
	Path  string `json:"path"`
	Msg   string `json:"msg"`
	line  int
}

func (e *Error) Error() string {
	switch {
	case e.Where != "" && e.Path != "":
		return fmt.Sprintf("%s: %s: %s", e.Where, e.Path, e.Msg)
	case e.Path != "":
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	case e.Where != "":
		return fmt.Sprintf("%s: %s", e.Where, e.Msg)
	}
	return e.Msg
}

// Errors is every problem of one configuration, in file order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Where != es[j].Where && (es[i].line == 0 || es[j].line == 0) {
			return es[i].line != 0 // file problems before override problems
		}
		return es[i].line < es[j].line
	})
	return es
}

// decoder walks a YAML node tree and a Go value together, so that every problem is
// reported with the node it came from. It is strict: a key that is not a field is an
// error that lists the known fields.
type decoder struct {
	doc  *tree
	errs Errors
}

func (d *decoder) errorf(n *yaml.Node, path []string, format string, args ...any) {
	d.errs = append(d.errs, &Error{Where: d.doc.where(n), Path: strings.Join(path, "."), Msg: fmt.Sprintf(format, args...), line: n.Line})
}

var textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
var yamlNodeType = reflect.TypeOf(yaml.Node{})

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path []string) {
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
			d.errorf(n, path, "want a single value, got a %s", kindName(n))
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
			if df, ok := v.Interface().(defaulter); ok {
				df.setDefaults()
			}
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping of name: value, got a %s", kindName(n))
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
			d.decode(val, elem, append(path, k.Value))
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got a %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), append(path, fmt.Sprint(i)))
		}
		v.Set(s)
	case reflect.Interface:
		d.errorf(n, path, "cannot decode into an interface")
	default:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a %s, got a %s", typeName(v.Type()), kindName(n))
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

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path []string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of field: value, got a %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, append(path, k.Value), "unknown field %q (known: %s)", k.Value, strings.Join(fieldNames(fields), ", "))
			continue
		}
		d.decode(val, v.Field(idx), append(path, k.Value))
	}
}

// structFields maps yaml names to field indexes (fields tagged "-" are not decodable).
func structFields(t reflect.Type) map[string]int {
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

func kindName(n *yaml.Node) string {
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
