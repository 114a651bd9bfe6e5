// Package planner is the capacity planner behind `floodgate plan`: the seed's funnel
// estimate (exposures/s x conversion of each step x requests per visitor, times the 3x
// rule) turned into per-route and per-tier admission limits, checked against what each
// backend can carry, and emitted as a Consul plan or a config fragment.
//
// The input is a YAML funnel (see configs/funnel-seed.yaml):
//
//	safety_factor: 3        # provision 3x the estimate (default 3)
//	instances: 1            # gateway instances sharing the load (limits are per instance)
//	burst_ratio: 0.2        # token bucket burst = 20% of the per-instance rate
//	channels:               # promotion channels = promo_throttle tiers (the adtag value)
//	  wechat: {exposures: 50}
//	funnel:                 # steps in order; each converts from the one before
//	  - {name: landing, conversion: 0.6}
//	  - {name: participate, conversion: 0.5}
//	routes:
//	  lottery: {step: participate, requests_per_visitor: 4, backend: query, core: true}
//	backends:
//	  query: {capacity: 1000}
package planner

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/floodgate/floodgate/internal/yamlpath"
	"github.com/floodgate/floodgate/internal/yamlsafe"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Defaults.
const (
	DefaultSafetyFactor = 3.0
	DefaultBurstRatio   = 0.2
	DefaultInstances    = 1
)

// Filter names the planner writes limits for.
const (
	TokenBucket   = "token_bucket"
	PromoThrottle = "promo_throttle"
)

// Funnel is the planner's input.
type Funnel struct {
	// Name names the plan (a comment in the output); defaults to the file name.
	Name        string `yaml:"name,omitempty"`
	Description string `yaml:"description,omitempty"`
	// SafetyFactor multiplies the estimate (the seed's 3x rule). Default 3.
	SafetyFactor float64 `yaml:"safety_factor,omitempty"`
	// Instances is the number of gateway instances; limits are per instance. Default 1.
	Instances int `yaml:"instances,omitempty"`
	// BurstRatio: token bucket burst as a share of the per-instance rate. Default 0.2.
	BurstRatio *float64 `yaml:"burst_ratio,omitempty"`
	// Channels are the promotion channels (promotion tags), by name.
	Channels map[string]Channel `yaml:"channels"`
	// Steps are the funnel steps in order.
	Steps []Step `yaml:"funnel"`
	// Routes are the gateway routes, by name.
	Routes map[string]Route `yaml:"routes"`
	// Backends are the services behind the routes, by name.
	Backends map[string]Backend `yaml:"backends"`

	// The other two of the seed's three capacity dimensions (bandwidth and storage; see
	// capacity.go). All optional: a funnel without them plans QPS only.

	// GatewayLink is the client->gateway link's capacity per direction, all gateway
	// instances together: "20Gbit", "10Gbit/s", "1.25GB/s".
	GatewayLink string `yaml:"gateway_link,omitempty"`
	// Duration is the campaign's length, for the storage it leaves behind ("6h").
	Duration string `yaml:"duration,omitempty"`
	// Backlog is how long a backlog must be held when a consumer stops ("12h").
	Backlog string `yaml:"backlog,omitempty"`

	gatewayLink       float64 // bits/s
	duration, backlog float64 // seconds

	// order of map keys as written (for output in the author's order)
	channelOrder, routeOrder, backendOrder []string
}

// Channel is one promotion channel.
type Channel struct {
	// Exposures is ad exposures per second through this channel at peak.
	Exposures float64 `yaml:"exposures"`
	// Conversion overrides a step's conversion rate for this channel, by step name.
	Conversion map[string]float64 `yaml:"conversion,omitempty"`
}

// Step is one step of the funnel: the share of the previous step's visitors (the first
// step: of exposures) that reach it.
type Step struct {
	Name       string  `yaml:"name"`
	Conversion float64 `yaml:"conversion"`
}

// Route is one gateway route in the funnel.
type Route struct {
	// Step is the funnel step whose visitors make this route's requests.
	Step string `yaml:"step"`
	// RequestsPerVisitor is how many requests one visitor at that step makes to it.
	RequestsPerVisitor float64 `yaml:"requests_per_visitor"`
	// Backend (or Backends) is what each request of the route calls.
	Backend  string   `yaml:"backend,omitempty"`
	Backends []string `yaml:"backends,omitempty"`
	// Core routes keep their limits first when a backend is short.
	Core bool `yaml:"core,omitempty"`
	// Filters to emit limits for: token_bucket and/or promo_throttle (default both).
	Filters []string `yaml:"filters,omitempty"`
	// RequestBytes and ResponseBytes are one request's and one response's size on the
	// client->gateway link (headers included), for the bandwidth plan; they are also
	// what the gateway sends to and gets from the route's backends unless a backend
	// says otherwise.
	RequestBytes  float64 `yaml:"request_bytes,omitempty"`
	ResponseBytes float64 `yaml:"response_bytes,omitempty"`
}

