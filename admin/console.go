package admin

import (
	"maps"
	"math"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/version"
)

// The console is what the dashboard at / shows, served as JSON at /api/console. Once a
// second a sampler reads the process's counters and histograms (never the request path:
// requests only add to counters, as always) and keeps the per-second rates and latency
// percentiles of the last minutes in a ring.

// consoleWindow is how many seconds of history the ring keeps.
const consoleWindow = 300

// nowWindow is how many of the latest seconds the "now" figures average.
const nowWindow = 10

// sections are optional parts of the console JSON that other packages provide (async
// delivery, adaptive overload protection): name -> provider.
var (
	sectionsMu sync.RWMutex
	sections   = map[string]func() any{}
)

// RegisterSection adds a named part to the console JSON of every admin server in the
// process: fn is called on each /api/console request (from the admin listener, never the
// request path) and its value is encoded as JSON under name. The names "async" and
// "overload" are reserved in the page for the async delivery backlog and the adaptive
// overload levels; they are null until registered. fn nil removes the section.
func RegisterSection(name string, fn func() any) {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	if fn == nil {
		delete(sections, name)
		return
	}
	sections[name] = fn
}

// second is one sample: per-second figures computed from two readings of the counters.
type second struct {
	t     int64                         // unix seconds
	rates map[string]map[string]float64 // route -> verdict -> req/s
	// lat: route -> "admitted" | "gateway" -> [p50, p99] in ms (NaN: no request)
	lat   map[string]map[string][2]float64
	tiers map[string]map[string]float64 // route -> promo tier -> offered req/s
	kept  map[string][2]float64         // route -> sample kept, dropped per second
}

type reading struct {
	at       time.Time
	requests map[[2]string]float64        // (route, verdict) -> count
	hist     map[[2]string]*dto.Histogram // (route, admitted|gateway) -> cumulative buckets
	tiers    map[[2]string]float64        // (route, tier) -> count
	sample   map[[2]string]float64        // (route, kept|dropped) -> count
}

type sampler struct {
	mu   sync.Mutex
	prev *reading
	ring []second // oldest first, at most consoleWindow
}

