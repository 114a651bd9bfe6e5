// Package admin serves the admin listener: health and readiness probes, Prometheus
// metrics, the effective configuration with the source of each value, recent
// configuration events, and the operator's console (a live dashboard at / fed by the JSON
// of /api/console). It runs on net/http (never on the traffic listener) and binds to
// loopback unless a token protects it.
package admin

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/uplot"
)

//go:embed dashboard.html
var dashboardHTML string

// dashboardPage is the console with uPlot inlined: it opens without network access.
var dashboardPage = []byte(strings.NewReplacer(
	"/*UPLOT_CSS*/", uplot.CSS,
	"/*UPLOT_JS*/", uplot.JS,
).Replace(dashboardHTML))

// Readiness describes whether the gateway serves and how fresh its configuration is.
type Readiness struct {
	Ready      bool   `json:"ready"`
	Generation uint64 `json:"generation"`
	// Stale is true while the configuration in force may be older than the live
	// sources (e.g. started from the last-known-good snapshot with Consul down).
	Stale  bool   `json:"stale"`
	Reason string `json:"reason,omitempty"`
}

// Server is the admin HTTP server.
type Server struct {
	gw      *gateway.Gateway
	updater *gateway.Updater
	token   string
	logger  *zap.Logger
	srv     *http.Server
	// staleness is set by configuration sources (the Consul watcher); nil = fresh.
	stale atomic.Pointer[string]
	// held is why a configuration update is held for confirmation; nil = none.
	held     atomic.Pointer[string]
	draining atomic.Bool
	extra    map[string]http.Handler
	fleet    func() any
	guard    *authGuard // wrong-token lockouts (guard.go)

	sampler  sampler
	stopTick chan struct{}
	tickDone chan struct{}
}

// New returns an admin server for gw. token, if not empty, is required as
// "Authorization: Bearer <token>" on every path except /healthz and /readyz.
func New(gw *gateway.Gateway, u *gateway.Updater, token string, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Server{gw: gw, updater: u, token: token, logger: logger, extra: map[string]http.Handler{}, guard: newAuthGuard()}
}

// SetStale marks the configuration stale with a reason, or fresh with "".
func (s *Server) SetStale(reason string) {
	if reason == "" {
		s.stale.Store(nil)
		return
	}
	s.stale.Store(&reason)
}

// SetHeld marks a configuration update held for confirmation with the reason, or none
// with "". The gateway keeps serving (and stays ready); the console shows HELD.
func (s *Server) SetHeld(reason string) {
	if reason == "" {
		s.held.Store(nil)
		return
	}
	s.held.Store(&reason)
}

// SetDraining turns /readyz to 503 (reason "draining") so that load balancers stop
// sending new connections before the listener closes.
func (s *Server) SetDraining() { s.draining.Store(true) }

// SetFleet sets the provider of the console's fleet section (the instances registered in
// Consul); it is called on each /api/console request.
func (s *Server) SetFleet(fn func() any) { s.fleet = fn }

// Handle adds a read-only endpoint (e.g. /instances from the Consul source).
func (s *Server) Handle(path string, h http.Handler) { s.extra[path] = h }

// Handler returns the admin HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle("/metrics", s.auth(promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{})))
	mux.Handle("/config", s.auth(http.HandlerFunc(s.config)))
	mux.Handle("/events", s.auth(http.HandlerFunc(s.events)))
	mux.Handle("/api/console", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, s.console())
	})))
	mux.HandleFunc("/login", s.login)
	mux.HandleFunc("/logout", s.logout)
	for p, h := range s.extra {
		mux.Handle(p, s.auth(h))
	}
	mux.Handle("/", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'")
		w.Write(dashboardPage)
	})))
	return readOnly(mux)
}

// Readiness returns the current readiness.
func (s *Server) Readiness() Readiness {
	gen := s.gw.Generation()
	rd := Readiness{Ready: gen > 0, Generation: gen}
	if gen == 0 {
		rd.Reason = "no configuration applied yet"
	}
	if p := s.stale.Load(); p != nil {
		rd.Stale, rd.Reason = true, *p
	}
	if s.draining.Load() {
		rd.Ready, rd.Reason = false, "draining: shutting down"
	}
	return rd
}

