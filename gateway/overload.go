package gateway

import (
	"maps"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	promothrottle "github.com/floodgate/floodgate/filters/promo_throttle"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/adaptive"
	"github.com/floodgate/floodgate/internal/metrics"
)

// Adaptive overload protection (internal/adaptive) on the gateway's side: every pool has a
// controller, kept across reloads (also when the pool itself is rebuilt); a route of a pool
// with `adaptive.enabled` computes its request's admission level in forward and asks the
// pool's controller; a ticker closes each controller's window every OverloadWindow.

// OverloadWindow is how often each pool's adaptive limit and admission level are updated.
const OverloadWindow = 100 * time.Millisecond

var (
	overloadLimit = metrics.NewGaugeVec("overload_limit",
		"Adaptive concurrency limit of the pool (non-core requests beyond it are shed).", "pool")
	overloadLevel = metrics.NewGaugeVec("overload_level",
		"Admission level of the pool: requests of a lower level are shed (0: none; 2048: all).", "pool")
	overloadInFlight = metrics.NewGaugeVec("overload_in_flight",
		"Requests of the pool in flight upstream, as adaptive protection counts them.", "pool")
	overloadBaseline = metrics.NewGaugeVec("overload_baseline_seconds",
		"No-load latency baseline of the pool, measured from live traffic.", "pool")
	overloadLatency = metrics.NewGaugeVec("overload_latency_seconds",
		"Mean upstream latency of the pool's last window with enough samples.", "pool")
	overloadEnabled = metrics.NewGaugeVec("overload_enabled",
		"1 when adaptive protection is on for the pool (2 in shadow mode), 0 when off.", "pool")
)

// overload is a route's view of its pool's adaptive protection, fixed per configuration.
type overload struct {
	on   bool // the pool has adaptive protection enabled (or shadow)
	core bool // the route is core
	ctl  *adaptive.Controller
	// tiers[rank] is the level, with user priority 0, of a request of tier rank `rank`
	// (filters.Request.Rank, set by the route's promo_throttle; 0: unranked, the top
	// tier): the route's business priority and the tier part, computed at build.
	tiers  []adaptive.Level
	key    filters.KeySpec
	window int64 // ns
	shed   *filters.Reason
}

// admit is the admission decision for one request of the route; wall is its time in Unix
// ns, rank its promotion tier rank. While the pool sheds nothing by level, the request's
// level is not computed at all unless the pool is busy enough to count it
// (adaptive.Controller.AdmitFast).
func (o *overload) admit(ctx *fasthttp.RequestCtx, clientIP netip.Addr, wall int64, rank int) adaptive.Decision {
	d, count, ok := o.ctl.AdmitFast(o.core)
	switch {
	case !ok:
		return o.ctl.Admit(o.level(ctx, clientIP, wall, rank), o.core)
	case count:
		o.ctl.Count(o.level(ctx, clientIP, wall, rank))
	}
	return d
}

// level is the request's admission level: business priority and tier (precomputed), then
// the user priority drawn from the hash of the user key for the current window.
func (o *overload) level(ctx *fasthttp.RequestCtx, clientIP netip.Addr, wall int64, rank int) adaptive.Level {
	lv := o.tiers[0]
	if rank > 0 && rank < len(o.tiers) {
		lv = o.tiers[rank]
	}
	user := adaptive.UserLevels - 1 // no key: treated as the most important user
	if h, st := o.key.Hash(&filters.Request{Ctx: ctx, ClientIP: clientIP}); st == filters.KeyFound {
		user = adaptive.UserPriority(h, wall, o.window)
	}
	return lv + adaptive.Level(user)
}

// overloadOutcome classifies a forwarded request's end for the controller: only answers of the
// upstream below 500 are latency samples; timeouts are drops; the rest is neither.
func overloadOutcome(err error, resp *fasthttp.Response) adaptive.Outcome {
	switch {
	case err == nil && resp.StatusCode() < 500:
		return adaptive.Answered
	case err != nil && upstreamError(err) == failTimeout:
		return adaptive.TimedOut
	}
	return adaptive.Failed
}

// adaptiveSettings turns a pool's configuration into its controller's settings; coreFloor
// is the lowest level of the pool's core routes.
func adaptiveSettings(a config.Adaptive, coreFloor adaptive.Level) adaptive.Settings {
	return adaptive.Settings{Enabled: a.Enabled || a.Shadow, Shadow: a.Shadow, MinLimit: a.MinLimit, MaxLimit: a.MaxLimit,
		PinnedLevel: a.PinnedLevel, CoreFloor: coreFloor}
}

// newController makes a pool's controller, or takes the one of the same pool in prev.
func newController(name string, prev *state) *adaptive.Controller {
	if prev != nil {
		if old := prev.pools[name]; old != nil {
			return old.ctl
		}
	}
	// unbounded until SetSettings applies the pool's bounds to the initial limit
	return adaptive.New(adaptive.DefaultParams(), adaptive.Settings{PinnedLevel: -1, MinLimit: 1, MaxLimit: math.MaxInt32})
}

// coreFloors returns, per pool, the lowest admission level of its core routes (the top
// level when it has none).
func coreFloors(cfg *config.Config) map[string]adaptive.Level {
	out := map[string]adaptive.Level{}
	for _, rc := range cfg.Routes {
		if _, ok := out[rc.Pool]; !ok {
			out[rc.Pool] = adaptive.NumLevels - 1
		}
		if rc.Core {
			out[rc.Pool] = min(out[rc.Pool], adaptive.MakeLevel(rc.Priority, 0, 0))
		}
	}
	return out
}

