// Package admin serves the admin listener: health and readiness probes, Prometheus
// metrics, the effective configuration with the source of each value, recent
// configuration events, and a small dashboard. It runs on net/http (never on the traffic
// listener) and binds to loopback unless a token protects it.
package admin

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/metrics"
)

//go:embed dashboard.html
var dashboardHTML []byte

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
	extra map[string]http.Handler
}

// New returns an admin server for gw. token, if not empty, is required as
// "Authorization: Bearer <token>" on every path except /healthz and /readyz.
func New(gw *gateway.Gateway, u *gateway.Updater, token string, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Server{gw: gw, updater: u, token: token, logger: logger, extra: map[string]http.Handler{}}
}

// SetStale marks the configuration stale with a reason, or fresh with "".
func (s *Server) SetStale(reason string) {
	if reason == "" {
		s.stale.Store(nil)
		return
	}
	s.stale.Store(&reason)
}

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
	for p, h := range s.extra {
		mux.Handle(p, s.auth(h))
	}
	mux.Handle("/", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(dashboardHTML)
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
	return rd
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
	want := []byte("Bearer " + s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate admin"`)
			http.Error(w, "admin token required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readOnly refuses anything but GET and HEAD: the admin API has no write endpoints
// (switches are written to Consul with floodgate ctl, validated first).
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// Serve serves the admin API on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the admin server.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// JSON returns a handler that serves fn's value as JSON (for read-only status endpoints).
func JSON(fn func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, fn()) })
}
