package gateway

// Active health checks of ejected upstream servers.
//
// Passive ejection (pool.go) takes a server out after eject.failures connect errors or
// timeouts in a row. With health_check enabled (the default) it stays out until a probe
// passes: every interval each ejected server gets one probe - a TCP connect, or a GET of
// health_check.path that must answer 2xx - and after healthy_threshold passes in a row it
// is back in rotation at once. No timer re-admits a server blindly, so the first real
// request after an outage is never the probe, and a server that is back is used within
// about one interval instead of after the rest of its ejection.
//
// Probes keep the pool's budget rules: at most one probe per server at a time, and only
// within the server's share of max_conns (a probe is skipped while that share is used by
// requests still in flight); an HTTP probe goes the way requests go (a connection of its
// own, or pipelined), so it counts against the budget like any request and its
// connection is reused afterwards.
// Servers in rotation are not probed: real traffic is their health check.
//
// The request path only reads the settings pointer when it ejects a server; probes run
// on the gateway's health goroutine (runHealth) and the goroutines it starts.

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
)

// untilProbe is ejectedUntil of a server that is out until a health check passes.
const untilProbe = math.MaxInt64

// healthSettings are a pool's health check settings in force.
type healthSettings struct {
	on        bool
	path      string // "" probes with a TCP connect
	host      string // Host header of HTTP probes
	interval  time.Duration
	timeout   time.Duration
	threshold int32
}

// describe is the settings as the console shows them.
func (h *healthSettings) describe() string {
	if !h.on {
		return "off"
	}
	what := "TCP connect"
	if h.path != "" {
		what = "GET " + h.path
	}
	s := fmt.Sprintf("%s every %v (timeout %v)", what, h.interval, h.timeout)
	if h.threshold > 1 {
		s += fmt.Sprintf(", %d passes in a row", h.threshold)
	}
	return s
}

// probeState is a server's health check state.
type probeState struct {
	running atomic.Bool
	next    atomic.Int64 // monotonic ns: no probe before
	passes  atomic.Int32 // passes in a row during this ejection
	passed  atomic.Uint64
	failed  atomic.Uint64
	lastErr atomic.Pointer[string] // why the last probe failed; nil after a pass
	// counters of upstream_health_checks_total
	cPassed, cFailed, cSkipped interface{ Inc() }
}

func (ps *probeState) init(pool, addr string) {
	ps.cPassed = upstreamProbes.WithLabelValues(pool, addr, "passed")
	ps.cFailed = upstreamProbes.WithLabelValues(pool, addr, "failed")
	ps.cSkipped = upstreamProbes.WithLabelValues(pool, addr, "skipped")
}

// setHealth puts cfg in force for p. A server ejected under the other mode is converted
// by the next healthTick.
func (p *pool) setHealth(cfg config.HealthCheck) {
	host := p.cfg.HostHeader
	hs := &healthSettings{on: cfg.Enabled, path: cfg.Path, host: host, interval: cfg.Interval.D(),
		timeout: cfg.Timeout.D(), threshold: int32(max(cfg.HealthyThreshold, 1))}
	if hs.timeout <= 0 { // validation fills it in; a Pool made by hand may not have it
		hs.timeout = min(hs.interval, 500*time.Millisecond)
	}
	p.health.Store(hs)
}

// healthTick starts a probe (through start: a goroutine, or inline in tests) of every
// ejected server whose probe is due and not already running. When health checks are off
// it turns ejections "until a probe passes" into ordinary timed ones; when they are on it
// turns running timed ejections into ejections until a probe passes.
func (p *pool) healthTick(now int64, start func(func())) {
	hs := p.health.Load()
	for _, u := range p.servers {
		until := u.ejectedUntil.Load()
		if until == 0 {
			continue
		}
		if !hs.on {
			if until == untilProbe {
				u.ejectedUntil.CompareAndSwap(untilProbe, now+int64(p.cfg.Eject.Duration))
			}
			continue
		}
		if until != untilProbe {
			if now >= until || !u.ejectedUntil.CompareAndSwap(until, untilProbe) {
				continue // the timer has already put it back (Sweep clears it)
			}
		}
		if now < u.probe.next.Load() || !u.probe.running.CompareAndSwap(false, true) {
			continue
		}
		u.probe.next.Store(now + int64(hs.interval))
		start(func() {
			defer u.probe.running.Store(false)
			p.probeServer(u, hs)
		})
	}
}

