package gateway

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/gateway/config"
)

// Unit tests of the active health checks (health.go) on a pool built directly, with a
// fake clock (the now passed to failed, pick and healthTick) and in-memory upstreams
// behind a counting dialer. Probes run inline unless a test says otherwise.

// healthRig is one pool of one server "name:1" on an in-memory network.
type healthRig struct {
	t     *testing.T
	net   *memNet
	p     *pool
	u     *upstream
	dials atomic.Int32
	// block, when set, makes dials wait for it to close
	block chan struct{}
	base  map[string]float64 // the counters when the rig was made
}

const sec = int64(time.Second)

func newHealthRig(t *testing.T, name string, hc config.HealthCheck) *healthRig {
	return newHealthRigPipe(t, name, hc, false)
}

// newHealthRigPipe is newHealthRig with the pool pipelining when pipeline is set.
func newHealthRigPipe(t *testing.T, name string, hc config.HealthCheck, pipeline bool) *healthRig {
	h := &healthRig{t: t, net: newMemNet()}
	cfg := config.Pool{
		Addrs: []string{name + ":1"}, MaxConns: 2, ConnectTimeout: filters.Duration(time.Second),
		ReadTimeout: filters.Duration(30 * time.Second), WriteTimeout: filters.Duration(30 * time.Second),
		IdleTimeout: filters.Duration(30 * time.Second), MaxResponseBody: 1 << 20,
		Eject:       config.Eject{Failures: 2, Duration: filters.Duration(10 * time.Second)},
		HealthCheck: hc,
	}
	if pipeline {
		cfg.Pipeline = config.Pipeline{Enabled: true, Conns: 2, Stall: filters.Duration(5 * time.Millisecond)}
	}
	dial := func(addr string) (net.Conn, error) {
		h.dials.Add(1)
		if h.block != nil {
			<-h.block
		}
		return h.net.dial(addr)
	}
	h.p = newPool(name, cfg, dial, zap.NewNop(), nil)
	h.u = h.p.servers[0]
	h.base = map[string]float64{}
	for _, r := range []string{"passed", "failed", "skipped"} {
		h.base[r] = h.total(r)
	}
	t.Cleanup(h.p.close)
	return h
}

// serve starts the in-memory upstream (h answers /healthz; everything else gets "ok").
func (h *healthRig) serve(health fasthttp.RequestHandler) {
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if health != nil && strings.HasPrefix(string(ctx.Path()), "/healthz") {
			health(ctx)
			return
		}
		ctx.SetBodyString("ok")
	}}
	go s.Serve(h.net.listen(h.u.addr))
	h.t.Cleanup(func() { s.Shutdown() })
}

// stop removes the upstream's listener: dials are refused from now on.
func (h *healthRig) stop() {
	h.net.mu.Lock()
	delete(h.net.lns, h.u.addr)
	h.net.mu.Unlock()
}

func (h *healthRig) eject(now int64) {
	h.t.Helper()
	for i := 0; i < 2; i++ {
		h.p.failed(h.u, now, failUnavailable)
	}
	if h.p.pick(now) != nil {
		h.t.Fatal("server still picked after eject.failures failures")
	}
}

func inline(f func()) { f() }

// counter is upstream_health_checks_total{result} of the rig's server since the rig was
// made (the series is process-wide: -count=N runs the test again in one process).
func (h *healthRig) counter(result string) float64 {
	return h.total(result) - h.base[result]
}

