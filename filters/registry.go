package filters

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]Definition{}
)

// Register declares a filter. Call it from the filter package's init(). It panics when the
// name is empty, registered twice, or missing from Order (order.go is the one reviewed
// place that decides where in the chain a filter runs).
func Register(d Definition) {
	if d.Name == "" || d.New == nil {
		panic("filters: Register needs a Name and a New func")
	}
	if Position(d.Name) < 0 {
		panic(fmt.Sprintf("filters: %q is not listed in filters/order.go; add it there, at the place in the chain where it must run", d.Name))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[d.Name]; dup {
		panic(fmt.Sprintf("filters: %q registered twice", d.Name))
	}
	registry[d.Name] = d
}

// Lookup returns the definition of a registered filter.
func Lookup(name string) (Definition, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	d, ok := registry[name]
	return d, ok
}

// Names returns the registered filter names in chain order.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return Position(names[i]) < Position(names[j]) })
	return names
}

// Position returns where name runs in the chain (0 first), or -1 if Order does not list it.
func Position(name string) int {
	for i, n := range Order {
		if n == name {
			return i
		}
	}
	return -1
}

// Env is the state shared by all filters of one gateway process; it survives reloads.
type Env struct {
	instances atomic.Int64
}

// NewEnv returns an Env for a single instance.
func NewEnv() *Env {
	e := &Env{}
	e.instances.Store(1)
	return e
}

// Instances is the number of live gateway instances that share global limits (at least 1).
func (e *Env) Instances() int64 { return e.instances.Load() }

// SetInstances records the number of live instances; values below 1 count as 1.
func (e *Env) SetInstances(n int64) {
	if n < 1 {
		n = 1
	}
	e.instances.Store(n)
}

// ValidName reports whether s may name a route, a tier or a pack: letters, digits, '-'
// and '_'. Such names appear in Consul keys and metric labels.
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
