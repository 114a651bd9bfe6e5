package gateway

import (
	"errors"
	"io"
	"net"
	"reflect"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/adaptive"
	"github.com/floodgate/floodgate/internal/metrics"
)

// upstreamEjections counts ejections; floodgate_upstream_healthy and the in-flight and
// budget gauges are read from the pools in force when scraped (status.go).
var upstreamEjections = metrics.NewCounterVec("upstream_ejections_total", "Upstream servers left out after consecutive failures.", "pool", "addr")

// upstreamProbes counts the active health checks of ejected servers by result: passed,
// failed, or skipped (the server's share of the connection budget was in use).
var upstreamProbes = metrics.NewCounterVec("upstream_health_checks_total",
	"Health check probes of ejected upstream servers, by result (passed, failed, skipped: the server's share of max_conns was in use).", "pool", "addr", "result")

// upstreamReadBuffer bounds the head of an upstream's answer on a connection of its own.
const upstreamReadBuffer = 16 << 10

// pool is a fixed set of upstream servers with one connection budget (a bulkhead).
// Servers are chosen round-robin, skipping ejected ones. A pool whose configuration did
// not change is carried over a reload with its connections and ejection state; a pool
// rebuilt for a changed configuration keeps its servers' ejection state (inherit).
type pool struct {
	name    string
	cfg     config.Pool
	servers []*upstream
	next    atomic.Uint64
	host    []byte
	logger  *zap.Logger
	// ctl is the pool's adaptive overload protection; it outlives the pool across
	// reloads (see overload.go).
	ctl    *adaptive.Controller
	gauges poolGauges
	// health is the active health check in force (health.go); it changes without
	// rebuilding the pool.
	health atomic.Pointer[healthSettings]
}

// upstream is one server address of a pool.
type upstream struct {
	addr         string
	hc           *fasthttp.HostClient
	pc           *pipeClient // set when the pool pipelines (pipeline.go); hc is then unused
	fails        atomic.Int32
	ejectedUntil atomic.Int64 // monotonic ns; 0 = in rotation
	ejections    interface{ Inc() }
	// ejected counts ejections (the counter above, readable for the dashboard); lastCause
	// is the failure that ejected the server last.
	ejected   atomic.Uint64
	lastCause atomic.Pointer[string]
	// for Sweep's log lines: the failures in a row at the last ejection, the ejections
	// logged so far, and whether a successful request ended an ejection
	ejectFails atomic.Int32
	logged     atomic.Uint64
	returned   atomic.Bool
	// dial is the pool's custom dialer (nil: TCP), used by the TCP connect probe.
	dial  fasthttp.DialFunc
	probe probeState
}

func newPool(name string, cfg config.Pool, dial fasthttp.DialFunc, logger *zap.Logger, ctl *adaptive.Controller) *pool {
	p := &pool{name: name, cfg: cfg, host: []byte(cfg.HostHeader), logger: logger, ctl: ctl, gauges: newPoolGauges(name)}
	per := (cfg.MaxConns + len(cfg.Addrs) - 1) / len(cfg.Addrs)
	for _, addr := range cfg.Addrs {
		addr := addr
		d := dial
		if d == nil {
			timeout := cfg.ConnectTimeout.D()
			d = func(string) (net.Conn, error) { return fasthttp.DialTimeout(addr, timeout) }
		}
		u := &upstream{
			addr: addr,
			hc: &fasthttp.HostClient{
				Addr:                          addr,
				Dial:                          d,
				MaxConns:                      per,
				MaxConnWaitTimeout:            cfg.QueueTimeout.D(),
				MaxIdleConnDuration:           cfg.IdleTimeout.D(),
				ReadTimeout:                   cfg.ReadTimeout.D(),
				WriteTimeout:                  cfg.WriteTimeout.D(),
				MaxResponseBodySize:           int(cfg.MaxResponseBody),
				MaxIdemponentCallAttempts:     2, // one retry, idempotent methods only (fasthttp's default RetryIf)
				NoDefaultUserAgentHeader:      true,
				DisableHeaderNamesNormalizing: false,
				// the target is written as forwardTarget set it (target.go), not re-quoted
				DisablePathNormalizing: true,
				// an answer's head may be up to this large (fasthttp's default, 4 KiB, made
				// an answer with a few long Set-Cookie lines upstream/error; a pipelined
				// pool reads answers through a 64 KiB buffer)
				ReadBufferSize: upstreamReadBuffer,
			},
			ejections: upstreamEjections.WithLabelValues(name, addr),
			dial:      dial,
		}
		if cfg.Pipeline.Enabled {
			u.pc = newPipeClient(addr, d, per, pipeSettingsOf(cfg))
		}
		u.probe.init(name, addr)
		p.servers = append(p.servers, u)
	}
	p.setHealth(cfg.HealthCheck)
	return p
}

