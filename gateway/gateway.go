// Package gateway is floodgate's edge: the fasthttp server, routing, the filter chain
// runtime, the proxy to upstream pools, fallback answers, and the updater that swaps in a
// new configuration atomically.
//
// The running configuration is one immutable *state behind an atomic pointer. A request
// loads it once and uses nothing else; an update builds a complete new state beside the
// running one and swaps it in with one store, or is rejected whole.
package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/accept"
	"github.com/floodgate/floodgate/internal/adaptive"
)

// VerdictHeader is the header on every answer the gateway makes itself.
const VerdictHeader = "X-Floodgate-Verdict"

var (
	verdictHeaderName = []byte(VerdictHeader)
	retryAfterName    = []byte("Retry-After")
	http11            = []byte("HTTP/1.1")
)

// Gateway is one gateway process's traffic side.
type Gateway struct {
	state  atomic.Pointer[state]
	logger *zap.Logger
	env    *filters.Env
	epoch  time.Time
	// epochNs is epoch in Unix nanoseconds: a request's wall clock is epochNs + its mono.
	epochNs int64
	// dial, if set, replaces TCP dialing of upstreams (in-memory tests).
	dial fasthttp.DialFunc

	server   *fasthttp.Server
	reqs     sync.Pool
	draining atomic.Bool

	// acceptor stores the grants of async routes (nil: the gateway serves no async route).
	acceptor *accept.Acceptor
	recent   *recentGrants
	instance string
	// ovlTicker runs the adaptive protection's window ticker (overload.go).
	ovlTicker bgLoop
	// health runs the health checks of ejected servers (health.go).
	health bgLoop
}

// Options configures New.
type Options struct {
	Logger *zap.Logger
	Env    *filters.Env
	// Dial replaces TCP dialing to upstreams; tests use in-memory listeners.
	Dial fasthttp.DialFunc
	// Acceptor stores the grants of async routes; nil refuses configurations with async
	// routes.
	Acceptor *accept.Acceptor
	// InstanceID names this gateway in the grants it accepts.
	InstanceID string
}

// New returns a Gateway that serves nothing until the first Apply.
func New(opts Options) *Gateway {
	g := &Gateway{logger: opts.Logger, env: opts.Env, epoch: time.Now(), dial: opts.Dial, acceptor: opts.Acceptor, instance: opts.InstanceID}
	g.epochNs = g.epoch.UnixNano()
	if g.acceptor != nil {
		g.recent = newRecentGrants(200000, 10*time.Minute)
	}
	if g.logger == nil {
		g.logger = zap.NewNop()
	}
	if g.env == nil {
		g.env = filters.NewEnv()
	}
	g.reqs.New = func() any { return new(filters.Request) }
	return g
}

// Env returns the state shared by all filters (live instance count).
func (g *Gateway) Env() *filters.Env { return g.env }

// Generation returns the generation of the configuration in force (0: none yet).
func (g *Gateway) Generation() uint64 {
	if st := g.state.Load(); st != nil {
		return st.gen
	}
	return 0
}

// Config returns the configuration in force, or nil.
func (g *Gateway) Config() *config.Config {
	if st := g.state.Load(); st != nil {
		return st.cfg
	}
	return nil
}

// mono returns t on the process's monotonic clock in nanoseconds.
func (g *Gateway) mono(t time.Time) int64 { return int64(t.Sub(g.epoch)) }

// Handler is the request handler for requests made in memory (tests and benchmarks):
// the guard's checks without the strict framer's, as such a request has no bytes on a
// wire to follow. The traffic server runs guard, which refuses a connection no framer
// follows.
func (g *Gateway) Handler(ctx *fasthttp.RequestCtx) { g.check(ctx, false) }

func (g *Gateway) serve(ctx *fasthttp.RequestCtx) {
	st := g.state.Load()
	if st == nil {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.SetBytesKV(verdictHeaderName, []byte("gateway/starting"))
		return
	}
	// The request's time: fasthttp reads the clock once per request before the handler
	// (RequestCtx.Time); reading it again here would cost a clock read per request (about
	// 65 ns on a KVM guest). A RequestCtx built by hand (tests) has no time yet.
	now := ctx.Time()
	if now.IsZero() {
		now = time.Now()
	}
	rt := st.match(ctx.Host(), ctx.Path())
	if rt == nil {
		st.notFound(ctx)
		dur := time.Since(now)
		st.notFoundDur.Observe(dur.Seconds())
		if st.access != nil {
			st.access.record(ctx, nil, st.notFoundR, peerAddr(ctx), now, dur)
		}
		return
	}
	clientIP := st.clientIP(ctx)
	var ex exchange
	reason := g.admit(ctx, st, rt, clientIP, now, &ex)
	dur := time.Since(now)
	rt.duration[outcomeOf(reason)].Observe(dur.Seconds())
	if st.access != nil {
		st.access.recordExchange(ctx, rt, reason, clientIP, now, dur, &ex)
	}
}

// exchange is what the upstream side of one request tells the access log: the server
// it went to and how long the exchange took (zero when none was tried).
type exchange struct {
	upstream *upstream
	took     time.Duration
}

