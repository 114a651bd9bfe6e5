package config

import (
	"reflect"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Loader is Load with a memory of its last successful composition. When the file
// document is the same and nothing outside routes/ changed, it decodes and validates
// again only the routes whose overrides changed; every other route is the very *Route of
// the last configuration (so the gateway keeps what it built for it), with its sources.
// The checks across routes (no two routes serve one host and path, at least one route)
// run on every load. A load that finds any problem is done again by Load, so that the
// errors are exactly Load's: every bad key named, in the same order.
//
// With 50,000 keys over 10,000 routes, Load decodes, validates and lists 60,000 values
// for every update; a kill switch through a Loader decodes one route.
//
// A Loader is not safe for concurrent use (the gateway's Updater serializes updates).
type Loader struct {
	doc *Document
	// fileRoutes indexes the file's routes mapping of doc: name -> key and value nodes
	fileRoutes map[string][2]*yaml.Node
	routesKey  *yaml.Node
	rest       []Override // the overrides outside routes/ of the last load, in order
	routes     map[string]*loadedRoute

	// the file's route names: in its order, sorted, and in the order of their paths
	// (cmpDot) - the orders a load needs, made once per file
	fileNames, sortedNames, dotNames []string
}

type loadedRoute struct {
	ov      []Override // the route's overrides, all layers in order
	route   *Route
	leaves  []Leaf // sorted by path
	pathKey string // pathKey(route)
}

// Load composes like the package's Load (same arguments, same result).
func (l *Loader) Load(doc *Document, layers ...[]Override) (*Config, error) {
	if cfg, routes, rest, ok := l.load(doc, layers); ok {
		l.routes, l.rest = routes, rest
		return cfg, nil
	}
	cfg, err := Load(doc, layers...)
	if err == nil {
		l.doc, l.routes = nil, nil // composed the slow way: nothing to keep
	}
	return cfg, err
}

// routeOf returns the route an override path addresses (routes/<route>/...).
func routeOf(path string) (string, bool) {
	p := strings.Trim(path, "/")
	rest, ok := strings.CutPrefix(p, "routes/")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, true
}

// load is the incremental composition; ok is false when it cannot tell the result
// without Load (a problem anywhere, or a file whose routes are not a plain mapping).
func (l *Loader) load(doc *Document, layers [][]Override) (cfg *Config, routes map[string]*loadedRoute, rest []Override, ok bool) {
	if doc == nil || doc.Root == nil || doc.Root.Kind != yaml.MappingNode {
		return nil, nil, nil, false
	}
	if doc != l.doc {
		l.doc, l.routes = nil, nil
		if !l.index(doc) {
			return nil, nil, nil, false
		}
		l.doc = doc
	}
	groups := make(map[string][]Override, len(l.fileRoutes))
	var created []Override
	for _, layer := range layers {
		for i := 0; i < len(layer); {
			o := layer[i]
			name, isRoute := routeOf(o.Path)
			switch {
			case !isRoute:
				rest = append(rest, o)
				i++
				continue
			case name == "":
				return nil, nil, nil, false
			}
			// the run of this route's overrides (a layer in path order has one a route):
			// the group is that part of the layer itself, capped so that another layer's
			// overrides of the route are appended to a copy
			j := i + 1
			for j < len(layer) {
				if n, ok := routeOf(layer[j].Path); !ok || n != name {
					break
				}
				j++
			}
			g, had := groups[name]
			if _, inFile := l.fileRoutes[name]; !inFile && !had {
				created = append(created, o)
			}
			if had {
				groups[name] = append(g, layer[i:j]...)
			} else {
				groups[name] = layer[i:j:j]
			}
			i = j
		}
	}
	keep := l.routes != nil && slices.Equal(rest, l.rest)

	// Everything but the routes: the file without its routes, with the other overrides.
	groot := *doc.Root
	groot.Content = slices.Clone(doc.Root.Content)
	for i := 0; i+1 < len(groot.Content); i += 2 {
		if groot.Content[i] == l.routesKey {
			groot.Content[i+1] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: l.routesKey.Line, Column: l.routesKey.Column}
		}
	}
	t := newTree(&Document{Name: doc.Name, Root: &groot})
	for _, o := range rest {
		if e := t.set(o); e != nil {
			return nil, nil, nil, false
		}
	}
	cfg = defaultConfig()
	d := &decoder{doc: t}
	d.decode(t.root, reflect.ValueOf(cfg).Elem(), nil)
	v := &validator{tree: t, cfg: cfg}
	v.validateGlobal()
	if len(d.errs) > 0 || len(v.errs) > 0 {
		return nil, nil, nil, false
	}

	// The routes: the file's in its order, then those the overrides name.
	names := l.fileNames
	if len(created) > 0 {
		names = append(slices.Clip(names), make([]string, 0, len(created))...)
		for _, o := range created {
			name, _ := routeOf(o.Path)
			names = append(names, name)
		}
	}
	routes = make(map[string]*loadedRoute, len(names))
	cfg.Routes = make(map[string]*Route, len(names))
	nLeaves := 0
	for _, name := range names {
		ov := groups[name]
		lr := l.routes[name]
		if !keep || lr == nil || !slices.Equal(lr.ov, ov) {
			if lr, ok = l.loadRoute(doc, name, ov, cfg); !ok {
				return nil, nil, nil, false
			}
		}
		routes[name] = lr
		cfg.Routes[name] = lr.route
		nLeaves += len(lr.leaves)
	}

	// Across routes.
	v = &validator{tree: t, cfg: cfg}
	if len(cfg.Routes) == 0 {
		return nil, nil, nil, false
	}
	seen := make(map[string]string, len(names))
	sorted, dotted := l.sortedNames, l.dotNames
	if len(created) > 0 {
		sorted = slices.Sorted(slices.Values(names))
		dotted = slices.SortedFunc(slices.Values(names), cmpDot)
	}
	for _, name := range sorted {
		v.uniqueKey(seen, name, routes[name].pathKey, cfg.Routes[name])
	}
	if len(v.errs) > 0 {
		return nil, nil, nil, false
	}

	// Sources, sorted by path as Load's: the values before "routes.", the routes' (in
	// the order of "<name>.", which is the order of their paths), the values after.
	global := t.leaves()
	split := sort.Search(len(global), func(i int) bool { return global[i].Path >= "routes." })
	cfg.Sources = make([]Leaf, 0, len(global)+nLeaves)
	cfg.Sources = append(cfg.Sources, global[:split]...)
	for _, name := range dotted {
		cfg.Sources = append(cfg.Sources, routes[name].leaves...)
	}
	cfg.Sources = append(cfg.Sources, global[split:]...)
	return cfg, routes, rest, true
}

