// Package consul is the Consul KV configuration source: it watches the key prefix with
// blocking queries (as consul-template does), converts the keys into override and plan
// layers, guards against poisoned reads, keeps a last-known-good snapshot on disk, and
// registers the gateway instance so that global limits can be split across instances.
//
// Key layout under the prefix (default "floodgate/"), one scalar per key:
//
//	routes/<route>/enabled                 = true|false
//	routes/<route>/<filter>/<param>[/...]  = value
//	pools/<pool>/<field>                   = value
//	plans/<plan>                           = YAML/JSON map of relative path -> value
//	active_plan                            = name of the plan in force ("" = none)
//	confirm                                = fingerprint of a held update to apply
//	audit/<time>-<who>                     = JSON record of a ctl write (ignored here)
//
// Precedence: file < per-key overrides < active plan.
package consul

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/yamlsafe"
)

// DefaultPrefix is the default key prefix.
const DefaultPrefix = "floodgate/"

// SlashPrefix returns a key prefix with its trailing slash: the one place every user of
// a prefix (watcher, ctl, the gateway's and the deliverer's wiring) normalises it.
func SlashPrefix(p string) string {
	if !strings.HasSuffix(p, "/") {
		return p + "/"
	}
	return p
}

// KV is one key and value as read from Consul, relative to nothing (full key).
type KV struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
}

// Snapshot is the Consul layers converted from one read of the prefix.
type Snapshot struct {
	Overrides  []config.Override            `json:"overrides"`
	Plans      map[string][]config.Override `json:"plans,omitempty"`
	ActivePlan string                       `json:"active_plan,omitempty"`
	// Confirm is the fingerprint an operator confirmed with `floodgate ctl confirm`.
	Confirm string `json:"confirm,omitempty"`
	// Keys is how many configuration keys (overrides, plans, active_plan) were read.
	Keys int `json:"keys"`
	// Fingerprint identifies the configuration content (not confirm or audit keys), the
	// same on every instance that reads the same keys.
	Fingerprint string `json:"fingerprint"`
}

// Plan returns the active plan's overrides (nil when none is active).
func (s *Snapshot) Plan() []config.Override {
	if s.ActivePlan == "" {
		return nil
	}
	return s.Plans[s.ActivePlan]
}

