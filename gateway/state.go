package gateway

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/bytesconv"
	"github.com/floodgate/floodgate/internal/metrics"
)

var (
	requestsTotal = metrics.NewCounterVec("requests_total",
		"Requests by route and verdict: admitted (proxied) or the <filter>/<reason> of the gateway's own answer.", "route", "verdict")
	shadowTotal = metrics.NewCounterVec("shadow_rejects_total",
		"Requests a filter in shadow mode would have rejected (they were admitted).", "route", "verdict")
	upstreamLatency = metrics.NewHistogramVec("upstream_latency_seconds",
		"Time from sending a request upstream to its complete answer (or error), by route.", metrics.LatencyBuckets, "route")
	requestDuration = metrics.NewHistogramVec("request_duration_seconds",
		"Time from a request's arrival to its answer being ready, by route and outcome: admitted (the upstream answered, or an async route accepted the grant), shed (the gateway answered for a filter, a disabled route or no route), failed (the gateway answered for an upstream failure, or could not store a grant).",
		metrics.LatencyBuckets, "route", "outcome")
)

// outcome classifies a request's answer for floodgate_request_duration_seconds.
type outcome uint8

const (
	outAdmitted outcome = iota
	outShed
	outFailed
	numOutcomes
)

// OutcomeNames are the outcome label values, by outcome.
var OutcomeNames = [numOutcomes]string{"admitted", "shed", "failed"}

// outcomeOf returns the outcome of an answer with reason (nil: the upstream answered).
func outcomeOf(r *filters.Reason) outcome {
	switch {
	case r == nil:
		return outAdmitted
	case r.Filter == "upstream":
		return outFailed
	case r.Filter == "async":
		// an async route's 202 is its admission; not storing the grant is its failure
		switch r.Name {
		case "accepted":
			return outAdmitted
		case "unavailable":
			return outFailed
		}
	}
	return outShed
}

// noRoute is the route label of requests that matched no route or failed at the edge.
const noRoute = "-"

// state is one immutable, complete configuration in force: what a request needs.
type state struct {
	gen           uint64
	cfg           *config.Config
	routes        []*route // match order: exact host, wildcard host, any host; longest prefix first
	byRoute       map[string]*route
	pools         map[string]*pool
	trusted       []netip.Prefix
	verdictHeader bool
	notFoundFB    fallback
	notFoundR     *filters.Reason
	notFoundDur   prometheus.Observer
	edge          map[string]*filters.Reason
	access        *accessLog // nil: no access log
}

type route struct {
	name string
	// rc is the configuration the route was built from: a later configuration that
	// carries the same *config.Route (config.Loader keeps the routes an update did not
	// touch) with the same pool gets this route as it is, filters and counters included.
	rc          *config.Route
	info        filters.Route
	host        []byte // exact host, or the suffix ".example.com" of a wildcard
	wildcard    bool
	prefix      []byte // without trailing slash, "" for "/"
	enabled     bool
	pool        *pool
	timeout     time.Duration
	maxBody     int
	fallback5xx bool
	fallback    fallback
	chain       []link
	async       *asyncRoute // nil: proxied
	disabled    *filters.Reason
	upstream    [numFailures]*filters.Reason
	admitted    prometheus.Counter
	latency     prometheus.Observer
	duration    [numOutcomes]prometheus.Observer
	ovl         overload // adaptive overload protection (overload.go)
}

type link struct {
	name   string
	filter filters.Filter
	shadow bool
}

type fallback struct {
	status      int
	contentType []byte
	body        []byte
	headers     []kv
	// verdicts are the answers of their own (fallback.verdicts), exact reasons first.
	verdicts []verdictFallback
}

// verdictFallback is the answer to the verdicts of filter (reason "" for all of them).
type verdictFallback struct {
	filter, reason string
	status         int
	body           []byte // nil: the fallback's
}