// cmpDot compares a+"." with b+"." (the order of the paths under two route names).
func cmpDot(a, b string) int {
	n := min(len(a), len(b))
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	switch {
	case len(a) == len(b):
		return 0
	case len(a) < len(b):
		if b[n] < '.' {
			return 1
		}
		return -1
	}
	if a[n] < '.' {
		return -1
	}
	return 1
}

// routesNode returns the value node of the routes key k.
func (doc *Document) routesNode(k *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(doc.Root.Content); i += 2 {
		if doc.Root.Content[i] == k {
			return doc.Root.Content[i+1]
		}
	}
	return nil
}

// index finds the file's routes mapping; false if it is not one plain mapping of
// distinct route names.
func (l *Loader) index(doc *Document) bool {
	l.routesKey, l.fileRoutes, l.fileNames = nil, nil, nil
	for i := 0; i+1 < len(doc.Root.Content); i += 2 {
		k := doc.Root.Content[i]
		if k.Value != "routes" {
			continue
		}
		if l.routesKey != nil {
			return false
		}
		l.routesKey = k
	}
	if l.routesKey == nil {
		return false
	}
	rn := doc.routesNode(l.routesKey)
	if rn.Kind != yaml.MappingNode {
		return false
	}
	l.fileRoutes = make(map[string][2]*yaml.Node, len(rn.Content)/2)
	for i := 0; i+1 < len(rn.Content); i += 2 {
		k, v := rn.Content[i], rn.Content[i+1]
		if _, dup := l.fileRoutes[k.Value]; dup || k.Value == "<<" || k.Kind != yaml.ScalarNode || v.Kind == yaml.AliasNode {
			return false
		}
		l.fileRoutes[k.Value] = [2]*yaml.Node{k, v}
		l.fileNames = append(l.fileNames, k.Value)
	}
	l.fileNames = slices.Clip(l.fileNames)
	l.sortedNames = slices.Sorted(slices.Values(l.fileNames))
	l.dotNames = slices.SortedFunc(slices.Values(l.fileNames), cmpDot)
	return true
}

// loadRoute composes, decodes and validates one route on its own: a tree holding only
// routes: {<name>: <the file's route>} with the route's overrides applied, so that every
// value keeps its origin and every path is the one Load reports. cfg has the global part
// (pools, server) the route's checks refer to.
func (l *Loader) loadRoute(doc *Document, name string, ov []Override, cfg *Config) (*loadedRoute, bool) {
	rn := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: l.routesKey.Line, Column: l.routesKey.Column}
	if kv, ok := l.fileRoutes[name]; ok {
		rn.Content = []*yaml.Node{kv[0], copyNode(kv[1])}
	}
	t := &tree{file: doc.Name, root: &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{l.routesKey, rn}},
		origins: map[*yaml.Node]string{}, created: map[string]bool{}}
	for _, o := range ov {
		if e := t.set(o); e != nil {
			return nil, false
		}
	}
	var r *Route
	d := &decoder{doc: t}
	d.decode(rn.Content[1], reflect.ValueOf(&r).Elem(), []string{"routes", name})
	if len(d.errs) > 0 {
		return nil, false
	}
	v := &validator{tree: t, cfg: cfg}
	v.validateRoute(name, r)
	if len(v.errs) > 0 {
		return nil, false
	}
	return &loadedRoute{ov: ov, route: r, leaves: t.leaves(), pathKey: pathKey(r)}, true
}