// inherit carries the failure and ejection state of old's servers over to p's servers at
// the same address, when a changed configuration rebuilt the pool: a server that was out
// stays out (until a health check passes or its ejection expires, whichever p's settings
// say) instead of taking traffic again because a timeout or max_conns changed. It runs
// before p serves; old keeps serving until the new state is in force, so what changes in
// old meanwhile is not carried (at worst one more failure to eject again).
func (p *pool) inherit(old *pool) {
	for _, u := range p.servers {
		for _, o := range old.servers {
			if o.addr != u.addr {
				continue
			}
			u.fails.Store(o.fails.Load())
			u.ejectedUntil.Store(o.ejectedUntil.Load())
			u.ejected.Store(o.ejected.Load())
			u.lastCause.Store(o.lastCause.Load())
			u.ejectFails.Store(o.ejectFails.Load())
			u.logged.Store(o.logged.Load())
			u.returned.Store(o.returned.Load())
			u.probe.next.Store(o.probe.next.Load())
			u.probe.passes.Store(o.probe.passes.Load())
			u.probe.passed.Store(o.probe.passed.Load())
			u.probe.failed.Store(o.probe.failed.Load())
			u.probe.lastErr.Store(o.probe.lastErr.Load())
			break
		}
	}
}

// sameConfig reports whether p can serve cfg as it is. The adaptive and health check
// settings do not count: they change the controller's and the prober's settings, not the
// pool's connections.
func (p *pool) sameConfig(cfg config.Pool) bool {
	a := p.cfg
	a.Adaptive, cfg.Adaptive = config.Adaptive{}, config.Adaptive{}
	a.HealthCheck, cfg.HealthCheck = config.HealthCheck{}, config.HealthCheck{}
	return reflect.DeepEqual(a, cfg)
}

// pick returns the next server in rotation, or nil when all are ejected.
func (p *pool) pick(now int64) *upstream {
	n := uint64(len(p.servers))
	start := p.next.Add(1)
	for i := uint64(0); i < n; i++ {
		u := p.servers[(start+i)%n]
		until := u.ejectedUntil.Load()
		if until == 0 || now >= until {
			return u
		}
	}
	return nil
}

// failed records a connect error or timeout and ejects the server after cfg.Eject.Failures
// in a row: until a health check passes (health.go), or for eject.duration when health
// checks are off. A server that comes back from ejection and fails again is ejected at
// once. The ejection is logged by Sweep (WARN, once per ejection), off the request path.
func (p *pool) failed(u *upstream, now int64, kind upstreamFailure) {
	f := u.fails.Add(1)
	if p.cfg.Eject.Failures > 0 && int(f) >= p.cfg.Eject.Failures {
		until := now + int64(p.cfg.Eject.Duration)
		if p.health.Load().on {
			until = untilProbe
		}
		old := u.ejectedUntil.Load()
		if old < now && u.ejectedUntil.CompareAndSwap(old, until) {
			u.ejections.Inc()
			u.lastCause.Store(&failureNames[kind])
			u.ejectFails.Store(f)
			u.ejected.Add(1)
			u.probe.passes.Store(0) // a new ejection: its own passes in a row
		}
	}
}

// succeeded puts a server back in rotation (Sweep logs the return) - unless it is out
// until a health check passes: a request sent before the ejection that succeeds after it
// says nothing about the server now, only a probe puts it back.
func (p *pool) succeeded(u *upstream) {
	until := u.ejectedUntil.Load()
	if until == untilProbe {
		return
	}
	if u.fails.Load() != 0 {
		u.fails.Store(0)
	}
	if until != 0 && u.ejectedUntil.CompareAndSwap(until, 0) {
		u.returned.Store(true)
	}
}

func (p *pool) close() {
	for _, u := range p.servers {
		u.hc.CloseIdleConnections()
		if u.pc != nil {
			u.pc.close()
		}
	}
}

// upstreamError classifies a client error into a verdict reason.
func upstreamError(err error) upstreamFailure {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return failTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return failBusy
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return failTooLarge
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failTimeout
	}
	// Only failures of the connection itself say the server is unwell and count toward
	// ejection; anything else (a request the client library refuses to send, a protocol
	// error) is answered upstream/error without ejecting a healthy server.
	var oe *net.OpError
	if errors.As(err, &oe) || errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return failUnavailable
	}
	return failError5xx
}

type upstreamFailure uint8

const (
	failTimeout upstreamFailure = iota
	failBusy
	failUnavailable
	failTooLarge
	failError5xx
	numFailures
)

// failureNames are the reasons of the "upstream" verdicts, by upstreamFailure.
var failureNames = [numFailures]string{"timeout", "busy", "unavailable", "too_large", "error"}
