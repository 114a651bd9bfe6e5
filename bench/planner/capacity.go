package planner

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/internal/yamlpath"
)

// The seed's capacity rule has three dimensions: "whole-chain QPS, storage size, machine
// bandwidth"; its night was hurt by the one nobody mapped - an in-memory store's 5.1
// Gbit NIC filled up and had to be moved to 10-gigabit cards ("map the bandwidth of
// every link"). Beside the QPS plan, the planner works:
//
//   - bandwidth per link at x3 against its capacity, per direction (links are full
//     duplex): client->gateway (every route's requests in, responses out),
//     gateway->backend (the calls of the routes on it), backend->store (calls per
//     request x the store call's sizes). Rates are the routes' estimate x the safety
//     factor on every link - the 3x rule applied to bytes - not the limits the plan
//     emits (a link that cannot carry x3 is flagged even where a limit would cut the
//     requests before it: the limit is then what keeps it alive, as on the night).
//   - storage per backend: bytes per request x its rate x3, over the campaign's duration
//     and over a backlog of N hours, against its disk.

// ParseBandwidth parses a link capacity per direction into bits/s: a number and a unit
// of bits (bit, Kbit, Mbit, Gbit, Tbit; powers of 1000) or bytes (B, KB, MB, GB, TB),
// optionally followed by "/s" or "ps": "5.1Gbit", "10 Gbit/s", "1.25GB/s", "100Mbps".
func ParseBandwidth(s string) (float64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "ps")
	units := []struct {
		suffix string
		mult   float64
	}{
		{"Tbit", 1e12}, {"Gbit", 1e9}, {"Mbit", 1e6}, {"Kbit", 1e3}, {"kbit", 1e3}, {"bit", 1},
		{"Tb", 1e12}, {"Gb", 1e9}, {"Mb", 1e6}, {"Kb", 1e3}, {"kb", 1e3},
		{"TB", 8e12}, {"GB", 8e9}, {"MB", 8e6}, {"KB", 8e3}, {"kB", 8e3}, {"B", 8},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || bad(v) || v <= 0 {
				break
			}
			return v * u.mult, nil
		}
	}
	return 0, fmt.Errorf("not a bandwidth (want e.g. 5.1Gbit, 10Gbit/s, 1.25GB/s), got %q", s)
}

// ParseBytes parses a disk size: a number and B, KB, MB, GB, TB (powers of 1000) or
// KiB, MiB, GiB, TiB (powers of 1024): "500GiB", "2TB".
func ParseBytes(s string) (float64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || bad(v) || v <= 0 {
				break
			}
			return v * u.mult, nil
		}
	}
	return 0, fmt.Errorf("not a size (want e.g. 500GiB, 2TB), got %q", s)
}

func parseHours(s string) (float64, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("not a duration (want e.g. 6h, 90m), got %q", s)
	}
	return d.Seconds(), nil
}

// maxBytes bounds a request, response or journal entry size (1 GiB).
const maxBytes = 1 << 30