// read gathers the counters the console needs: four families read on their own
// (metrics.Read), not a Gather of the whole registry, which with 10,000 routes took most
// of a core every second.
func read() (*reading, error) {
	r := &reading{at: time.Now(), requests: map[[2]string]float64{}, hist: map[[2]string]*dto.Histogram{},
		tiers: map[[2]string]float64{}, sample: map[[2]string]float64{}}
	err := metrics.Read("floodgate_requests_total", func(m *dto.Metric) {
		r.requests[[2]string{label(m, "route"), label(m, "verdict")}] = m.GetCounter().GetValue()
	})
	if err != nil {
		return nil, err
	}
	metrics.Read("floodgate_request_duration_seconds", func(m *dto.Metric) {
		class := "gateway"
		if label(m, "outcome") == "admitted" {
			class = "admitted"
		}
		k := [2]string{label(m, "route"), class}
		r.hist[k] = addHist(r.hist[k], m.GetHistogram())
	})
	metrics.Read("floodgate_promo_throttle_requests_total", func(m *dto.Metric) {
		r.tiers[[2]string{label(m, "route"), label(m, "tier")}] += m.GetCounter().GetValue()
	})
	metrics.Read("floodgate_sample_decisions_total", func(m *dto.Metric) {
		r.sample[[2]string{label(m, "route"), label(m, "result")}] += m.GetCounter().GetValue()
	})
	return r, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// addHist returns a + b (cumulative bucket counts; same bucket bounds).
func addHist(a, b *dto.Histogram) *dto.Histogram {
	if a == nil {
		c := &dto.Histogram{SampleCount: new(uint64)}
		*c.SampleCount = b.GetSampleCount()
		for _, bk := range b.Bucket {
			c.Bucket = append(c.Bucket, &dto.Bucket{UpperBound: bk.UpperBound, CumulativeCount: new(uint64)})
			*c.Bucket[len(c.Bucket)-1].CumulativeCount = bk.GetCumulativeCount()
		}
		return c
	}
	*a.SampleCount += b.GetSampleCount()
	for i, bk := range b.Bucket {
		if i < len(a.Bucket) {
			*a.Bucket[i].CumulativeCount += bk.GetCumulativeCount()
		}
	}
	return a
}

// quantile estimates the q-quantile (seconds) of the observations between two cumulative
// histograms, interpolating linearly within a bucket (as PromQL's histogram_quantile).
func quantile(q float64, cur, prev *dto.Histogram) float64 {
	total := float64(cur.GetSampleCount())
	if prev != nil {
		total -= float64(prev.GetSampleCount())
	}
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range cur.Bucket {
		c := float64(b.GetCumulativeCount())
		if prev != nil && i < len(prev.Bucket) {
			c -= float64(prev.Bucket[i].GetCumulativeCount())
		}
		if c >= rank {
			if c == below {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-below)/(c-below)
		}
		lower, below = b.GetUpperBound(), c
	}
	return lower // beyond the last bucket: its bound is what is known
}

// tick takes one reading and appends the second since the previous one.
func (s *sampler) tick() {
	r, err := read()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.prev
	s.prev = r
	if prev == nil {
		return
	}
	dt := r.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return
	}
	sec := second{t: r.at.Unix(), rates: map[string]map[string]float64{}, lat: map[string]map[string][2]float64{},
		tiers: map[string]map[string]float64{}, kept: map[string][2]float64{}}
	for k, v := range r.requests {
		d := v - prev.requests[k]
		if d < 0 {
			d = v // a series deleted and re-created by a reload
		}
		if d == 0 {
			continue
		}
		if sec.rates[k[0]] == nil {
			sec.rates[k[0]] = map[string]float64{}
		}
		sec.rates[k[0]][k[1]] = d / dt
	}
	for k, h := range r.hist {
		p := prev.hist[k]
		if p != nil && p.GetSampleCount() > h.GetSampleCount() {
			p = nil
		}
		p50, p99 := quantile(.5, h, p), quantile(.99, h, p)
		if math.IsNaN(p50) {
			continue
		}
		if sec.lat[k[0]] == nil {
			sec.lat[k[0]] = map[string][2]float64{}
		}
		sec.lat[k[0]][k[1]] = [2]float64{p50 * 1000, p99 * 1000}
	}
	for k, v := range r.tiers {
		if d := v - prev.tiers[k]; d > 0 {
			if sec.tiers[k[0]] == nil {
				sec.tiers[k[0]] = map[string]float64{}
			}
			sec.tiers[k[0]][k[1]] = d / dt
		}
	}
	for k, v := range r.sample {
		if d := v - prev.sample[k]; d > 0 {
			x := sec.kept[k[0]]
			if k[1] == "kept" {
				x[0] += d / dt
			} else {
				x[1] += d / dt
			}
			sec.kept[k[0]] = x
		}
	}
	s.ring = append(s.ring, sec)
	if len(s.ring) > consoleWindow {
		s.ring = append(s.ring[:0:0], s.ring[len(s.ring)-consoleWindow:]...)
	}
}

// verdictClass sorts a verdict into the three lines of the rate chart.
func verdictClass(v string) string {
	switch {
	case v == "admitted" || v == "async/accepted":
		return "admitted"
	case strings.HasPrefix(v, "upstream/") || v == "async/unavailable":
		return "failed"
	}
	return "shed"
}

// Console is the JSON of /api/console.
type Console struct {
	Now     int64  `json:"now"` // unix ms
	Version string `json:"version"`
	// Auth is true when the admin listener requires the token (the page offers log out).
	Auth     bool                 `json:"auth"`
	State    ConsoleState         `json:"state"`
	Plan     ConsolePlan          `json:"plan"`
	Series   Series               `json:"series"`
	Routes   []ConsoleRoute       `json:"routes"`
	Pools    []gateway.PoolStatus `json:"pools"`
	Events   []gateway.Event      `json:"events"`
	Fleet    any                  `json:"fleet"`
	Async    any                  `json:"async"`
	Overload any                  `json:"overload"`
	Sections map[string]any       `json:"sections,omitempty"`
}