// admit runs the route's switch, chain and proxy; it returns the reason of the gateway's
// own answer, or nil when the upstream answered.
func (g *Gateway) admit(ctx *fasthttp.RequestCtx, st *state, rt *route, clientIP netip.Addr, now time.Time, ex *exchange) *filters.Reason {
	mono := g.mono(now)
	rank := 0    // the request's promotion tier rank, if a filter set it (filters.Request.Rank)
	start := now // when the upstream exchange starts, unless a filter made the request wait
	if !rt.enabled {
		rt.answer(ctx, st, rt.disabled, 0)
		return rt.disabled
	}
	if len(rt.chain) > 0 {
		req := g.reqs.Get().(*filters.Request)
		req.Ctx, req.Now, req.Wall, req.Route, req.ClientIP, req.Rank = ctx, mono, now.UnixNano(), &rt.info, clientIP, 0
		for i := range rt.chain {
			link := &rt.chain[i]
			res := link.filter.Decide(req)
			if res.Action == filters.Reject {
				if link.shadow {
					res.Reason.Shadow()
					continue
				}
				req.Ctx = nil
				g.reqs.Put(req)
				rt.answer(ctx, st, res.Reason, res.RetryAfter)
				return res.Reason
			}
			if res.Wait > 0 {
				time.Sleep(res.Wait)
				start = time.Time{}
			}
		}
		rank = req.Rank
		req.Ctx = nil
		g.reqs.Put(req)
	}
	if rt.async != nil {
		return g.accept(ctx, st, rt, now)
	}
	return g.forward(ctx, st, rt, clientIP, mono, rank, start, ex)
}

// forward proxies the request to the route's pool. start is the time the upstream
// latency is measured from: the request's time when the route has no filters (routing
// takes well under a microsecond, far below the histogram's resolution), or zero to read
// the clock here. rank is the request's promotion tier rank (filters.Request.Rank).
func (g *Gateway) forward(ctx *fasthttp.RequestCtx, st *state, rt *route, clientIP netip.Addr, mono int64, rank int, start time.Time, ex *exchange) *filters.Reason {
	ovl := &rt.ovl
	if ovl.on {
		d := ovl.admit(ctx, clientIP, g.epochNs+mono, rank)
		if !d.Forward() {
			rt.answer(ctx, st, ovl.shed, 0)
			return ovl.shed
		}
		if d == adaptive.ShadowShed {
			ovl.shed.Shadow()
		}
	}
	u := rt.pool.pick(mono)
	if u == nil {
		if ovl.on {
			ovl.ctl.Done(0, adaptive.Failed, ovl.core)
		}
		rt.answer(ctx, st, rt.upstream[failUnavailable], 0)
		return rt.upstream[failUnavailable]
	}
	req := &ctx.Request
	forwardTarget(req)
	cleanRequest(&req.Header)
	setForwardedFor(&req.Header, peerAddr(ctx), clientIP, st.trustsPeer(ctx))
	if len(rt.pool.host) > 0 {
		req.Header.SetHostBytes(rt.pool.host)
	}
	req.Header.SetProtocolBytes(http11)

	resp := &ctx.Response
	if start.IsZero() {
		start = time.Now()
	}
	err := u.do(req, resp, rt.timeout, start)
	took := time.Since(start)
	rt.latency.Observe(took.Seconds())
	ex.upstream, ex.took = u, took
	if ovl.on {
		ovl.ctl.Done(took, overloadOutcome(err, resp), ovl.core)
	}
	if err != nil {
		kind := upstreamError(err)
		if kind == failTimeout || kind == failUnavailable {
			rt.pool.failed(u, mono, kind)
		}
		resp.Reset()
		rt.answer(ctx, st, rt.upstream[kind], 0)
		return rt.upstream[kind]
	}
	rt.pool.succeeded(u)
	if rt.fallback5xx && resp.StatusCode() >= 500 {
		resp.Reset()
		rt.answer(ctx, st, rt.upstream[failError5xx], 0)
		return rt.upstream[failError5xx]
	}
	cleanResponse(&resp.Header)
	rt.admitted.Inc()
	return nil
}

// answer writes the route's fallback answer for reason.
func (rt *route) answer(ctx *fasthttp.RequestCtx, st *state, reason *filters.Reason, retryAfter time.Duration) {
	reason.Count()
	fb := &rt.fallback
	status, body := reason.Status, fb.body
	if len(fb.verdicts) > 0 {
		status, body = fb.forReason(reason)
	}
	if status == 0 {
		status = fb.status
	}
	resp := &ctx.Response
	resp.SetStatusCode(status)
	resp.Header.SetContentTypeBytes(fb.contentType)
	for i := range fb.headers {
		resp.Header.SetBytesKV(fb.headers[i].k, fb.headers[i].v)
	}
	if st.verdictHeader {
		resp.Header.SetBytesKV(verdictHeaderName, reason.VerdictBytes())
	}
	if retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		var buf [20]byte
		resp.Header.SetBytesKV(retryAfterName, strconv.AppendInt(buf[:0], secs, 10))
	}
	resp.SetBodyRaw(body)
}

// clientIP returns the peer address, or - when the peer is a trusted proxy - the nearest
// address in X-Forwarded-For that is not itself trusted.
func (st *state) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := peerAddr(ctx)
	if len(st.trusted) == 0 || !st.isTrusted(peer) {
		return peer
	}
	var buf [maxForwardedFor]byte
	xff, ok := forwardedChain(&ctx.Request.Header, &buf) // every line, as one list
	if !ok {
		return peer // a chain too long to read is not believed
	}
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		part := bytes.TrimSpace(xff[i+1:])
		if i < 0 {
			xff = nil
		} else {
			xff = xff[:i]
		}
		a, err := netip.ParseAddr(bytesString(part))
		if err != nil {
			return peer // a malformed hop: stop trusting the chain here
		}
		a = a.Unmap()
		if !st.isTrusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

func (st *state) trustsPeer(ctx *fasthttp.RequestCtx) bool {
	return len(st.trusted) > 0 && st.isTrusted(peerAddr(ctx))
}

func (st *state) isTrusted(a netip.Addr) bool {
	for _, p := range st.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if tcp, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(tcp.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}