// forReason returns the status and body of the answer to reason (status 0: the fallback's).
func (fb *fallback) forReason(reason *filters.Reason) (int, []byte) {
	status, body := reason.Status, fb.body
	for i := range fb.verdicts {
		v := &fb.verdicts[i]
		if v.filter == reason.Filter && (v.reason == "" || v.reason == reason.Name) {
			if v.status != 0 {
				status = v.status
			}
			if v.body != nil {
				body = v.body
			}
			break
		}
	}
	return status, body
}

type kv struct{ k, v []byte }

// gatewayReason declares a reason the gateway itself answers for, counted per route.
func gatewayReason(route, filter, name string, status int) *filters.Reason {
	bc := filters.NewBuildContext(filters.Route{Name: route}, filter, nil, nil, attachCounters(route))
	return bc.Reason(name, status)
}

// attachCounters returns the hook that resolves a reason's counters once, at build time.
func attachCounters(route string) func(*filters.Reason) {
	return func(r *filters.Reason) {
		c := requestsTotal.WithLabelValues(route, r.Verdict)
		s := shadowTotal.WithLabelValues(route, r.Verdict)
		r.Count = c.Inc
		r.Shadow = s.Inc
	}
}

// build makes a new state from cfg beside prev (which keeps serving). It returns the
// new state and a cleanup that retires what prev had and the new state does not reuse,
// to run after the swap; on error everything new is released and prev is untouched.
func (g *Gateway) build(cfg *config.Config, prev *state) (st *state, retire func(), err error) {
	st = &state{cfg: cfg, pools: map[string]*pool{}, byRoute: make(map[string]*route, len(cfg.Routes)), verdictHeader: cfg.Server.VerdictHeader}
	var created []io.Closer // filters built here that prev does not have (closed on failure)
	newPools := map[*pool]bool{}
	defer func() {
		if err != nil {
			for _, c := range created {
				c.Close()
			}
			for p := range newPools {
				p.close()
			}
		}
	}()
	for _, s := range cfg.Server.TrustedProxies {
		p, _ := filters.ParsePrefix(s) // validated already
		st.trusted = append(st.trusted, p)
	}
	for name, pc := range cfg.Pools {
		if prev != nil {
			if old := prev.pools[name]; old != nil && old.sameConfig(*pc) {
				st.pools[name] = old
				continue
			}
		}
		p := newPool(name, *pc, g.dial, g.logger, newController(name, prev))
		if prev != nil && prev.pools[name] != nil {
			p.inherit(prev.pools[name])
		}
		st.pools[name] = p
		newPools[p] = true
	}
	if al := cfg.AccessLog; al.Enabled {
		if prev != nil && prev.access != nil && prev.access.path == al.Path && len(prev.access.slots) >= al.Buffer {
			st.access = prev.access
		} else {
			l, err := newAccessLog(al.Path, al.Buffer)
			if err != nil {
				return nil, nil, config.Errors{{Path: "access_log.path", Msg: fmt.Sprintf("cannot open: %v", err)}}
			}
			st.access = l
			defer func() {
				if err != nil {
					l.close()
				}
			}()
		}
	}
	// a pool whose adaptive settings changed rebuilds its routes (their overload part)
	sameAdaptive := map[string]bool{}
	if prev != nil {
		for name, pc := range cfg.Pools {
			if old := prev.cfg.Pools[name]; old != nil && st.pools[name] == prev.pools[name] {
				sameAdaptive[name] = reflect.DeepEqual(old.Adaptive, pc.Adaptive)
			}
		}
	}
	var errs config.Errors
	for _, name := range slices.Sorted(maps.Keys(cfg.Routes)) {
		rc := cfg.Routes[name]
		var prevRoute *route
		if prev != nil {
			prevRoute = prev.byRoute[name]
		}
		// Unchanged (the same *config.Route, the same pool with the same adaptive
		// settings): keep the route as built. With thousands of routes, rebuilding every
		// one (counters, filters) made a one-key update cost about a second.
		if prevRoute != nil && prevRoute.rc == rc && rc.Async == nil && prevRoute.pool == st.pools[rc.Pool] && sameAdaptive[rc.Pool] {
			st.routes = append(st.routes, prevRoute)
			st.byRoute[name] = prevRoute
			continue
		}
		rt := &route{
			name:        name,
			rc:          rc,
			info:        filters.Route{Name: name, Core: rc.Core},
			enabled:     rc.Enabled,
			pool:        st.pools[rc.Pool],
			timeout:     rc.Timeout.D(),
			maxBody:     int(rc.MaxRequestBody),
			fallback5xx: rc.Upstream5xx == "fallback",
			fallback:    makeFallback(rc.Fallback),
			admitted:    requestsTotal.WithLabelValues(name, "admitted"),
			latency:     upstreamLatency.WithLabelValues(name),
		}
		for o := outcome(0); o < numOutcomes; o++ {
			rt.duration[o] = requestDuration.WithLabelValues(name, OutcomeNames[o])
		}
		rt.host = []byte(rc.Host)
		if strings.HasPrefix(rc.Host, "*.") {
			rt.wildcard = true
			rt.host = []byte(rc.Host[1:])
		}
		rt.prefix = []byte(strings.TrimSuffix(rc.Path, "/"))
		rt.disabled = gatewayReason(name, "route", "disabled", 0)
		for k := upstreamFailure(0); k < numFailures; k++ {
			status := 0
			if k == failTooLarge {
				status = fasthttp.StatusBadGateway
			}
			rt.upstream[k] = gatewayReason(name, "upstream", failureNames[k], status)
		}
		if rc.Async != nil {
			a, aerr := g.buildAsync(name, rc)
			if aerr != nil {
				errs = append(errs, &config.Error{Path: fmt.Sprintf("routes.%s.async", name), Msg: aerr.Error()})
			}
			rt.async = a
		}
		for _, spec := range rc.Chain {
			if !spec.Enabled {
				continue
			}
			var prevFilter filters.Filter
			if prevRoute != nil {
				prevFilter = prevRoute.filter(spec.Name)
			}
			bc := filters.NewBuildContext(rt.info, spec.Name, g.logger, g.env, attachCounters(name))
			f, berr := spec.Config.Build(bc, prevFilter)
			if berr != nil {
				errs = append(errs, &config.Error{Path: fmt.Sprintf("routes.%s.filters.%s", name, spec.Name), Msg: berr.Error()})
				continue
			}
			if c, ok := f.(io.Closer); ok && f != prevFilter {
				created = append(created, c)
			}
			rt.chain = append(rt.chain, link{name: spec.Name, filter: f, shadow: spec.Shadow})
		}
		if rt.pool != nil {
			rt.ovl = newRouteOverload(name, rc, cfg.Pools[rc.Pool].Adaptive, rt.pool.ctl, rt.chain)
		}
		st.routes = append(st.routes, rt)
		st.byRoute[name] = rt
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	sort.SliceStable(st.routes, func(i, j int) bool {
		a, b := st.routes[i], st.routes[j]
		if ra, rb := hostRank(a), hostRank(b); ra != rb {
			return ra > rb
		}
		return len(a.prefix) > len(b.prefix)
	})
	st.notFoundFB = fallback{status: fasthttp.StatusNotFound, contentType: []byte("application/json"), body: []byte(`{"ok":false,"error":"no route"}`)}
	st.notFoundR = gatewayReason(noRoute, "route", "not_found", 0)
	st.notFoundDur = requestDuration.WithLabelValues(noRoute, OutcomeNames[outShed])
	st.edge = map[string]*filters.Reason{}
	for _, e := range []struct {
		name   string
		status int
	}{{"bad_request", 400}, {"headers_too_large", 431}, {"body_too_large", 413}, {"timeout", 408}, {"too_many_connections", 429}} {
		st.edge[e.name] = gatewayReason(noRoute, "edge", e.name, e.status)
	}

	floors := coreFloors(cfg)
	retire = func() {
		for name, p := range st.pools {
			p.ctl.SetSettings(adaptiveSettings(cfg.Pools[name].Adaptive, floors[name]))
			p.setHealth(cfg.Pools[name].HealthCheck)
		}
		g.syncOverload(st)
		g.syncHealth(st)
		if prev == nil {
			return
		}
		inUse := map[filters.Filter]bool{}
		for _, rt := range st.routes {
			for _, l := range rt.chain {
				inUse[l.filter] = true
			}
		}
		for _, rt := range prev.routes {
			for _, l := range rt.chain {
				if c, ok := l.filter.(io.Closer); ok && !inUse[l.filter] {
					c.Close()
				}
			}
		}
		for name, p := range prev.pools {
			if st.pools[name] != p {
				p.close()
				forgetServers(p, st.pools[name])
			}
		}
		for _, rt := range prev.routes {
			if st.byRoute[rt.name] == nil {
				metrics.Forget(prometheus.Labels{"route": rt.name})
			}
		}
		if prev.access != nil && prev.access != st.access {
			prev.access.close()
		}
	}
	return st, retire, nil
}

func hostRank(r *route) int {
	switch {
	case len(r.host) == 0:
		return 0
	case r.wildcard:
		return 1
	}
	return 2
}

func (st *state) byName(name string) *route { return st.byRoute[name] }

func (rt *route) filter(name string) filters.Filter {
	for _, l := range rt.chain {
		if l.name == name {
			return l.filter
		}
	}
	return nil
}

func makeFallback(f config.Fallback) fallback {
	fb := fallback{status: f.Status, contentType: []byte(f.ContentType), body: []byte(f.Body)}
	keys := make([]string, 0, len(f.Headers))
	for k := range f.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fb.headers = append(fb.headers, kv{k: []byte(k), v: []byte(f.Headers[k])})
	}
	for _, filter := range slices.Sorted(maps.Keys(f.Verdicts)) {
		for _, reason := range slices.Sorted(maps.Keys(f.Verdicts[filter])) {
			vf := f.Verdicts[filter][reason]
			v := verdictFallback{filter: filter, reason: reason, status: vf.Status}
			if reason == "*" {
				v.reason = ""
			}
			if vf.Body != "" {
				v.body = []byte(vf.Body)
			}
			fb.verdicts = append(fb.verdicts, v)
		}
	}
	// exact reasons before a filter's "*"
	slices.SortStableFunc(fb.verdicts, func(a, b verdictFallback) int {
		switch {
		case a.reason != "" && b.reason == "":
			return -1
		case a.reason == "" && b.reason != "":
			return 1
		}
		return 0
	})
	return fb
}

