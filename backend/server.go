// Package backend holds floodgate's lightweight backends: small but real fasthttp
// servers that the demo, the integration tests and the benchmarks run behind the gateway.
//
//   - Query (NewQuery): answers any GET/POST with a tiny prebuilt JSON body, allocation-free;
//     the "direct" baseline of the benchmarks.
//   - Delivery (NewDelivery): prize grants, idempotent by grant id, journalled to a local
//     ledger file with group-committed fsyncs.
//   - Packs (NewPacks): number-pack membership ("is this user in pack X?"), reloaded live.
//
// Each kind embeds *Server, which carries what they share: safe fasthttp limits, fault
// injection (Faults), /healthz, request counters, and a Serve/Shutdown life cycle that
// works on any net.Listener, so tests can run a backend in-process on 127.0.0.1:0.
package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Faults makes a backend slow or failing on purpose, for drills and benchmarks. It
// applies to a backend's business endpoints only (the query answers, POST /grant,
// GET /v1/membership), never to /healthz or to the listing endpoints. The zero value
// injects nothing and costs nothing on the request path.
type Faults struct {
	// Latency is waited before every answer.
	Latency time.Duration
	// Jitter adds a uniformly random extra wait in [0, Jitter] on top of Latency.
	Jitter time.Duration
	// ErrorRate is the probability, in [0, 1], of answering 500 instead of doing the work.
	ErrorRate float64
	// Workers, if > 0, is how many business requests are worked on at once (a slow store
	// with a fixed thread pool): the others wait for a free worker, so that latency grows
	// with the load once the workers are busy. The wait (Latency + Jitter) is the work.
	Workers int
}

// Validate reports a negative duration or an error rate outside [0, 1], naming the value.
func (f Faults) Validate() error {
	switch {
	case f.Latency < 0:
		return fmt.Errorf("latency %v is negative", f.Latency)
	case f.Jitter < 0:
		return fmt.Errorf("jitter %v is negative", f.Jitter)
	case math.IsNaN(f.ErrorRate) || f.ErrorRate < 0 || f.ErrorRate > 1:
		return fmt.Errorf("error rate %v is outside [0, 1]", f.ErrorRate)
	case f.Workers < 0:
		return fmt.Errorf("workers %d is negative", f.Workers)
	}
	return nil
}

// delay is one request's wait: latency plus a uniform random share of Jitter.
func (f Faults) delay(latency time.Duration) time.Duration {
	if f.Jitter > 0 {
		return latency + rand.N(f.Jitter+1)
	}
	return latency
}

// Limits of every backend's fasthttp server (see RELIABILITY.md, "safe fasthttp server
// defaults").
const (
	ReadTimeout        = 10 * time.Second
	WriteTimeout       = 15 * time.Second
	IdleTimeout        = 60 * time.Second
	ReadBufferSize     = 8 << 10
	MaxRequestBodySize = 1 << 20
)

// ErrServerClosed is returned by Serve after Shutdown was called.
var ErrServerClosed = errors.New("backend: server closed")

// Server is the HTTP side shared by every backend kind: a fasthttp.Server with safe
// limits, /healthz, fault injection and counters. Get one from NewQuery, NewDelivery or
// NewPacks (their types embed *Server), call Serve with one or more listeners, and
// Shutdown once when done - also when Serve was never called, since Shutdown releases
// the kind's resources (ledger file, reload poller).
type Server struct {
	srv     fasthttp.Server
	kind    string
	handle  fasthttp.RequestHandler // the kind's handler, behind /healthz and the counter
	faults  Faults
	latency atomic.Int64  // ns: Faults.Latency, changed live by SetLatency
	workers chan struct{} // Faults.Workers slots; nil: no limit
	log     *zap.Logger

	served   atomic.Uint64
	injected atomic.Uint64

	onClose func() error // releases the kind's resources after the server stopped

	mu      sync.Mutex // guards closed and lns
	closed  bool
	lns     []net.Listener
	serving sync.WaitGroup

	shutMu   sync.Mutex // serialises Shutdown calls; guards the two below
	shutDone bool
	shutErr  error
}

func newServer(kind string, f Faults, log *zap.Logger, handle fasthttp.RequestHandler) (*Server, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s backend: %w", kind, err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		kind:   kind,
		handle: handle,
		faults: f,
		log:    log.With(zap.String("backend", kind)),
	}
	s.latency.Store(int64(f.Latency))
	if f.Workers > 0 {
		s.workers = make(chan struct{}, f.Workers)
	}
	s.srv = fasthttp.Server{
		Handler:               s.serveHTTP,
		NoDefaultServerHeader: true,
		ReadTimeout:           ReadTimeout,
		WriteTimeout:          WriteTimeout,
		IdleTimeout:           IdleTimeout,
		ReadBufferSize:        ReadBufferSize,
		MaxRequestBodySize:    MaxRequestBodySize,
		CloseOnShutdown:       true,
		TCPKeepalive:          true,
		Logger:                fasthttpLogger{s.log.Sugar()},
	}
	return s, nil
}