func (f *Funnel) validateCapacity(e *yamlpath.Problems) {
	size := func(v float64, path ...any) {
		if bad(v) || v < 0 || v > maxBytes {
			e.Add(path, "must be bytes between 0 and 1GiB, got %v", v)
		}
	}
	f.gatewayLink, f.duration, f.backlog = 0, 0, 0
	if f.GatewayLink != "" {
		v, err := ParseBandwidth(f.GatewayLink)
		if err != nil {
			e.Add(yamlpath.At("gateway_link"), "%v", err)
		}
		f.gatewayLink = v
	}
	if f.Duration != "" {
		v, err := parseHours(f.Duration)
		if err != nil {
			e.Add(yamlpath.At("duration"), "%v", err)
		}
		f.duration = v
	}
	if f.Backlog != "" {
		v, err := parseHours(f.Backlog)
		if err != nil {
			e.Add(yamlpath.At("backlog"), "%v", err)
		}
		f.backlog = v
	}
	for _, r := range f.RouteNames() {
		rt := f.Routes[r]
		size(rt.RequestBytes, "routes", r, "request_bytes")
		size(rt.ResponseBytes, "routes", r, "response_bytes")
	}
	storage := false
	for _, name := range f.BackendNames() {
		b := f.Backends[name]
		size(b.RequestBytes, "backends", name, "request_bytes")
		size(b.ResponseBytes, "backends", name, "response_bytes")
		b.link = 0
		if b.Link != "" {
			v, err := ParseBandwidth(b.Link)
			if err != nil {
				e.Add(yamlpath.At("backends", name, "link"), "%v", err)
			}
			b.link = v
		}
		if s := b.Store; s != nil {
			s.link = 0
			if s.Name != "" && !nameRe.MatchString(s.Name) {
				e.Add(yamlpath.At("backends", name, "store", "name"), "must be 1-64 letters, digits, '_', '-' or '.', got %q", s.Name)
			}
			if bad(s.CallsPerRequest) || s.CallsPerRequest < 0 || s.CallsPerRequest > 1000 {
				e.Add(yamlpath.At("backends", name, "store", "calls_per_request"), "must be between 0 and 1000 (default 1), got %v", s.CallsPerRequest)
			}
			size(s.RequestBytes, "backends", name, "store", "request_bytes")
			size(s.ResponseBytes, "backends", name, "store", "response_bytes")
			if s.RequestBytes == 0 && s.ResponseBytes == 0 {
				e.Add(yamlpath.At("backends", name, "store"), "give the store call's request_bytes and response_bytes")
			}
			if s.Link != "" {
				v, err := ParseBandwidth(s.Link)
				if err != nil {
					e.Add(yamlpath.At("backends", name, "store", "link"), "%v", err)
				}
				s.link = v
			}
		}
		if s := b.Storage; s != nil {
			storage = true
			s.disk = 0
			if bad(s.BytesPerRequest) || s.BytesPerRequest < 0 || s.BytesPerRequest > maxBytes {
				e.Add(yamlpath.At("backends", name, "storage", "bytes_per_request"), "must be bytes between 0 and 1GiB (default %d), got %v", DefaultBytesPerGrant, s.BytesPerRequest)
			}
			if s.Disk == "" {
				e.Add(yamlpath.At("backends", name, "storage", "disk"), "give the disk space for it, e.g. 500GiB")
			} else if v, err := ParseBytes(s.Disk); err != nil {
				e.Add(yamlpath.At("backends", name, "storage", "disk"), "%v", err)
			} else {
				s.disk = v
			}
		}
		f.Backends[name] = b
	}
	if storage && f.Duration == "" && f.Backlog == "" {
		e.Add(yamlpath.At("duration"), "storage is planned over the campaign's duration (e.g. duration: 6h) and/or a backlog (e.g. backlog: 12h); give at least one")
	}
}

// LinkPlan is one link's bandwidth at the estimate and x safety factor, per direction:
// Out is from->to (requests), In is to->from (responses). Bits per second.
type LinkPlan struct {
	Name     string   `json:"name"` // "client->gateway", "gateway->query", "query->cmem"
	From     string   `json:"from"`
	To       string   `json:"to"`
	Routes   []string `json:"routes"`
	Calls    float64  `json:"calls_per_s"`         // calls/s at the estimate
	Planned  float64  `json:"calls_per_s_planned"` // x safety factor
	OutNeed  float64  `json:"out_bits_per_s"`
	InNeed   float64  `json:"in_bits_per_s"`
	Out      float64  `json:"out_bits_per_s_planned"`
	In       float64  `json:"in_bits_per_s_planned"`
	Capacity float64  `json:"capacity_bits_per_s"` // per direction; 0: not given
	// Unsized lists the routes on the link without request/response sizes (their bytes
	// are not counted: the figures are a floor).
	Unsized []string `json:"unsized_routes,omitempty"`
	Status  Status   `json:"status"`
}

// Peak is the busier direction at the estimate and planned.
func (l LinkPlan) Peak() (need, planned float64) {
	return max(l.OutNeed, l.InNeed), max(l.Out, l.In)
}