// syncOverload starts or stops the window ticker for the configuration st (just swapped
// in) and publishes every pool's gauges once (the ticker keeps them current while it runs).
func (g *Gateway) syncOverload(st *state) {
	want := false
	for _, p := range st.pools {
		want = want || p.ctl.Settings().Enabled
	}
	g.ovlTicker.set(want, g.runOverload)
	for _, p := range st.pools {
		p.publish()
	}
}

// Close stops the gateway's background work: the adaptive protection's window ticker
// (limits and levels stay where they are) and the health checks of ejected servers. The
// gateway still answers requests; Close is for the end of the process or of a test, after
// Shutdown.
func (g *Gateway) Close() {
	g.health.close()
	g.ovlTicker.close()
}

// runOverload closes every enabled pool's window each OverloadWindow and publishes the
// gauges, until stop is closed.
func (g *Gateway) runOverload(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(OverloadWindow)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		st := g.state.Load()
		if st == nil {
			continue
		}
		for _, p := range st.pools {
			if p.ctl.Settings().Enabled {
				p.ctl.Update()
			}
			p.publish()
		}
	}
}

// poolGauges are a pool's overload gauges, resolved once.
type poolGauges struct {
	limit, level, inflight, baseline, latency, enabled prometheus.Gauge
}

func newPoolGauges(name string) poolGauges {
	return poolGauges{overloadLimit.WithLabelValues(name), overloadLevel.WithLabelValues(name),
		overloadInFlight.WithLabelValues(name), overloadBaseline.WithLabelValues(name),
		overloadLatency.WithLabelValues(name), overloadEnabled.WithLabelValues(name)}
}

func (p *pool) publish() {
	s := p.ctl.Snapshot()
	g := &p.gauges
	g.limit.Set(float64(s.Limit))
	g.level.Set(float64(s.Level))
	g.inflight.Set(float64(s.InFlight))
	g.baseline.Set(s.BaselineMs / 1000)
	g.latency.Set(s.LatencyMs / 1000)
	switch {
	case s.Shadow:
		g.enabled.Set(2)
	case s.Enabled:
		g.enabled.Set(1)
	default:
		g.enabled.Set(0)
	}
}

// PoolOverload is one pool's adaptive protection state, for the admin view and the
// dashboard.
type PoolOverload struct {
	Pool string `json:"pool"`
	adaptive.Snapshot
	// Routes are the pool's routes with their business priority and whether they are core.
	Routes []RouteLevel `json:"routes"`
}

// RouteLevel is a route's place in the admission levels.
type RouteLevel struct {
	Route    string `json:"route"`
	Core     bool   `json:"core"`
	Priority int    `json:"priority"`
	// Levels is the range of admission levels the route's requests can have.
	Levels [2]int `json:"levels"`
}

// Overload returns the adaptive protection state of every pool, sorted by pool name.
func (g *Gateway) Overload() []PoolOverload {
	st := g.state.Load()
	if st == nil {
		return nil
	}
	var out []PoolOverload
	for _, name := range slices.Sorted(maps.Keys(st.pools)) {
		po := PoolOverload{Pool: name, Snapshot: st.pools[name].ctl.Snapshot(), Routes: []RouteLevel{}}
		for _, rname := range slices.Sorted(maps.Keys(st.cfg.Routes)) {
			rc := st.cfg.Routes[rname]
			if rc.Pool != name {
				continue
			}
			lo := adaptive.MakeLevel(rc.Priority, 0, 0)
			po.Routes = append(po.Routes, RouteLevel{Route: rname, Core: rc.Core, Priority: rc.Priority,
				Levels: [2]int{int(lo), int(lo) + adaptive.TierLevels*adaptive.UserLevels - 1}})
		}
		out = append(out, po)
	}
	return out
}

// newRouteOverload prepares a route's view of its pool's protection.
func newRouteOverload(name string, rc *config.Route, a config.Adaptive, ctl *adaptive.Controller, chain []link) overload {
	o := overload{on: a.Enabled || a.Shadow, core: rc.Core, ctl: ctl, key: a.UserKey,
		window: int64(a.UserWindow), shed: gatewayReason(name, "overload", "shed", 0)}
	o.tiers = []adaptive.Level{adaptive.MakeLevel(rc.Priority, adaptive.TierLevels-1, 0)}
	for _, l := range chain {
		if r, ok := l.filter.(*promothrottle.PromoThrottle); ok {
			n := r.Tiers()
			for rank := range n {
				o.tiers = append(o.tiers, adaptive.MakeLevel(rc.Priority, rank*adaptive.TierLevels/n, 0))
			}
		}
	}
	return o
}

// OverloadSummary is the console's view of adaptive protection: one line per pool with
// protection on (nil when no pool has it, so the console hides the section).
func (g *Gateway) OverloadSummary() any {
	type line struct {
		Pool       string  `json:"pool"`
		Mode       string  `json:"mode"`
		Limit      int64   `json:"limit"`
		InFlight   int64   `json:"in_flight"`
		Level      int     `json:"level"`
		LevelParts [3]int  `json:"level_priority_tier_user"`
		BaselineMs float64 `json:"baseline_ms"`
		LatencyMs  float64 `json:"latency_ms"`
		Shed       uint64  `json:"shed_total"`
	}
	var out []line
	for _, p := range g.Overload() {
		if !p.Enabled {
			continue
		}
		mode := "on"
		switch {
		case p.Shadow:
			mode = "shadow"
		case p.Pinned:
			mode = "pinned"
		}
		out = append(out, line{p.Pool, mode, p.Limit, p.InFlight, p.Level, p.LevelParts, p.BaselineMs, p.LatencyMs, p.ShedLevel + p.ShedLimit})
	}
	if out == nil {
		return nil
	}
	return out
}