func (h *healthRig) total(result string) float64 {
	var m dto.Metric
	if err := upstreamProbes.WithLabelValues(h.p.name, h.u.addr, result).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

var defaultHC = config.HealthCheck{Enabled: true, Interval: filters.Duration(time.Second), Timeout: filters.Duration(time.Second), HealthyThreshold: 1}

// TestHealthCheckReadmitsOnFirstPass: an ejected server stays out whatever the clock says
// (no timer puts it back blindly), is probed once per interval while dead, and is back in
// rotation at the first probe that passes - for both probe kinds.
func TestHealthCheckReadmitsOnFirstPass(t *testing.T) {
	for _, tc := range []struct {
		desc, name, path string
		pipeline         bool
	}{
		{desc: "TCP connect probe", name: "hc-first-tcp"},
		{desc: "HTTP probe", name: "hc-first-http", path: "/healthz?deep=1"},
		{desc: "HTTP probe, pipelined pool", name: "hc-first-pipe", path: "/healthz?deep=1", pipeline: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			hc := defaultHC
			hc.Path = tc.path
			h := newHealthRigPipe(t, tc.name, hc, tc.pipeline)
			now := 5 * sec
			h.eject(now)
			if got := h.u.ejectedUntil.Load(); got != untilProbe {
				t.Fatalf("ejectedUntil = %d, want untilProbe (out until a probe passes)", got)
			}
			if h.p.pick(now+3600*sec) != nil {
				t.Fatal("an hour later the server is picked without a probe: the ejection timer re-admitted it blindly")
			}
			h.p.succeeded(h.u) // a request sent before the ejection answers after it
			if h.u.ejectedUntil.Load() != untilProbe {
				t.Fatal("a request sent before the ejection put the server back: only a probe may")
			}
			h.p.healthTick(now, inline)
			if h.dials.Load() != 1 || h.counter("failed") != 1 || h.u.ejectedUntil.Load() != untilProbe {
				t.Fatalf("probe of a dead server: %d dials, %v failed, ejectedUntil %d; want 1 dial, 1 failed, still out",
					h.dials.Load(), h.counter("failed"), h.u.ejectedUntil.Load())
			}
			if e := h.u.probe.lastErr.Load(); e == nil || !strings.Contains(*e, "refused") {
				t.Errorf("probe error %v, want the refused connection", e)
			}
			var seen atomic.Pointer[string]
			h.serve(func(ctx *fasthttp.RequestCtx) {
				s := string(ctx.Method()) + " " + string(ctx.RequestURI()) + " host=" + string(ctx.Host())
				seen.Store(&s)
			})
			h.p.healthTick(now+sec-1, inline)
			if h.dials.Load() != 1 {
				t.Fatalf("probed again %d ns before the interval was over", 1)
			}
			h.p.healthTick(now+sec, inline)
			if h.u.ejectedUntil.Load() != 0 || h.p.pick(now+sec) != h.u {
				t.Fatalf("after a passing probe the server is still out (ejectedUntil %d)", h.u.ejectedUntil.Load())
			}
			if h.counter("passed") != 1 || h.u.probe.lastErr.Load() != nil {
				t.Errorf("passed counter %v, last error %v; want 1 and none", h.counter("passed"), h.u.probe.lastErr.Load())
			}
			if tc.path != "" {
				if s := seen.Load(); s == nil || *s != "GET /healthz?deep=1 host="+tc.name+":1" {
					t.Errorf("the upstream saw %v, want GET /healthz?deep=1 with the server's address as Host", s)
				}
				if h.u.conns() != 1 {
					t.Errorf("%d connections after the HTTP probe, want its connection kept for the requests", h.u.conns())
				}
			}
			h.p.healthTick(now+5*sec, inline)
			if h.counter("passed")+h.counter("failed") != 2 {
				t.Error("a server in rotation was probed")
			}
		})
	}
}

// TestHealthCheckHTTPStatus: an HTTP probe passes only on a 2xx answer.
func TestHealthCheckHTTPStatus(t *testing.T) {
	hc := defaultHC
	hc.Path = "/healthz"
	h := newHealthRig(t, "hc-status", hc)
	var status atomic.Int32
	status.Store(503)
	h.serve(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(int(status.Load())) })
	now := sec
	h.eject(now)
	for i, code := range []int32{503, 404, 302, 200} {
		status.Store(code)
		h.p.healthTick(now+int64(i)*sec, inline)
		out := h.u.ejectedUntil.Load() == untilProbe
		if out != (code != 200) {
			t.Fatalf("probe answered %d: ejected %v", code, out)
		}
		if e := h.u.probe.lastErr.Load(); code != 200 && (e == nil || !strings.Contains(*e, "answered")) {
			t.Errorf("probe answered %d: error %v, want the status named", code, e)
		}
	}
}

// TestHealthCheckThreshold: healthy_threshold passes in a row; a failure starts over.
func TestHealthCheckThreshold(t *testing.T) {
	hc := defaultHC
	hc.HealthyThreshold = 3
	h := newHealthRig(t, "hc-threshold", hc)
	now := sec
	h.eject(now)
	h.serve(nil)
	tick := func() {
		now += sec
		h.p.healthTick(now, inline)
	}
	tick()
	tick()
	if h.u.ejectedUntil.Load() != untilProbe {
		t.Fatal("back after 2 of 3 passes")
	}
	h.stop()
	tick()
	h.serve(nil)
	tick()
	tick()
	if h.u.ejectedUntil.Load() != untilProbe {
		t.Fatal("back after 2 passes following a failure: the failure did not start the count over")
	}
	tick()
	if h.u.ejectedUntil.Load() != 0 {
		t.Fatal("still out after 3 passes in a row")
	}
}