// SetLatency changes the latency of every following business answer (a live fault for
// drills: `floodgate backend -slow-latency` switches it on SIGUSR1 and back on SIGUSR2).
func (s *Server) SetLatency(d time.Duration) {
	s.latency.Store(int64(max(d, 0)))
	s.log.Info("latency changed", zap.Duration("latency", max(d, 0)))
}

// Latency is the latency in force.
func (s *Server) Latency() time.Duration { return time.Duration(s.latency.Load()) }

// Handler is the server's request handler, for in-memory tests and benchmarks that drive
// a fasthttp.RequestCtx directly.
func (s *Server) Handler() fasthttp.RequestHandler { return s.serveHTTP }

// Served is the number of requests answered, /healthz excluded (so a gateway's health
// checks do not blur what tests count). Injected 500s are included.
func (s *Server) Served() uint64 { return s.served.Load() }

// Injected is the number of 500 answers made on purpose by Faults.ErrorRate.
func (s *Server) Injected() uint64 { return s.injected.Load() }

// Serve accepts connections on ln until Shutdown. It may be called for several
// listeners at once. It returns nil after Shutdown, ErrServerClosed if Shutdown came
// first (ln is closed then), or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()

	err := s.srv.Serve(ln)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets in-flight requests finish (idle keep-alive connections
// are closed), then releases the kind's resources. Later calls return the first result.
func (s *Server) Shutdown() error { return s.ShutdownWithContext(context.Background()) }

// ShutdownWithContext is Shutdown with a deadline for the in-flight requests. When ctx
// ends first it returns ctx.Err() and leaves the remaining connections running and the
// kind's resources open (a request may still be using them): the caller is expected to
// exit. Later calls return the first result.
func (s *Server) ShutdownWithContext(ctx context.Context) error {
	s.shutMu.Lock()
	defer s.shutMu.Unlock()
	if !s.shutDone {
		s.shutDone = true
		s.shutErr = s.shutdownLocked(ctx)
	}
	return s.shutErr
}

func (s *Server) shutdownLocked(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	s.mu.Unlock()

	if err := s.srv.ShutdownWithContext(ctx); err != nil {
		return err
	}
	// A Serve that had not yet handed its listener to fasthttp when the call above ran
	// is stopped here; the second call waits for any connection it accepted meanwhile.
	for _, ln := range lns {
		ln.Close()
	}
	s.serving.Wait()
	if err := s.srv.ShutdownWithContext(ctx); err != nil {
		return err
	}
	if s.onClose != nil {
		return s.onClose()
	}
	return nil
}

var (
	healthzPath    = []byte("/healthz")
	okBody         = []byte("ok")
	contentText    = []byte("text/plain; charset=utf-8")
	contentJSON    = []byte("application/json")
	contentNDJSON  = []byte("application/x-ndjson")
	injectedBody   = []byte(`{"ok":false,"error":"injected failure"}`)
	methodNotAllow = []byte(`{"ok":false,"error":"method not allowed"}`)
)

// serveHTTP answers /healthz, counts the rest and hands it to the kind's handler.
func (s *Server) serveHTTP(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) == string(healthzPath) {
		ctx.Response.Header.SetContentTypeBytes(contentText)
		ctx.Response.SetBodyRaw(okBody)
		return
	}
	s.served.Add(1)
	s.handle(ctx)
}

// injectFaults waits the configured latency and, with the configured probability,
// answers 500 itself and reports true (the caller must then return).
func (s *Server) injectFaults(ctx *fasthttp.RequestCtx) bool {
	if s.workers != nil {
		s.workers <- struct{}{}
		defer func() { <-s.workers }()
	}
	if lat := time.Duration(s.latency.Load()); lat > 0 || s.faults.Jitter > 0 {
		time.Sleep(s.faults.delay(lat))
	}
	if s.faults.ErrorRate > 0 && rand.Float64() < s.faults.ErrorRate {
		s.injected.Add(1)
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.Response.Header.SetContentTypeBytes(contentJSON)
		ctx.Response.SetBodyRaw(injectedBody)
		return true
	}
	return false
}

// writeJSONError answers status with {"ok":false,"error":msg}. Not for the hot path.
func writeJSONError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	b := []byte(`{"ok":false,"error":`)
	b = appendJSONString(b, []byte(msg))
	b = append(b, "}\n"...)
	ctx.Response.SetBodyRaw(b)
}

// methodNotAllowed answers 405 with the allowed methods.
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	ctx.Response.Header.Set("Allow", allow)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.Response.SetBodyRaw(methodNotAllow)
}

// fasthttpLogger sends fasthttp's own messages (mostly connection errors such as read
// timeouts) to zap at debug level, so a load test does not flood the log.
type fasthttpLogger struct{ l *zap.SugaredLogger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Debugf(format, args...) }

var _ fasthttp.Logger = fasthttpLogger{}