// BackendNames returns the route's backends (Backend and Backends together).
func (r Route) BackendNames() []string {
	if r.Backend != "" {
		return append([]string{r.Backend}, r.Backends...)
	}
	return r.Backends
}

func (r Route) emits(filter string) bool {
	if len(r.Filters) == 0 {
		return true
	}
	for _, f := range r.Filters {
		if f == filter {
			return true
		}
	}
	return false
}

// Backend is one service and what it can carry.
type Backend struct {
	// Capacity in requests/s, measured (drills) or promised by its owners.
	Capacity float64 `yaml:"capacity"`
	// RequestBytes and ResponseBytes are one call's sizes on the gateway->backend link
	// (default: the calling route's request_bytes and response_bytes).
	RequestBytes  float64 `yaml:"request_bytes,omitempty"`
	ResponseBytes float64 `yaml:"response_bytes,omitempty"`
	// Link is the gateway->backend link's capacity per direction ("10Gbit").
	Link string `yaml:"link,omitempty"`
	// Store is what the backend calls behind it (an in-memory store, a database).
	Store *Store `yaml:"store,omitempty"`
	// Storage is what each request leaves on the backend's disk (a journal, a queue).
	Storage *Storage `yaml:"storage,omitempty"`

	link float64 // bits/s
}

// Store is the store behind a backend and the backend->store link.
type Store struct {
	// Name names the store in the link's name (backend->name); default "store".
	Name string `yaml:"name,omitempty"`
	// CallsPerRequest is how many store calls one backend request makes (default 1).
	CallsPerRequest float64 `yaml:"calls_per_request,omitempty"`
	// RequestBytes and ResponseBytes are one store call's sizes.
	RequestBytes  float64 `yaml:"request_bytes"`
	ResponseBytes float64 `yaml:"response_bytes"`
	// Link is the backend->store link's capacity per direction: the store's NIC ("5.1Gbit").
	Link string `yaml:"link,omitempty"`

	link float64 // bits/s
}

// DefaultBytesPerGrant is the storage a grant leaves in the async delivery queue when a
// funnel does not say: an estimate with margin over the measured figure (291 bytes per
// grant in the JetStream file store for a 150-byte record: `make drill-backlog`,
// bench/RESULTS.md "Async delivery").
const DefaultBytesPerGrant = 400

// Storage is a backend's storage growth and disk.
type Storage struct {
	// BytesPerRequest is what one request leaves on disk (default DefaultBytesPerGrant).
	BytesPerRequest float64 `yaml:"bytes_per_request,omitempty"`
	// Disk is the disk space for it: "500GiB", "2TB".
	Disk string `yaml:"disk"`

	disk float64 // bytes
}

// ChannelNames, RouteNames and BackendNames list the names in the order they were
// written (sorted when the funnel was built in code).
func (f *Funnel) ChannelNames() []string { return ordered(f.channelOrder, keys(f.Channels)) }

// RouteNames lists the routes in the order written.
func (f *Funnel) RouteNames() []string { return ordered(f.routeOrder, keys(f.Routes)) }

// BackendNames lists the backends in the order written.
func (f *Funnel) BackendNames() []string { return ordered(f.backendOrder, keys(f.Backends)) }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ordered(order, all []string) []string {
	if len(order) != len(all) {
		return all
	}
	return order
}

// LoadFile reads and validates a funnel file.
func LoadFile(path string) (*Funnel, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(filepath.Base(path), data)
	if err != nil {
		return nil, err
	}
	if f.Name == "" {
		f.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".yml")
	}
	return f, nil
}

// Parse decodes (strictly: unknown fields are errors) and validates a funnel; name
// prefixes the error messages.
func Parse(name string, data []byte) (*Funnel, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil { // a node tree: nothing is expanded
		return nil, fmt.Errorf("%s: %v", name, yamlpath.CleanError(err))
	}
	if err := yamlsafe.CheckNode(name, &root); err != nil {
		return nil, err // anchors, aliases, a key given twice: before the decoder below expands them
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty funnel", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f Funnel
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %v", name, yamlpath.CleanError(err))
	}
	doc := root.Content[0]
	f.channelOrder = mapKeys(doc, "channels")
	f.routeOrder = mapKeys(doc, "routes")
	f.backendOrder = mapKeys(doc, "backends")
	if err := f.validate(func(path ...any) int { return yamlpath.Line(doc, path...) }); err != nil {
		var b strings.Builder
		for i, l := range strings.Split(err.Error(), "\n") {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(name + ": " + l)
		}
		return nil, errors.New(b.String())
	}
	return &f, nil
}

// Validate checks a funnel built in code.
func (f *Funnel) Validate() error { return f.validate(func(...any) int { return 0 }) }

func mapKeys(doc *yaml.Node, key string) []string {
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == key && doc.Content[i+1].Kind == yaml.MappingNode {
			var out []string
			m := doc.Content[i+1]
			for j := 0; j+1 < len(m.Content); j += 2 {
				out = append(out, m.Content[j].Value)
			}
			return out
		}
	}
	return nil
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func bad(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }

