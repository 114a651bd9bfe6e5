package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/floodgate/floodgate/gateway/config"
)

// GatewayView is what one gateway's admin API reports: /config (generation, the layers,
// the source of every value) and /consul (the watcher's state, with why a read is held).
type GatewayView struct {
	Generation uint64        `json:"generation"`
	Sources    []config.Leaf `json:"sources"`
	Layers     struct {
		File       string            `json:"file"`
		Overrides  []config.Override `json:"overrides"`
		ActivePlan string            `json:"active_plan"`
		Plan       []config.Override `json:"plan"`
	} `json:"layers"`
	Watcher Status `json:"watcher"`
}

// checkOutputURL finds the URL in an HTTP check's output ("HTTP GET <url>: 200 OK ...").
var checkOutputURL = regexp.MustCompile(`HTTP GET (https?://\S+)/healthz:`)

// AdminURLs maps each registered instance of service to its admin base URL: its "admin"
// meta (host:port) if it registers one, else what its HTTP health check on
// http://<admin>/healthz says. The catalog does not return HTTP check definitions, and
// it gets a check's output late (Consul defers output-only updates by
// check_update_interval, 5 min by default), so the local agent's own view of its checks
// is asked too: it knows the instances registered on it.
func AdminURLs(c *api.Client, service string) (map[string]string, error) {
	if service == "" {
		service = DefaultService
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	entries, _, err := c.Health().Service(service, "", false, q)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	fromCheck := func(id, definition, output string) {
		if strings.HasSuffix(definition, "/healthz") {
			out[id] = strings.TrimSuffix(definition, "/healthz")
		} else if m := checkOutputURL.FindStringSubmatch(output); m != nil {
			out[id] = m[1]
		}
	}
	missing := 0
	for _, e := range entries {
		if a := e.Service.Meta[MetaAdmin]; a != "" {
			out[e.Service.ID] = "http://" + a
			continue
		}
		for _, ch := range e.Checks {
			if ch.ServiceID == e.Service.ID {
				fromCheck(ch.ServiceID, ch.Definition.HTTP, ch.Output)
			}
		}
		if _, ok := out[e.Service.ID]; !ok {
			missing++
		}
	}
	if missing > 0 {
		if checks, err := c.Agent().ChecksWithFilterOpts("", q); err == nil {
			for _, ch := range checks {
				if _, ok := out[ch.ServiceID]; !ok && ch.ServiceName == service {
					fromCheck(ch.ServiceID, ch.Definition.HTTP, ch.Output)
				}
			}
		}
	}
	return out, nil
}

// FetchGatewayView reads a gateway's admin /config and /consul (best effort: the admin
// listener is often loopback-only or behind a token).
func FetchGatewayView(base string, timeout time.Duration) (*GatewayView, error) {
	hc := &http.Client{Timeout: timeout}
	var v GatewayView
	for _, path := range []string{"/config", "/consul"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			return nil, err
		}
		err = nil
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s%s: %s", base, path, resp.Status)
		} else if derr := json.NewDecoder(resp.Body).Decode(&v); derr != nil {
			err = fmt.Errorf("%s%s: %v", base, path, derr)
		}
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	return &v, nil
}

// Member is one gateway registered in Consul's catalog, with what its admin API says it
// serves when that could be read.
type Member struct {
	InstanceStatus
	// AdminURL is the base URL of its admin API ("" when unknown).
	AdminURL string `json:"admin_url,omitempty"`
	// View is what its admin API reported; nil when it could not be read (ViewError says
	// why: a token, another host's loopback, down).
	View      *GatewayView `json:"-"`
	ViewError string       `json:"view_error,omitempty"`
	// What it serves: from its admin API when read (live), else from its catalog meta
	// (published after every update, so it may lag a moment).
	Generation  string `json:"generation"`
	Fingerprint string `json:"fingerprint,omitempty"`
	ActivePlan  string `json:"active_plan,omitempty"`
	Stale       string `json:"stale,omitempty"`
	Held        string `json:"held,omitempty"`
}