// StoragePlan is one backend's storage growth against its disk. Bytes.
type StoragePlan struct {
	Backend         string  `json:"backend"`
	BytesPerRequest float64 `json:"bytes_per_request"`
	// DefaultBytes: the funnel did not say; BytesPerRequest is DefaultBytesPerGrant.
	DefaultBytes bool    `json:"default_bytes_per_request"`
	Rate         float64 `json:"requests_per_s"`
	Planned      float64 `json:"requests_per_s_planned"`
	PerHour      float64 `json:"bytes_per_hour_planned"`
	DurationS    float64 `json:"duration_s"`
	Campaign     float64 `json:"campaign_bytes_planned"` // over the campaign, x safety factor
	CampaignNeed float64 `json:"campaign_bytes"`
	BacklogS     float64 `json:"backlog_s"`
	Backlog      float64 `json:"backlog_bytes_planned"` // over the backlog, x safety factor
	BacklogNeed  float64 `json:"backlog_bytes"`
	Disk         float64 `json:"disk_bytes"`
	Status       Status  `json:"status"`
}

func status(need, planned, capacity float64) Status {
	switch {
	case capacity+eps*math.Max(1, planned) >= planned:
		return OK
	case capacity+eps*math.Max(1, need) >= need:
		return ShortOfMargin
	}
	return ShortOfEstimate
}

// computeCapacity fills the plan's links and storage from the funnel.
func computeCapacity(p *Plan, f *Funnel) {
	sf := p.SafetyFactor
	routeOf := map[string]*RoutePlan{}
	for i := range p.Routes {
		routeOf[p.Routes[i].Name] = &p.Routes[i]
	}
	add := func(l *LinkPlan, route string, rate, out, in float64, sized bool) {
		l.Routes = append(l.Routes, route)
		l.Calls += rate
		l.OutNeed += rate * out * 8
		l.InNeed += rate * in * 8
		if !sized {
			l.Unsized = append(l.Unsized, route)
		}
	}
	finish := func(l *LinkPlan) {
		l.Planned, l.Out, l.In = l.Calls*sf, l.OutNeed*sf, l.InNeed*sf
		if l.Capacity > 0 {
			need, planned := l.Peak()
			l.Status = status(need, planned, l.Capacity)
		}
	}
	anySize := false
	client := LinkPlan{Name: "client->gateway", From: "client", To: "gateway", Capacity: f.gatewayLink}
	for _, r := range f.RouteNames() {
		rt := f.Routes[r]
		sized := rt.RequestBytes > 0 || rt.ResponseBytes > 0
		anySize = anySize || sized
		add(&client, r, routeOf[r].Need, rt.RequestBytes, rt.ResponseBytes, sized)
	}
	finish(&client)
	var links []LinkPlan
	for _, name := range f.BackendNames() {
		b := f.Backends[name]
		gl := LinkPlan{Name: "gateway->" + name, From: "gateway", To: name, Capacity: b.link}
		for _, r := range f.RouteNames() {
			rt := f.Routes[r]
			for _, rb := range rt.BackendNames() {
				if rb != name {
					continue
				}
				req, resp := rt.RequestBytes, rt.ResponseBytes
				if b.RequestBytes > 0 || b.ResponseBytes > 0 {
					req, resp = b.RequestBytes, b.ResponseBytes
				}
				add(&gl, r, routeOf[r].Need, req, resp, req > 0 || resp > 0)
			}
		}
		anySize = anySize || b.RequestBytes > 0 || b.ResponseBytes > 0
		finish(&gl)
		links = append(links, gl)
		if s := b.Store; s != nil {
			store := s.Name
			if store == "" {
				store = "store"
			}
			calls := s.CallsPerRequest
			if calls == 0 {
				calls = 1
			}
			sl := LinkPlan{Name: name + "->" + store, From: name, To: store, Capacity: s.link}
			for _, r := range gl.Routes {
				add(&sl, r, routeOf[r].Need*calls, s.RequestBytes, s.ResponseBytes, true)
			}
			anySize = true
			finish(&sl)
			links = append(links, sl)
		}
	}
	if anySize || f.gatewayLink > 0 {
		p.Links = append([]LinkPlan{client}, links...)
	}
	for _, name := range f.BackendNames() {
		b := f.Backends[name]
		if b.Storage == nil {
			continue
		}
		sp := StoragePlan{Backend: name, BytesPerRequest: b.Storage.BytesPerRequest, Disk: b.Storage.disk,
			DurationS: f.duration, BacklogS: f.backlog}
		if sp.BytesPerRequest == 0 {
			sp.BytesPerRequest, sp.DefaultBytes = DefaultBytesPerGrant, true
		}
		for _, bp := range p.Backends {
			if bp.Name == name {
				sp.Rate, sp.Planned = bp.Need, bp.Planned
			}
		}
		sp.PerHour = sp.Planned * sp.BytesPerRequest * 3600
		sp.CampaignNeed = sp.Rate * sp.BytesPerRequest * sp.DurationS
		sp.Campaign = sp.CampaignNeed * sf
		sp.BacklogNeed = sp.Rate * sp.BytesPerRequest * sp.BacklogS
		sp.Backlog = sp.BacklogNeed * sf
		sp.Status = status(max(sp.CampaignNeed, sp.BacklogNeed), max(sp.Campaign, sp.Backlog), sp.Disk)
		p.Storage = append(p.Storage, sp)
	}
}