func (f *Funnel) validate(line func(path ...any) int) error {
	e := &yamlpath.Problems{Line: line}
	if f.SafetyFactor != 0 && (bad(f.SafetyFactor) || f.SafetyFactor < 1 || f.SafetyFactor > 100) {
		e.Add(yamlpath.At("safety_factor"), "must be between 1 and 100, got %v", f.SafetyFactor)
	}
	if f.Instances < 0 || f.Instances > 10000 {
		e.Add(yamlpath.At("instances"), "must be between 1 and 10000, got %d", f.Instances)
	}
	if f.BurstRatio != nil && (bad(*f.BurstRatio) || *f.BurstRatio < 0 || *f.BurstRatio > 10) {
		e.Add(yamlpath.At("burst_ratio"), "must be between 0 and 10, got %v", *f.BurstRatio)
	}
	if len(f.Channels) == 0 {
		e.Add(yamlpath.At("channels"), "at least one promotion channel with its exposures/s is needed")
	}
	steps := map[string]bool{}
	if len(f.Steps) == 0 {
		e.Add(yamlpath.At("funnel"), "at least one step is needed")
	}
	for i, s := range f.Steps {
		if !nameRe.MatchString(s.Name) {
			e.Add(yamlpath.At("funnel", i, "name"), "must be 1-64 letters, digits, '_', '-' or '.', got %q", s.Name)
		} else if steps[s.Name] {
			e.Add(yamlpath.At("funnel", i, "name"), "step %q is named twice", s.Name)
		}
		steps[s.Name] = true
		if bad(s.Conversion) || s.Conversion < 0 || s.Conversion > 1 {
			e.Add(yamlpath.At("funnel", i, "conversion"), "must be a share between 0 and 1, got %v", s.Conversion)
		}
	}
	for _, c := range f.ChannelNames() {
		ch := f.Channels[c]
		if !nameRe.MatchString(c) {
			e.Add(yamlpath.At("channels", c), "bad channel name %q (it is the promotion tag)", c)
		}
		if bad(ch.Exposures) || ch.Exposures < 0 {
			e.Add(yamlpath.At("channels", c, "exposures"), "must be exposures per second >= 0, got %v", ch.Exposures)
		}
		for _, s := range keys(ch.Conversion) {
			v := ch.Conversion[s]
			if !steps[s] {
				e.Add(yamlpath.At("channels", c, "conversion", s), "unknown step %q (steps: %s)", s, strings.Join(stepNames(f.Steps), ", "))
			}
			if bad(v) || v < 0 || v > 1 {
				e.Add(yamlpath.At("channels", c, "conversion", s), "must be a share between 0 and 1, got %v", v)
			}
		}
	}
	if len(f.Routes) == 0 {
		e.Add(yamlpath.At("routes"), "at least one route is needed")
	}
	for _, r := range f.RouteNames() {
		rt := f.Routes[r]
		if !nameRe.MatchString(r) {
			e.Add(yamlpath.At("routes", r), "bad route name %q", r)
		}
		if !steps[rt.Step] {
			e.Add(yamlpath.At("routes", r, "step"), "unknown step %q (steps: %s)", rt.Step, strings.Join(stepNames(f.Steps), ", "))
		}
		if bad(rt.RequestsPerVisitor) || rt.RequestsPerVisitor < 0 {
			e.Add(yamlpath.At("routes", r, "requests_per_visitor"), "must be >= 0, got %v", rt.RequestsPerVisitor)
		}
		bs := rt.BackendNames()
		if len(bs) == 0 {
			e.Add(yamlpath.At("routes", r), "name its backend (backend: NAME or backends: [A, B])")
		}
		seen := map[string]bool{}
		for _, b := range bs {
			field := "backends"
			if b == rt.Backend {
				field = "backend"
			}
			if _, ok := f.Backends[b]; !ok {
				e.Add(yamlpath.At("routes", r, field), "unknown backend %q (backends: %s)", b, strings.Join(f.BackendNames(), ", "))
			}
			if seen[b] {
				e.Add(yamlpath.At("routes", r, field), "backend %q named twice", b)
			}
			seen[b] = true
		}
		for _, fl := range rt.Filters {
			if fl != TokenBucket && fl != PromoThrottle {
				e.Add(yamlpath.At("routes", r, "filters"), "the planner writes limits for %s and %s only, got %q", TokenBucket, PromoThrottle, fl)
			}
		}
	}
	if len(f.Backends) == 0 {
		e.Add(yamlpath.At("backends"), "at least one backend with its capacity is needed")
	}
	for _, b := range f.BackendNames() {
		if !nameRe.MatchString(b) {
			e.Add(yamlpath.At("backends", b), "bad backend name %q", b)
		}
		if c := f.Backends[b].Capacity; bad(c) || c < 0 {
			e.Add(yamlpath.At("backends", b, "capacity"), "must be requests per second >= 0, got %v", c)
		}
	}
	f.validateCapacity(e)
	if err := e.Err(); err != nil {
		return err
	}
	return nil
}

func stepNames(s []Step) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].Name
	}
	return out
}