// NewMember makes a Member of a catalog entry and the view read from its admin API
// (nil with the error when it could not be read).
func NewMember(in InstanceStatus, adminURL string, view *GatewayView, viewErr error) Member {
	m := Member{InstanceStatus: in, AdminURL: adminURL, View: view}
	if viewErr != nil {
		m.ViewError = viewErr.Error()
	}
	if view != nil {
		w := view.Watcher
		m.Generation = strconv.FormatUint(view.Generation, 10)
		m.Fingerprint, m.ActivePlan, m.Stale, m.Held = w.Fingerprint, w.ActivePlan, w.Stale, w.Held
		return m
	}
	meta := in.Meta
	m.Generation, m.Fingerprint, m.ActivePlan, m.Stale, m.Held = meta[MetaGeneration], meta[MetaFingerprint], meta[MetaPlan], meta[MetaStale], meta[MetaHeld]
	return m
}

// DiscoverFleet lists the gateways registered under service, sorted by ID, and reads
// each one's admin API (in parallel, each within timeout).
func DiscoverFleet(c *api.Client, service string, timeout time.Duration) ([]Member, error) {
	insts, err := ListInstances(c, service)
	if err != nil {
		return nil, fmt.Errorf("cannot list the gateway instances (service %q): %w", orDefault(service, DefaultService), err)
	}
	sort.Slice(insts, func(i, j int) bool { return insts[i].ID < insts[j].ID })
	admins := map[string]string{}
	if len(insts) > 0 {
		admins, _ = AdminURLs(c, service)
	}
	out := make([]Member, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base, ok := admins[in.ID]
			if !ok {
				out[i] = NewMember(in, "", nil, fmt.Errorf("admin address unknown (no %q meta, no HTTP check)", MetaAdmin))
				return
			}
			v, err := FetchGatewayView(base, timeout)
			out[i] = NewMember(in, base, v, err)
		}()
	}
	wg.Wait()
	return out, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// FleetContent is the current content of the prefix, as the gateways would convert it.
type FleetContent struct {
	Keys        int    `json:"keys"`
	Fingerprint string `json:"fingerprint,omitempty"`
	ActivePlan  string `json:"active_plan,omitempty"`
	Error       string `json:"error,omitempty"`
}

// FleetStatus is whether the registered gateways serve the current content of the prefix.
type FleetStatus struct {
	Prefix    string       `json:"prefix"`
	Content   FleetContent `json:"content"`
	Instances []Member     `json:"instances"`
	// InSync is true when at least one gateway is registered and every one is healthy,
	// serves the current content, holds nothing and is not stale.
	InSync bool `json:"in_sync"`
	// Issues say, one line each, why not.
	Issues []string `json:"issues,omitempty"`
}

// NewFleetStatus computes the fleet's status from the content of the prefix (kvs, full
// keys) and the registered gateways.
func NewFleetStatus(prefix, service string, kvs []KV, members []Member) FleetStatus {
	prefix = SlashPrefix(prefix)
	s := FleetStatus{Prefix: prefix, Instances: members}
	if s.Instances == nil {
		s.Instances = []Member{}
	}
	snap, cerr := Convert(prefix, kvs)
	if cerr != nil {
		s.Content.Error = cerr.Error()
		s.Issues = append(s.Issues, "the current content of "+prefix+" does not convert; the gateways reject it and keep their last good configuration")
	} else {
		s.Content = FleetContent{Keys: snap.Keys, Fingerprint: snap.Fingerprint, ActivePlan: snap.ActivePlan}
	}
	if len(members) == 0 {
		s.Issues = append(s.Issues, fmt.Sprintf("no gateway is registered under service %q", orDefault(service, DefaultService)))
	}
	for _, m := range members {
		switch {
		case m.Held != "":
			s.Issues = append(s.Issues, fmt.Sprintf("%s holds an update: %s", m.ID, m.Held))
		case cerr == nil && m.Fingerprint != snap.Fingerprint:
			s.Issues = append(s.Issues, fmt.Sprintf("%s serves fingerprint %s, not the current content's %s (not applied yet, rejected, or Consul unreachable)", m.ID, orDefault(m.Fingerprint, "-"), snap.Fingerprint))
		}
		if m.Stale != "" {
			s.Issues = append(s.Issues, fmt.Sprintf("%s is stale: %s", m.ID, m.Stale))
		}
		if m.Health != api.HealthPassing {
			s.Issues = append(s.Issues, fmt.Sprintf("%s health is %s", m.ID, m.Health))
		}
	}
	s.InSync = len(s.Issues) == 0
	return s
}

// livePath reports whether a configuration path can change live (through Consul): only
// routes and pools can; server, admin, log and queue settings come from the file alone.
func livePath(p string) bool {
	return strings.HasPrefix(p, "routes.") || strings.HasPrefix(p, "pools.")
}

