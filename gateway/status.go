package gateway

import (
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/filters"
)

// PoolStatus is one upstream pool as the operator's console shows it.
type PoolStatus struct {
	Name     string `json:"name"`
	MaxConns int    `json:"max_conns"`
	InFlight int    `json:"in_flight"`
	// Ejected is how many servers are out of rotation; HealthCheck describes the probes
	// of ejected servers ("off" when they wait for eject.duration instead).
	Ejected     int            `json:"ejected"`
	HealthCheck string         `json:"health_check"`
	Servers     []ServerStatus `json:"servers"`
}

// ServerStatus is one server of a pool.
type ServerStatus struct {
	Addr    string `json:"addr"`
	Healthy bool   `json:"healthy"`
	// EjectedFor is how much longer the server is left out (seconds; 0 when healthy or
	// when UntilHealthy: it is out until a health check passes).
	EjectedFor   float64 `json:"ejected_for_seconds,omitempty"`
	UntilHealthy bool    `json:"until_healthy,omitempty"`
	// ProbesPassed and ProbesFailed count its health checks since the pool was built;
	// ProbeError is why the last one failed (empty after a pass).
	ProbesPassed uint64 `json:"probes_passed"`
	ProbesFailed uint64 `json:"probes_failed"`
	ProbeError   string `json:"probe_error,omitempty"`
	// Ejections counts ejections since the pool was built; LastCause is the failure that
	// ejected it last (timeout, unavailable).
	Ejections uint64 `json:"ejections"`
	LastCause string `json:"last_cause,omitempty"`
	// InFlight are requests sent or waiting for a connection; MaxConns is the server's
	// share of the pool's budget; Conns are open connections.
	InFlight int `json:"in_flight"`
	MaxConns int `json:"max_conns"`
	Conns    int `json:"conns"`
}

// RouteStatus is one route's configuration as the console shows it: its pool, whether it
// is core or enabled, and the limits of its filters.
type RouteStatus struct {
	Name    string       `json:"name"`
	Host    string       `json:"host,omitempty"`
	Path    string       `json:"path"`
	Pool    string       `json:"pool"`
	Core    bool         `json:"core"`
	Enabled bool         `json:"enabled"`
	Filters []string     `json:"filters,omitempty"`
	Limits  []RouteLimit `json:"limits,omitempty"`
}

// RouteLimit is a filter's limit on a route.
type RouteLimit struct {
	Filter string `json:"filter"`
	Shadow bool   `json:"shadow,omitempty"`
	filters.Limit
}

// Pools returns the pools in force, by name, with each server's state.
func (g *Gateway) Pools() []PoolStatus {
	st := g.state.Load()
	if st == nil {
		return nil
	}
	now := g.mono(time.Now())
	out := make([]PoolStatus, 0, len(st.pools))
	for _, name := range slices.Sorted(maps.Keys(st.pools)) {
		p := st.pools[name]
		ps := PoolStatus{Name: name, MaxConns: p.cfg.MaxConns, HealthCheck: p.health.Load().describe(),
			Servers: make([]ServerStatus, 0, len(p.servers))}
		for _, u := range p.servers {
			ss := ServerStatus{Addr: u.addr, Healthy: true, Ejections: u.ejected.Load(),
				InFlight: u.inFlight(), MaxConns: u.maxConns(), Conns: u.conns(),
				ProbesPassed: u.probe.passed.Load(), ProbesFailed: u.probe.failed.Load()}
			switch until := u.ejectedUntil.Load(); {
			case until == untilProbe:
				ss.Healthy, ss.UntilHealthy = false, true
			case until != 0 && now < until:
				ss.Healthy = false
				ss.EjectedFor = float64(until-now) / float64(time.Second)
			}
			if !ss.Healthy {
				ps.Ejected++
			}
			if c := u.lastCause.Load(); c != nil {
				ss.LastCause = *c
			}
			if e := u.probe.lastErr.Load(); e != nil {
				ss.ProbeError = *e
			}
			ps.InFlight += ss.InFlight
			ps.Servers = append(ps.Servers, ss)
		}
		out = append(out, ps)
	}
	return out
}

// Routes returns the routes in force, by name, with their filters' limits.
func (g *Gateway) Routes() []RouteStatus {
	st := g.state.Load()
	if st == nil {
		return nil
	}
	out := make([]RouteStatus, 0, len(st.cfg.Routes))
	for _, name := range slices.Sorted(maps.Keys(st.cfg.Routes)) {
		rc := st.cfg.Routes[name]
		rs := RouteStatus{Name: name, Host: rc.Host, Path: rc.Path, Pool: rc.Pool, Core: rc.Core, Enabled: rc.Enabled}
		for _, spec := range rc.Chain {
			if !spec.Enabled {
				continue
			}
			rs.Filters = append(rs.Filters, spec.Name)
			if l, ok := spec.Config.(filters.Limited); ok {
				for _, lim := range l.Limits() {
					rs.Limits = append(rs.Limits, RouteLimit{Filter: spec.Name, Shadow: spec.Shadow, Limit: lim})
				}
			}
		}
		out = append(out, rs)
	}
	return out
}