// ConsoleState is the banner: READY, STALE, HELD, DRAINING or NOT_READY, and why.
type ConsoleState struct {
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
	Generation uint64 `json:"generation"`
	Ready      bool   `json:"ready"`
	Stale      string `json:"stale,omitempty"`
	Held       string `json:"held,omitempty"`
	Draining   bool   `json:"draining,omitempty"`
}

// ConsolePlan is the active plan and every switch in force, with where it came from.
type ConsolePlan struct {
	Active   string   `json:"active"`
	File     string   `json:"file"`
	Switches []Switch `json:"switches"`
}

// Switch is one override in force.
type Switch struct {
	Path   string `json:"path"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Series are the charts' data, aligned on T (unix seconds, oldest first); null marks a
// second without the figure (no request of that kind).
type Series struct {
	T      []int64                `json:"t"`
	Routes map[string]RouteSeries `json:"routes"`
}

// RouteSeries is one route's per-second figures.
type RouteSeries struct {
	Admitted    []float64            `json:"admitted"`
	Shed        []float64            `json:"shed"`
	Failed      []float64            `json:"failed"`
	Verdicts    map[string][]float64 `json:"verdicts"`
	P50Admitted []*float64           `json:"p50_admitted_ms"`
	P99Admitted []*float64           `json:"p99_admitted_ms"`
	P50Gateway  []*float64           `json:"p50_gateway_ms"`
	P99Gateway  []*float64           `json:"p99_gateway_ms"`
}

// ConsoleRoute is a route's configuration, its rates now (the last 10 s) and its limits
// with the figure each is compared with.
type ConsoleRoute struct {
	gateway.RouteStatus
	Limits []ConsoleLimit `json:"limits,omitempty"`
	// Now: req/s over the last seconds, by class and by verdict.
	Offered  float64            `json:"offered"`
	Admitted float64            `json:"admitted"`
	Shed     float64            `json:"shed"`
	Failed   float64            `json:"failed"`
	Verdicts map[string]float64 `json:"verdicts,omitempty"`
}

// ConsoleLimit is a limit and the current figure it bounds: offered req/s to the route
// (token_bucket rate; per instance for a global limit), offered req/s of the tier
// (promo_throttle tier_rate), the share kept (sample ratio).
type ConsoleLimit struct {
	gateway.RouteLimit
	Current *float64 `json:"current,omitempty"`
	// Use is Current / the limit in force on this instance (0..1+), when both are known.
	Use *float64 `json:"use,omitempty"`
	// PerInstance is the share of a global limit this instance enforces.
	PerInstance float64 `json:"per_instance,omitempty"`
}

func (s *Server) console() Console {
	c := Console{Now: time.Now().UnixMilli(), Version: version.String(), Auth: s.token != "", State: s.consoleState(), Pools: s.gw.Pools()}
	doc, overrides, plan := s.updater.Layers()
	if doc != nil {
		c.Plan.File = doc.Name
	}
	c.Plan.Active = plan.Name
	c.Plan.Switches = []Switch{}
	for _, o := range overrides {
		c.Plan.Switches = append(c.Plan.Switches, Switch{Path: o.Path, Value: o.Value, Source: o.Origin})
	}
	for _, o := range plan.Overrides {
		c.Plan.Switches = append(c.Plan.Switches, Switch{Path: o.Path, Value: o.Value, Source: o.Origin})
	}
	ev := s.updater.Events().List()
	if len(ev) > 20 {
		ev = ev[len(ev)-20:]
	}
	c.Events = ev

	s.sampler.mu.Lock()
	ring := s.sampler.ring
	c.Series = buildSeries(ring)
	recent := ring[max(0, len(ring)-nowWindow):]
	instances := float64(s.gw.Env().Instances())
	for _, rs := range s.gw.Routes() {
		c.Routes = append(c.Routes, consoleRoute(rs, recent, instances))
	}
	s.sampler.mu.Unlock()

	sectionsMu.RLock()
	fns := maps.Clone(sections)
	sectionsMu.RUnlock()
	for name, fn := range fns {
		v := fn()
		switch name {
		case "fleet":
			c.Fleet = v
		case "async":
			c.Async = v
		case "overload":
			c.Overload = v
		default:
			if c.Sections == nil {
				c.Sections = map[string]any{}
			}
			c.Sections[name] = v
		}
	}
	if s.fleet != nil {
		c.Fleet = s.fleet()
	}
	return c
}

func buildSeries(ring []second) Series {
	sr := Series{T: make([]int64, len(ring)), Routes: map[string]RouteSeries{}}
	names := map[string]bool{}
	for i, sec := range ring {
		sr.T[i] = sec.t
		for r := range sec.rates {
			names[r] = true
		}
		for r := range sec.lat {
			names[r] = true
		}
	}
	for r := range names {
		rs := RouteSeries{Admitted: make([]float64, len(ring)), Shed: make([]float64, len(ring)), Failed: make([]float64, len(ring)),
			Verdicts: map[string][]float64{}, P50Admitted: make([]*float64, len(ring)), P99Admitted: make([]*float64, len(ring)),
			P50Gateway: make([]*float64, len(ring)), P99Gateway: make([]*float64, len(ring))}
		for i, sec := range ring {
			for v, x := range sec.rates[r] {
				switch verdictClass(v) {
				case "admitted":
					rs.Admitted[i] += x
				case "failed":
					rs.Failed[i] += x
				default:
					rs.Shed[i] += x
				}
				if v != "admitted" {
					if rs.Verdicts[v] == nil {
						rs.Verdicts[v] = make([]float64, len(ring))
					}
					rs.Verdicts[v][i] = x
				}
			}
			if l, ok := sec.lat[r]["admitted"]; ok {
				rs.P50Admitted[i], rs.P99Admitted[i] = ptr(l[0]), ptr(l[1])
			}
			if l, ok := sec.lat[r]["gateway"]; ok {
				rs.P50Gateway[i], rs.P99Gateway[i] = ptr(l[0]), ptr(l[1])
			}
		}
		sr.Routes[r] = rs
	}
	return sr
}

func ptr(f float64) *float64 {
	f = math.Round(f*1000) / 1000
	return &f
}

func consoleRoute(rs gateway.RouteStatus, recent []second, instances float64) ConsoleRoute {
	cr := ConsoleRoute{RouteStatus: rs, Verdicts: map[string]float64{}}
	n := float64(max(1, len(recent)))
	tiers := map[string]float64{}
	var kept, dropped float64
	for _, sec := range recent {
		for v, x := range sec.rates[rs.Name] {
			cr.Verdicts[v] += x / n
			cr.Offered += x / n
			switch verdictClass(v) {
			case "admitted":
				cr.Admitted += x / n
			case "failed":
				cr.Failed += x / n
			default:
				cr.Shed += x / n
			}
		}
		for t, x := range sec.tiers[rs.Name] {
			tiers[t] += x / n
		}
		k := sec.kept[rs.Name]
		kept += k[0]
		dropped += k[1]
	}
	if instances < 1 {
		instances = 1
	}
	for _, l := range rs.Limits {
		cl := ConsoleLimit{RouteLimit: l}
		limit := l.Value
		if l.Global {
			limit = l.Value / instances
			cl.PerInstance = limit
		}
		switch {
		case l.Name == "rate":
			cl.Current = ptr(cr.Offered)
		case l.Name == "tier_rate":
			cl.Current = ptr(tiers[l.Tier])
		case l.Name == "ratio" && kept+dropped > 0:
			cl.Current = ptr(kept / (kept + dropped))
		}
		if cl.Current != nil && limit > 0 {
			cl.Use = ptr(*cl.Current / limit)
		}
		cr.Limits = append(cr.Limits, cl)
	}
	rs.Limits = nil
	cr.RouteStatus = rs
	return cr
}