// TestHealthCheckOneProbeAtATime: a probe that has not finished when the next interval
// comes is not joined by a second one.
func TestHealthCheckOneProbeAtATime(t *testing.T) {
	hc := defaultHC
	hc.Interval, hc.Timeout = filters.Duration(time.Minute), filters.Duration(time.Minute)
	h := newHealthRig(t, "hc-one", hc)
	now := sec
	h.eject(now)
	h.serve(nil)
	h.block = make(chan struct{})
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	for i := int64(0); i < 5; i++ {
		h.p.healthTick(now+i*60*sec, start)
	}
	close(h.block)
	wg.Wait()
	if n := h.dials.Load(); n != 1 {
		t.Fatalf("%d probes ran over 5 intervals while the first was still connecting, want 1", n)
	}
	if h.u.ejectedUntil.Load() != 0 {
		t.Fatal("the probe passed but the server is still out")
	}
}

// TestHealthCheckKeepsTheBudget: while the server's share of max_conns is used by requests
// still in flight from before the ejection, no probe opens another connection.
func TestHealthCheckKeepsTheBudget(t *testing.T) {
	hc := defaultHC
	hc.Path = "/healthz"
	h := newHealthRig(t, "hc-budget", hc)
	release := make(chan struct{})
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { <-release }}
	go s.Serve(h.net.listen(h.u.addr)) // every request hangs until release
	var wg sync.WaitGroup
	for i := 0; i < h.u.hc.MaxConns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI("/slow")
			req.Header.SetHost("x")
			h.u.hc.Do(req, resp)
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.u.hc.ConnsCount() < h.u.hc.MaxConns {
		if time.Now().After(deadline) {
			t.Fatalf("the requests hold %d connections after 30 s, want %d", h.u.hc.ConnsCount(), h.u.hc.MaxConns)
		}
		time.Sleep(time.Millisecond) // ends as soon as both requests hold their connection
	}
	h.eject(sec)
	dials := h.dials.Load()
	if err := h.p.probeServer(h.u, h.p.health.Load()); err != errBudget {
		t.Fatalf("probe with the share in use: %v, want it skipped", err)
	}
	if h.dials.Load() != dials || h.counter("skipped") != 1 || h.u.hc.ConnsCount() > h.u.hc.MaxConns {
		t.Fatalf("skipped probe: %d new dials, skipped %v, %d conns of %d", h.dials.Load()-dials, h.counter("skipped"), h.u.hc.ConnsCount(), h.u.hc.MaxConns)
	}
	close(release)
	wg.Wait()
	s.Shutdown()
}

// TestHealthCheckLiveSwitch: turning health checks off makes a probed ejection an
// ordinary timed one (it ends by eject.duration); turning them on holds a running timed
// ejection until a probe passes.
func TestHealthCheckLiveSwitch(t *testing.T) {
	h := newHealthRig(t, "hc-switch", defaultHC)
	now := sec
	h.eject(now)
	off := defaultHC
	off.Enabled = false
	h.p.setHealth(off)
	h.p.healthTick(now, inline)
	if got, want := h.u.ejectedUntil.Load(), now+10*sec; got != want {
		t.Fatalf("health checks off: ejectedUntil %d, want %d (eject.duration from the switch)", got, want)
	}
	if h.dials.Load() != 0 {
		t.Fatal("probed with health checks off")
	}
	if h.p.pick(now+10*sec) != h.u {
		t.Fatal("health checks off: not back when the ejection expired")
	}
	// a timed ejection running when they are switched on again
	h.u.fails.Store(0)
	h.eject(20 * sec)
	h.p.setHealth(defaultHC)
	h.p.healthTick(21*sec, inline)
	if h.u.ejectedUntil.Load() != untilProbe {
		t.Fatalf("health checks on: ejectedUntil %d, want untilProbe", h.u.ejectedUntil.Load())
	}
	if h.p.pick(3600*sec) != nil {
		t.Fatal("health checks on: the old timer re-admitted a dead server")
	}
}

// TestHealthCheckDialTimeout: a connect that hangs fails the probe after the timeout.
func TestHealthCheckDialTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	_, err := dialWithin(func(string) (net.Conn, error) { <-block; return nil, nil }, "x:1", time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no connection within 1ms") {
		t.Fatalf("hanging dial: %v, want a timeout naming the limit", err)
	}
}