// Sweep logs what happened to the upstream servers since the last sweep - a WARN line
// per ejection (pool, addr, cause, failures in a row, for how long), an INFO line when a
// server returns - and, for pools without health checks, puts back in rotation the
// servers whose ejection has expired, so that the state (and floodgate_upstream_healthy)
// follows the clock even when no request comes. (With health checks a server is out
// until a probe passes, and the probe logs its return.) The admin listener calls it every
// second; the request path only flips atomics for it. A server put back that fails again
// is ejected at once (its failure count is kept until a request succeeds).
func (g *Gateway) Sweep() {
	st := g.state.Load()
	if st == nil {
		return
	}
	now := g.mono(time.Now())
	for _, p := range st.pools {
		for _, u := range p.servers {
			if n := u.ejected.Load(); n > u.logged.Load() {
				u.logged.Store(n)
				cause := ""
				if c := u.lastCause.Load(); c != nil {
					cause = *c
				}
				hs := p.health.Load()
				until := zap.Duration("for", p.cfg.Eject.Duration.D())
				if hs.on {
					until = zap.String("until", "a health check passes ("+hs.describe()+")")
				}
				g.logger.Warn("upstream server ejected", zap.String("pool", p.name), zap.String("addr", u.addr),
					zap.String("cause", cause), zap.Int32("consecutive_failures", u.ejectFails.Load()),
					until, zap.Uint64("ejections", n))
			}
			if u.returned.CompareAndSwap(true, false) {
				g.logger.Info("upstream server back in rotation", zap.String("pool", p.name), zap.String("addr", u.addr),
					zap.String("after", "a request succeeded"))
			}
			until := u.ejectedUntil.Load()
			if until != 0 && until != untilProbe && now >= until && u.ejectedUntil.CompareAndSwap(until, 0) {
				g.logger.Info("upstream server back in rotation", zap.String("pool", p.name), zap.String("addr", u.addr),
					zap.String("after", "its ejection expired"))
			}
		}
	}
}

var (
	descHealthy = prometheus.NewDesc("floodgate_upstream_healthy",
		"1 if the upstream server is in rotation, 0 while ejected (until a health check passes; without health checks, read from the clock when scraped, so it returns to 1 when an ejection expires without traffic).",
		[]string{"pool", "addr"}, nil)
	descPoolEjected = prometheus.NewDesc("floodgate_pool_ejected_servers",
		"Servers of the pool out of rotation (ejected).", []string{"pool"}, nil)
	descServerInFlight = prometheus.NewDesc("floodgate_upstream_in_flight",
		"Requests sent to the upstream server or waiting for one of its connections.", []string{"pool", "addr"}, nil)
	descServerMaxConns = prometheus.NewDesc("floodgate_upstream_max_conns",
		"The upstream server's share of its pool's connection budget.", []string{"pool", "addr"}, nil)
	descPoolInFlight = prometheus.NewDesc("floodgate_pool_in_flight",
		"Requests in flight to the pool's servers.", []string{"pool"}, nil)
	descPoolMaxConns = prometheus.NewDesc("floodgate_pool_max_conns",
		"The pool's connection budget (max_conns).", []string{"pool"}, nil)
	descLimit = prometheus.NewDesc("floodgate_filter_limit",
		"A configured filter limit, by route, filter and limit: token_bucket rate (req/s) and burst, promo_throttle pressure (tiers shed) and tier_rate (req/s, with tier), sample ratio. Global limits are for all instances together.",
		[]string{"route", "filter", "limit", "tier"}, nil)
)

// Collector exports the state of the configuration in force when scraped: server health,
// in-flight requests and budgets of the pools, and the filters' configured limits.
// Series of pools, servers and routes a reload removed disappear with them.
func (g *Gateway) Collector() prometheus.Collector { return stateCollector{g} }

type stateCollector struct{ g *Gateway }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealthy, descServerInFlight, descServerMaxConns, descPoolInFlight, descPoolMaxConns, descPoolEjected, descLimit} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.g.Pools() {
		for _, s := range p.Servers {
			h := 0.0
			if s.Healthy {
				h = 1
			}
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, h, p.Name, s.Addr)
			ch <- prometheus.MustNewConstMetric(descServerInFlight, prometheus.GaugeValue, float64(s.InFlight), p.Name, s.Addr)
			ch <- prometheus.MustNewConstMetric(descServerMaxConns, prometheus.GaugeValue, float64(s.MaxConns), p.Name, s.Addr)
		}
		ch <- prometheus.MustNewConstMetric(descPoolInFlight, prometheus.GaugeValue, float64(p.InFlight), p.Name)
		ch <- prometheus.MustNewConstMetric(descPoolMaxConns, prometheus.GaugeValue, float64(p.MaxConns), p.Name)
		ch <- prometheus.MustNewConstMetric(descPoolEjected, prometheus.GaugeValue, float64(p.Ejected), p.Name)
	}
	for _, r := range c.g.Routes() {
		for _, l := range r.Limits {
			ch <- prometheus.MustNewConstMetric(descLimit, prometheus.GaugeValue, l.Value, r.Name, l.Filter, l.Name, l.Tier)
		}
	}
}