// match finds the route for host and path: routes for the exact host first, then
// wildcard hosts, then any host; within those the longest prefix that ends at a path
// segment boundary.
func (st *state) match(host, path []byte) *route {
	host = stripPort(host)
	for _, r := range st.routes {
		switch {
		case len(r.host) == 0:
		case r.wildcard:
			if len(host) <= len(r.host) || !bytesconv.EqualFold(host[len(host)-len(r.host):], r.host) {
				continue
			}
		default:
			if !bytesconv.EqualFold(host, r.host) {
				continue
			}
		}
		if prefixMatch(path, r.prefix) {
			return r
		}
	}
	return nil
}

func prefixMatch(path, prefix []byte) bool {
	if !bytes.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func stripPort(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}

func (st *state) notFound(ctx *fasthttp.RequestCtx) {
	st.notFoundR.Count()
	resp := &ctx.Response
	resp.SetStatusCode(st.notFoundFB.status)
	resp.Header.SetContentTypeBytes(st.notFoundFB.contentType)
	if st.verdictHeader {
		resp.Header.SetBytesKV(verdictHeaderName, st.notFoundR.VerdictBytes())
	}
	resp.SetBodyRaw(st.notFoundFB.body)
}

// forgetServers deletes the series of old's servers that next (the pool of the same name
// in the new configuration, or nil) no longer has.
func forgetServers(old, next *pool) {
	if next == nil {
		metrics.Forget(prometheus.Labels{"pool": old.name})
		return
	}
	for _, u := range old.servers {
		if !slices.ContainsFunc(next.servers, func(n *upstream) bool { return n.addr == u.addr }) {
			metrics.Forget(prometheus.Labels{"pool": old.name, "addr": u.addr})
		}
	}
}
