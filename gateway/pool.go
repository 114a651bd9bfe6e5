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

// pool is a fixed set of upstream servers with one connection budget (a bulkhead).
// Servers are chosen round-robin, skipping ejected ones. A pool whose configuration did
// not change is carried over a reload with its connections and ejection state.
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
				DisablePathNormalizing:        false,
			},
			ejections: upstreamEjections.WithLabelValues(name, addr),
		}
		if cfg.Pipeline.Enabled {
			u.pc = newPipeClient(addr, d, per, pipeSettingsOf(cfg))
		}
		p.servers = append(p.servers, u)
	}
	return p
}

// sameConfig reports whether p can serve cfg as it is. The adaptive settings do not
// count: they change the controller's settings, not the pool's connections.
func (p *pool) sameConfig(cfg config.Pool) bool {
	a := p.cfg
	a.Adaptive, cfg.Adaptive = config.Adaptive{}, config.Adaptive{}
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
// in a row. A server that comes back from ejection and fails again is ejected at once.
// The ejection is logged by Sweep (WARN, once per ejection), off the request path.
func (p *pool) failed(u *upstream, now int64, kind upstreamFailure) {
	f := u.fails.Add(1)
	if p.cfg.Eject.Failures > 0 && int(f) >= p.cfg.Eject.Failures {
		until := now + int64(p.cfg.Eject.Duration)
		old := u.ejectedUntil.Load()
		if old < now && u.ejectedUntil.CompareAndSwap(old, until) {
			u.ejections.Inc()
			u.lastCause.Store(&failureNames[kind])
			u.ejectFails.Store(f)
			u.ejected.Add(1)
		}
	}
}

// succeeded puts a server back in rotation (Sweep logs the return).
func (p *pool) succeeded(u *upstream) {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
	}
	if u.ejectedUntil.Load() != 0 {
		if old := u.ejectedUntil.Swap(0); old != 0 {
			u.returned.Store(true)
		}
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