// capacityWarnings lists the links and disks that cannot carry the plan.
func (p *Plan) capacityWarnings() []string {
	var w []string
	x := "x" + num(p.SafetyFactor)
	for _, l := range p.Links {
		if l.Capacity == 0 || l.Status == OK {
			continue
		}
		need, planned := l.Peak()
		msg := fmt.Sprintf("CANNOT SUPPORT: %s %s at %s > %s", l.Name, bitrate(planned), x, bitrate(l.Capacity))
		if l.Status == ShortOfEstimate {
			msg += fmt.Sprintf(" (even the estimate, %s, does not fit)", bitrate(need))
		} else {
			msg += fmt.Sprintf(" (the estimate, %s, fits; the margin does not)", bitrate(need))
		}
		msg += fmt.Sprintf("; %s more per direction, e.g. 10-gigabit NICs or more machines", bitrate(planned-l.Capacity))
		if len(l.Unsized) > 0 {
			msg += "; not counted (no sizes): " + strings.Join(l.Unsized, ", ")
		}
		w = append(w, msg)
	}
	for _, s := range p.Storage {
		if s.Status == OK {
			continue
		}
		msg := fmt.Sprintf("CANNOT SUPPORT: %s storage %s at %s > disk %s", s.Backend, bytesize(max(s.Campaign, s.Backlog)), x, bytesize(s.Disk))
		var parts []string
		if s.DurationS > 0 {
			parts = append(parts, fmt.Sprintf("campaign of %s: %s", hours(s.DurationS), bytesize(s.Campaign)))
		}
		if s.BacklogS > 0 {
			parts = append(parts, fmt.Sprintf("backlog of %s: %s", hours(s.BacklogS), bytesize(s.Backlog)))
		}
		msg += " (" + strings.Join(parts, ", ") + ")"
		w = append(w, msg)
	}
	return w
}

// bitrate prints bits/s with a unit: "6.2 Gbit/s".
func bitrate(b float64) string {
	switch {
	case b >= 1e12:
		return num(b/1e12) + " Tbit/s"
	case b >= 1e9:
		return num(b/1e9) + " Gbit/s"
	case b >= 1e6:
		return num(b/1e6) + " Mbit/s"
	case b >= 1e3:
		return num(b/1e3) + " Kbit/s"
	}
	return num(b) + " bit/s"
}

// bytesize prints bytes with a binary unit: "1.5 GiB".
func bytesize(b float64) string {
	switch {
	case b >= 1<<40:
		return num(b/(1<<40)) + " TiB"
	case b >= 1<<30:
		return num(b/(1<<30)) + " GiB"
	case b >= 1<<20:
		return num(b/(1<<20)) + " MiB"
	case b >= 1<<10:
		return num(b/(1<<10)) + " KiB"
	}
	return num(b) + " B"
}

// hours prints a duration without zero parts: "6h", "1h30m", "90s".
func hours(s float64) string {
	d := time.Duration(s * float64(time.Second)).String()
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return d
}