// Convert turns the keys under prefix into layers. Problems (an unknown key, a plan that
// does not parse, an active plan that does not exist) are returned all together; the
// caller rejects the whole read.
func Convert(prefix string, kvs []KV) (*Snapshot, error) {
	s, errs := convert(prefix, kvs)
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// Converter is Convert for the reads of one watcher: a key whose value is the one it had
// at the previous read keeps the override converted then (the very strings, so that the
// composer's comparison of an unchanged route's overrides finds them equal at once); only
// changed keys are converted again. The previous read's keys are walked in step with the
// read (both in key order), so that an unchanged key costs no lookup. Not safe for
// concurrent use.
type Converter struct {
	prefix string
	prev   []*converted // the previous read's converted keys, in key order
	next   []*converted // this read's, being made
}

type converted struct {
	key   string
	value string
	ov    config.Override
}

// Convert is the package's Convert with the memory of the previous read.
func (c *Converter) Convert(prefix string, kvs []KV) (*Snapshot, error) {
	if c.prefix != prefix {
		c.prefix, c.prev = prefix, nil
	}
	c.next = make([]*converted, 0, len(c.prev))
	s, errs := convertWith(c, prefix, kvs)
	c.prev, c.next = c.next, nil
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// convert is Convert returning what did convert beside the problems (for ctl, which
// tells the problems a write adds from those it leaves).
func convert(prefix string, kvs []KV) (*Snapshot, config.Errors) {
	return convertWith(nil, prefix, kvs)
}

func convertWith(c *Converter, prefix string, kvs []KV) (*Snapshot, config.Errors) {
	s := &Snapshot{Plans: map[string][]config.Override{}, Overrides: make([]config.Override, 0, len(kvs))}
	var errs config.Errors
	h := sha256.New()
	sorted := kvs
	byKey := func(a, b KV) int { return strings.Compare(a.Key, b.Key) }
	if !slices.IsSortedFunc(kvs, byKey) { // Consul lists keys in order: no copy, no sort
		sorted = slices.Clone(kvs)
		slices.SortFunc(sorted, byKey)
	}
	var buf []byte
	sum := func(kv KV) { // the same bytes as the fingerprint always had: key NUL value NUL
		buf = append(append(append(append(buf[:0], kv.Key...), 0), kv.Value...), 0)
		h.Write(buf)
	}
	pos := 0 // in c.prev
	for _, kv := range sorted {
		if c != nil {
			for pos < len(c.prev) && c.prev[pos].key < kv.Key {
				pos++
			}
			if pos < len(c.prev) && c.prev[pos].key == kv.Key && c.prev[pos].value == string(kv.Value) {
				e := c.prev[pos]
				c.next = append(c.next, e)
				s.Overrides = append(s.Overrides, e.ov)
				s.Keys++
				sum(kv)
				continue
			}
		}
		rel := strings.TrimPrefix(kv.Key, prefix)
		origin := "consul:" + kv.Key
		val := strings.TrimSpace(string(kv.Value))
		switch {
		case rel == "" || strings.HasSuffix(rel, "/") && len(kv.Value) == 0:
			continue // folder markers made by the UI
		case strings.HasSuffix(rel, "/") || strings.HasPrefix(rel, "/") || strings.Contains(rel, "//"):
			// A folder key with a value (routes/lottery/enabled/ = false) would read as
			// the key without the slash and silently override it, while ctl, which
			// reads keys exactly, sees it as not set.
			errs = append(errs, &config.Error{Where: origin, Msg: fmt.Sprintf("key %q has an empty path segment (a leading, doubled or trailing \"/\") and carries a value %q; only folder keys (empty value) may end in \"/\": delete it (floodgate ctl unset %s) or write the value to %q", rel, val, rel, strings.Trim(rel, "/"))})
			continue
		case strings.HasPrefix(rel, "audit/"):
			continue
		case rel == "confirm":
			s.Confirm = val
			continue
		case rel == "active_plan":
			s.ActivePlan = val
		case strings.HasPrefix(rel, "plans/"):
			name := strings.TrimPrefix(rel, "plans/")
			ov, err := ParsePlan(name, kv.Value, "plan:"+name)
			if err != nil {
				errs = append(errs, &config.Error{Where: origin, Msg: err.Error()})
			}
			s.Plans[name] = ov
		case strings.HasPrefix(rel, "routes/") || strings.HasPrefix(rel, "pools/"):
			if _, err := config.TreePath(rel); err != nil {
				errs = append(errs, &config.Error{Where: origin, Msg: err.Error()})
				continue
			}
			ov := config.Override{Path: rel, Value: val, Origin: origin}
			s.Overrides = append(s.Overrides, ov)
			if c != nil {
				c.next = append(c.next, &converted{key: kv.Key, value: string(kv.Value), ov: ov})
			}
		default:
			errs = append(errs, &config.Error{Where: origin, Msg: fmt.Sprintf("unknown key %q under the prefix (known: routes/, pools/, plans/, active_plan, confirm, audit/)", rel)})
			continue
		}
		s.Keys++
		sum(kv)
	}
	if s.ActivePlan != "" {
		if _, ok := s.Plans[s.ActivePlan]; !ok {
			errs = append(errs, &config.Error{Where: "consul:" + prefix + "active_plan", Msg: fmt.Sprintf("names plan %q, which does not exist under %splans/", s.ActivePlan, prefix)})
		}
	}
	s.Fingerprint = hex.EncodeToString(h.Sum(nil))[:16]
	return s, errs
}

// ParsePlan parses a plan document: a YAML or JSON mapping of relative paths
// (routes/<route>/<filter>/<param>) to single values. Nested mappings are flattened
// (routes: {lottery: {enabled: false}} is routes/lottery/enabled), so a plan may also be
// written as a configuration fragment.
func ParsePlan(name string, b []byte, origin string) ([]config.Override, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil { // a node tree: nothing is expanded
		return nil, fmt.Errorf("plan %q is not valid YAML/JSON: %v", name, err)
	}
	if err := yamlsafe.CheckNode("plan "+strconv.Quote(name), &root); err != nil {
		return nil, err // anchors, aliases, a key given twice
	}
	if root.Kind == 0 || (root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
		return nil, nil // an empty plan changes nothing
	}
	n := &root
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("plan %q: want a mapping of path: value", name)
	}
	var out []config.Override
	var problems []string
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
				problems = append(problems, fmt.Sprintf("line %d: %q: a path has no empty segment (no leading, doubled or trailing \"/\")", k.Line, p))
				continue
			}
			if path != "" {
				p = path + "/" + p
			}
			switch v.Kind {
			case yaml.MappingNode:
				walk(v, p)
			case yaml.ScalarNode:
				if _, err := config.TreePath(p); err != nil {
					problems = append(problems, fmt.Sprintf("line %d: %v", k.Line, err))
					continue
				}
				val := v.Value
				if v.Tag == "!!null" {
					val = ""
				}
				out = append(out, config.Override{Path: p, Value: val, Origin: origin})
			default:
				problems = append(problems, fmt.Sprintf("line %d: %s: want a single value, not a list", k.Line, p))
			}
		}
	}
	walk(n, "")
	if len(problems) > 0 {
		return nil, fmt.Errorf("plan %q: %s", name, strings.Join(problems, "; "))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
