package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/internal/yamlsafe"
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

// decoder decodes a part of the configuration tree strictly (internal/yamlsafe.Decoder)
// and locates every problem: file:line, or the Consul key / plan that set the value.
type decoder struct {
	doc  *tree
	errs Errors
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path []string) {
	yd := &yamlsafe.Decoder{OnNew: func(p reflect.Value) {
		if df, ok := p.Interface().(defaulter); ok {
			df.setDefaults()
		}
	}}
	yd.Decode(n, v, path)
	for _, p := range yd.Problems {
		d.errs = append(d.errs, &Error{Where: d.doc.where(p.Node), Path: strings.Join(p.Path, "."), Msg: p.Msg, line: p.Node.Line})
	}
}