// errBudget is the reason of a skipped probe.
var errBudget = errors.New("the server's share of max_conns is in use")

// probeServer probes u once and puts it back in rotation after hs.threshold passes in a
// row. It returns the probe's error (errBudget when skipped).
func (p *pool) probeServer(u *upstream, hs *healthSettings) error {
	if u.ejectedUntil.Load() != untilProbe {
		return nil // back already (health checks were switched off and on meanwhile)
	}
	// Connections opened before the ejection may lead to the old process: close the idle
	// ones, so that neither the probe nor the first requests after it use them.
	u.hc.CloseIdleConnections()
	if u.budgetFull() {
		u.probe.cSkipped.Inc()
		return errBudget
	}
	err := p.check(u, hs)
	if err != nil {
		u.probe.passes.Store(0)
		u.probe.failed.Add(1)
		u.probe.cFailed.Inc()
		msg := err.Error()
		u.probe.lastErr.Store(&msg)
		return err
	}
	u.probe.passed.Add(1)
	u.probe.cPassed.Inc()
	u.probe.lastErr.Store(nil)
	if u.probe.passes.Add(1) < hs.threshold {
		return nil
	}
	u.probe.passes.Store(0)
	if u.ejectedUntil.CompareAndSwap(untilProbe, 0) {
		p.logger.Info("upstream server back in rotation", zap.String("pool", p.name), zap.String("addr", u.addr),
			zap.String("after", "a health check passed"))
	}
	return nil
}

// check runs one probe: a TCP connect, or a GET of hs.path the way requests go to the
// server (a connection of its own, or pipelined), within the server's share of the
// budget.
func (p *pool) check(u *upstream, hs *healthSettings) error {
	if hs.path == "" {
		conn, err := dialWithin(u.dial, u.addr, hs.timeout)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(hs.path)
	host := hs.host
	if host == "" {
		host = u.addr
	}
	req.Header.SetHost(host)
	req.Header.Set(fasthttp.HeaderUserAgent, "floodgate-health-check")
	if err := u.do(req, resp, hs.timeout, time.Now()); err != nil {
		return err
	}
	if sc := resp.StatusCode(); sc < 200 || sc > 299 {
		return fmt.Errorf("GET %s answered %d", hs.path, sc)
	}
	return nil
}

// budgetFull reports whether u's share of the pool's budget is in use: every connection
// open (a connection per request), or every place in flight taken (pipelined).
func (u *upstream) budgetFull() bool {
	if u.pc != nil {
		return u.pc.PendingRequests() >= int(u.pc.limit)
	}
	return u.hc.ConnsCount() >= u.hc.MaxConns
}

// dialWithin connects to addr with dial (nil: TCP) within d.
func dialWithin(dial fasthttp.DialFunc, addr string, d time.Duration) (net.Conn, error) {
	if dial == nil {
		return fasthttp.DialTimeout(addr, d)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := dial(addr)
		ch <- result{c, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-t.C:
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("dial %s: no connection within %v", addr, d)
	}
}

// syncHealth starts or stops the health check loop for the configuration st (just
// swapped in).
func (g *Gateway) syncHealth(st *state) {
	want := false
	for _, p := range st.pools {
		want = want || (p.cfg.Eject.Failures > 0 && p.health.Load().on)
	}
	g.health.set(want, g.runHealth)
}

// runHealth looks for due probes every config.MinHealthInterval, for the pools in force,
// until stop is closed. When the loop stops (health checks switched off everywhere) it
// gives every pool a last tick, which turns ejections "until a probe passes" into timed
// ones.
func (g *Gateway) runHealth(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(config.MinHealthInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			if st := g.state.Load(); st != nil {
				now := g.mono(time.Now())
				for _, p := range st.pools {
					if !p.health.Load().on {
						p.healthTick(now, goProbe)
					}
				}
			}
			return
		case <-t.C:
		}
		st := g.state.Load()
		if st == nil {
			continue
		}
		now := g.mono(time.Now())
		for _, p := range st.pools {
			p.healthTick(now, goProbe)
		}
	}
}

func goProbe(f func()) { go f() }