// consoleState is the console's banner.
func (s *Server) consoleState() ConsoleState {
	rd := s.Readiness()
	cs := ConsoleState{Generation: rd.Generation, Ready: rd.Ready, Draining: s.draining.Load()}
	if p := s.stale.Load(); p != nil {
		cs.Stale = *p
	}
	if p := s.held.Load(); p != nil {
		cs.Held = *p
	}
	switch {
	case cs.Draining:
		cs.Status, cs.Reason = "DRAINING", rd.Reason
	case !rd.Ready:
		cs.Status, cs.Reason = "NOT_READY", rd.Reason
	case cs.Held != "":
		cs.Status, cs.Reason = "HELD", cs.Held
	case cs.Stale != "":
		cs.Status, cs.Reason = "STALE", cs.Stale
	default:
		cs.Status = "READY"
	}
	return cs
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.Readiness()
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	cfg := s.gw.Config()
	if cfg == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no configuration applied yet"})
		return
	}
	doc, overrides, plan := s.updater.Layers()
	file := ""
	if doc != nil {
		file = doc.Name
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"generation": s.gw.Generation(),
		"stale":      s.Readiness().Stale,
		"layers": map[string]any{
			"file":        file,
			"overrides":   overrides,
			"active_plan": plan.Name,
			"plan":        plan.Overrides,
		},
		"sources": cfg.Sources,
		"config":  cfg,
	})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.updater.Events().List())
}

func (s *Server) auth(h http.Handler) http.Handler {
	if s.token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		present, ok, answered := s.guard.bearer(w, r, []byte(s.token), s.logger)
		if answered {
			return
		}
		if !present {
			ok = s.sessionOK(r)
		}
		if !ok {
			if r.URL.Path == "/" && r.Header.Get("Authorization") == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				// a browser opening the console: the login form
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate admin"`)
			http.Error(w, "admin token required (Authorization: Bearer <token>, or log in at /login)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readOnly refuses anything but GET and HEAD: the admin API has no write endpoints
// (switches are written to Consul with floodgate ctl, validated first). The login form
// posts to /login and /logout, which change nothing but the browser's cookie.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && (r.URL.Path == "/login" || r.URL.Path == "/logout") {
			h.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the admin API is read-only", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Listen binds addr. It refuses a non-loopback address without a token (the
// configuration validator refuses it too; this is the last line).
func (s *Server) Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if s.token == "" && !config.IsLoopback(host) {
		return nil, errors.New("admin: refusing to bind " + addr + " without a token (set admin.token or bind to 127.0.0.1)")
	}
	return net.Listen("tcp", addr)
}

// Serve serves the admin API on ln until Shutdown, and samples the counters for the
// console once a second (less often when one sample takes more than a tenth of a second).
func (s *Server) Serve(ln net.Listener) error {
	s.startSampling()
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the admin server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopSampling()
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Sample takes one reading of the counters for the console (the sampler started by
// Serve does it every second; tests that use Handler alone call it themselves). It also
// puts back in rotation the upstream servers whose ejection has expired.
func (s *Server) Sample() {
	s.gw.Sweep()
	s.sampler.tick()
}

func (s *Server) startSampling() {
	if s.stopTick != nil {
		return
	}
	s.stopTick, s.tickDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.tickDone)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-s.stopTick:
				return
			case <-t.C:
				start := time.Now()
				s.Sample()
				t.Reset(samplePause(time.Since(start)))
			}
		}
	}()
}

// samplePause is the wait after a sample that took took: the rest of the second, or
// nine times took when one sample takes more than a tenth of a second, so that the
// sampler keeps to about a tenth of a core. With 10,000 routes one sample reads hundreds
// of thousands of series (about 0.3-0.5 s of CPU): sampled every second it took half a
// core and its garbage, beside the traffic and the Consul updates. The console's rates
// are per second over the time between two samples, whatever it is.
func samplePause(took time.Duration) time.Duration {
	return max(time.Second-took, 9*took)
}

func (s *Server) stopSampling() {
	if s.stopTick == nil {
		return
	}
	select {
	case <-s.stopTick:
	default:
		close(s.stopTick)
	}
	<-s.tickDone
}

// JSON returns a handler that serves fn's value as JSON (for read-only status endpoints).
func JSON(fn func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, fn()) })
}