// TestHealthCheckThroughTheGateway: a server ejected by failed requests, with an
// ejection timer far longer than the test, is back within about one probe interval of
// its return; the admin view and the metrics show the probes and the ejected count; a
// reload that changes only health_check keeps the pool (and its connections) and puts the
// new settings in force.
func TestHealthCheckThroughTheGateway(t *testing.T) {
	const cfg = `
server: {listen: 127.0.0.1:0}
pools: {hq: {addrs: [hq1:1], max_conns: 4, eject: {failures: 2, duration: 1h}, health_check: {interval: 100ms, timeout: 100ms}}}
routes: {hq_route: {path: /hq, pool: hq}}
`
	r := newRig(t, cfg)
	for i := 0; i < 2; i++ {
		if v := string(r.do("GET", "/hq", nil).Header.Peek(VerdictHeader)); v != "upstream/unavailable" {
			t.Fatalf("request %d to a refused server: verdict %q", i, v)
		}
	}
	ps := r.gw.Pools()[0]
	if ps.Ejected != 1 || !ps.Servers[0].UntilHealthy || ps.HealthCheck != "TCP connect every 100ms (timeout 100ms)" {
		t.Fatalf("pool status %+v, want 1 server ejected until a health check passes", ps)
	}
	if v := gathered(t, r.gw.Collector(), "floodgate_pool_ejected_servers"); v != 1 {
		t.Errorf("floodgate_pool_ejected_servers = %v, want 1", v)
	}
	r.upstream("hq1:1", echoUpstream)
	back := time.Now()
	deadline := back.Add(30 * time.Second)
	for !r.gw.Pools()[0].Servers[0].Healthy {
		if time.Now().After(deadline) {
			t.Fatalf("server not back 30 s after it answers: %+v", r.gw.Pools()[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("back in rotation %v after the upstream started listening (probe interval 100ms)", time.Since(back))
	if resp := r.do("GET", "/hq", nil); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
		t.Fatalf("first request after the return: %d %q", resp.StatusCode(), resp.Body())
	}
	if s := r.gw.Pools()[0].Servers[0]; s.ProbesPassed != 1 {
		t.Errorf("probes passed %d, want 1", s.ProbesPassed)
	}
	if v := gathered(t, r.gw.Collector(), "floodgate_pool_ejected_servers"); v != 0 {
		t.Errorf("floodgate_pool_ejected_servers = %v after the return, want 0", v)
	}
	before := r.gw.state.Load().pools["hq"]
	if err := r.apply(strings.Replace(cfg, "interval: 100ms", "interval: 2s, path: /healthz", 1)); err != nil {
		t.Fatal(err)
	}
	after := r.gw.state.Load().pools["hq"]
	if after != before {
		t.Error("a reload changing only health_check rebuilt the pool")
	}
	if hs := after.health.Load(); hs.interval != 2*time.Second || hs.path != "/healthz" {
		t.Errorf("settings after the reload: %+v", hs)
	}
}

// gathered is the value of the (only) series of name that c exports.
func gathered(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.Metric) == 1 {
			return f.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)
	return -1
}

// TestHealthLoopLifecycle: the probe loop runs only while a pool ejects with health checks
// on; switching them off everywhere stops it and turns a probed ejection into a timed
// one; Close stops it for good.
func TestHealthLoopLifecycle(t *testing.T) {
	const on = `
server: {listen: 127.0.0.1:0}
pools: {lq: {addrs: [lq1:1], max_conns: 4, eject: {failures: 1, duration: 1h}}}
routes: {lq_route: {path: /lq, pool: lq}}
`
	off := strings.Replace(on, "duration: 1h}", "duration: 1h}, health_check: {enabled: false}", 1)
	r := newRig(t, off)
	running := r.gw.health.running
	if running() {
		t.Fatal("probe loop running with health checks off")
	}
	if err := r.apply(on); err != nil {
		t.Fatal(err)
	}
	if !running() {
		t.Fatal("probe loop not running with health checks on")
	}
	r.do("GET", "/lq", nil) // refused: ejected until a probe passes
	u := r.gw.state.Load().pools["lq"].servers[0]
	if u.ejectedUntil.Load() != untilProbe {
		t.Fatalf("ejectedUntil %d, want untilProbe", u.ejectedUntil.Load())
	}
	if err := r.apply(off); err != nil {
		t.Fatal(err)
	}
	if running() {
		t.Fatal("probe loop still running after health checks were switched off")
	}
	if got := u.ejectedUntil.Load(); got == untilProbe || got == 0 {
		t.Fatalf("after the switch off ejectedUntil %d, want a timed ejection", got)
	}
	if err := r.apply(on); err != nil {
		t.Fatal(err)
	}
	r.gw.Close()
	if running() {
		t.Fatal("probe loop running after Close")
	}
	if err := r.apply(strings.Replace(on, "1h", "2h", 1)); err != nil {
		t.Fatal(err)
	}
	if running() {
		t.Fatal("a reload after Close started the probe loop again")
	}
}