// liveLeaves keeps the leaves Consul can change and names every value that comes from a
// file "file", so that gateways started with other paths to their files (or ctl's
// -config) do not show every value as changed.
func liveLeaves(ls []config.Leaf) []config.Leaf {
	out := make([]config.Leaf, 0, len(ls))
	for _, l := range ls {
		if !livePath(l.Path) {
			continue
		}
		if !strings.HasPrefix(l.Source, "consul:") && !strings.HasPrefix(l.Source, "plan:") {
			l.Source = "file"
		}
		out = append(out, l)
	}
	return out
}

// ServedChanges is what an update changes for gateways that serve the same configuration
// (the routes and pools their admin API reports).
type ServedChanges struct {
	IDs         []string
	Generations []string
	// Old is what they serve now, Changes what the update changes in it.
	Old     []config.Leaf
	Changes []config.Change
	// FileDiffers are the values their file sets differently from the file the update was
	// composed with (ctl's -config): not changes the update makes, and a sign that they
	// will compose the update with another file than the one it was validated against.
	FileDiffers []config.Change
}

// ChangesAgainstFleet returns, for the gateways whose admin API was read, what after
// (the configuration composed with the new content) changes against what they serve,
// one entry per distinct served configuration, in the order of the gateways' IDs.
func ChangesAgainstFleet(members []Member, after *config.Config) []ServedChanges {
	next := liveLeaves(after.Sources)
	var out []ServedChanges
	byServed := map[string]int{}
	for _, m := range members {
		if m.View == nil {
			continue
		}
		old := liveLeaves(m.View.Sources)
		var key strings.Builder
		for _, l := range old {
			key.WriteString(l.Path + "\x00" + l.Value + "\x00" + l.Source + "\x00")
		}
		i, ok := byServed[key.String()]
		if !ok {
			i = len(out)
			byServed[key.String()] = i
			sc := ServedChanges{Old: old}
			was := map[string]string{}
			for _, l := range old {
				was[l.Path] = l.Source
			}
			for _, ch := range config.Diff(old, next) {
				// a value from the file on both sides that differs: the gateway's file and
				// -config disagree; the gateway keeps its own file's value
				// (or a value only one of the two files sets)
				src, served := was[ch.Path]
				fromFile := ch.Source == "file" || ch.Source == "(removed)"
				if fromFile && (!served || src == "file") {
					sc.FileDiffers = append(sc.FileDiffers, ch)
				} else {
					sc.Changes = append(sc.Changes, ch)
				}
			}
			out = append(out, sc)
		}
		out[i].IDs = append(out[i].IDs, m.ID)
		out[i].Generations = append(out[i].Generations, m.Generation)
	}
	return out
}

// FleetWarnings says why what the gateways serve may differ from Consul's content
// (fingerprint): a gateway that holds an update, is stale, serves other content, or whose
// admin API could not be read; and gateways that serve different configurations.
func FleetWarnings(members []Member, fingerprint string, served []ServedChanges) []string {
	var out []string
	for _, m := range members {
		switch {
		case m.Held != "":
			out = append(out, fmt.Sprintf("%s (generation %s) holds an update and serves an older configuration than Consul's content: %s", m.ID, orDefault(m.Generation, "-"), m.Held))
		case fingerprint != "" && m.Fingerprint != fingerprint:
			out = append(out, fmt.Sprintf("%s (generation %s) serves other content than Consul's (fingerprint %s, not %s): not applied yet, rejected, or Consul unreachable", m.ID, orDefault(m.Generation, "-"), orDefault(m.Fingerprint, "-"), fingerprint))
		}
		if m.Stale != "" {
			out = append(out, fmt.Sprintf("%s is stale: %s", m.ID, m.Stale))
		}
		if m.View == nil {
			out = append(out, fmt.Sprintf("%s: its admin API was not read (%s): no diff against what it serves", m.ID, m.ViewError))
		}
	}
	if len(served) > 1 {
		out = append(out, fmt.Sprintf("the gateways serve %d different configurations: the changes are shown for each", len(served)))
	}
	for _, sc := range served {
		if len(sc.FileDiffers) > 0 {
			ch := sc.FileDiffers[0]
			out = append(out, fmt.Sprintf("%s: its file differs from -config at %d value(s) (e.g. %s: %s there, %s in -config); it composes the update with its own file",
				strings.Join(sc.IDs, ", "), len(sc.FileDiffers), ch.Path, showValue(ch.Old, ch.Old != ""), showValue(ch.New, ch.Source != "(removed)")))
		}
	}
	return out
}
