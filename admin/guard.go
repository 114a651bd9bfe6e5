package admin

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/internal/metrics"
)

// Guessing the admin token is slowed per client address: after guardFree wrong tokens
// (on /login or in an Authorization header) a client is locked out for guardFirstLock,
// doubled on each further wrong token up to guardMaxLock. While locked out, its requests
// that need the token are answered 429 with Retry-After and the token is not even
// compared, so a lockout gives a guesser no answer to learn from. A right token clears
// the client's record. Requests without any token (a browser opening the console, a
// probe) are not failures. The table is bounded (guardMaxClients): when full, expired
// records go first, then the oldest.
const (
	guardFree       = 5
	guardFirstLock  = time.Second
	guardMaxLock    = 5 * time.Minute
	guardForget     = 15 * time.Minute // a record untouched this long is dropped
	guardMaxClients = 10000
)

var (
	authFailures = metrics.NewCounterVec("admin_auth_failures_total",
		"Admin requests refused for a wrong token (on /login or in an Authorization header).")
	authLocked = metrics.NewCounterVec("admin_auth_locked_total",
		"Admin requests refused with 429 because their client address was locked out after wrong tokens.")
)

type guardEntry struct {
	failures int
	until    time.Time // locked out until then
	last     time.Time
}

type authGuard struct {
	mu      sync.Mutex
	clients map[string]*guardEntry
	now     func() time.Time
}

func newAuthGuard() *authGuard {
	return &authGuard{clients: map[string]*guardEntry{}, now: time.Now}
}

// clientKey is the address a lockout applies to: the peer's IP (every port of one host
// is one client).
func clientKey(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// locked returns how long the client is still locked out (0: it may try).
func (g *authGuard) locked(client string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.clients[client]
	if e == nil {
		return 0
	}
	if d := e.until.Sub(g.now()); d > 0 {
		return d
	}
	return 0
}

// failed records a wrong token from client.
func (g *authGuard) failed(client string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	e := g.clients[client]
	if e == nil {
		g.makeRoom(now)
		e = &guardEntry{}
		g.clients[client] = e
	} else if now.Sub(e.last) > guardForget {
		*e = guardEntry{}
	}
	e.failures++
	e.last = now
	if over := e.failures - guardFree; over > 0 {
		lock := guardFirstLock << min(over-1, 20)
		e.until = now.Add(min(lock, guardMaxLock))
	}
}

// succeeded clears client's record.
func (g *authGuard) succeeded(client string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.clients, client)
}

// makeRoom drops forgotten records when the table is full, and the least recently seen
// one if none is.
func (g *authGuard) makeRoom(now time.Time) {
	if len(g.clients) < guardMaxClients {
		return
	}
	var oldest string
	var oldestAt time.Time
	for k, e := range g.clients {
		if now.Sub(e.last) > guardForget && now.After(e.until) {
			delete(g.clients, k)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = k, e.last
		}
	}
	if len(g.clients) >= guardMaxClients {
		delete(g.clients, oldest)
	}
}

// bearer checks r's "Authorization: Bearer <token>" against want (constant time) with
// the lockout: present says a header was sent, ok that it carried want; answered that r
// got 429 because its address is locked out (the header was then not compared). A
// header counts as a success or a failure of its address; no header counts as neither.
func (g *authGuard) bearer(w http.ResponseWriter, r *http.Request, want []byte, logger *zap.Logger) (present, ok, answered bool) {
	hdr := r.Header.Get("Authorization")
	if hdr == "" {
		return false, false, false
	}
	client := clientKey(r)
	if d := g.locked(client); d > 0 {
		refuse(w, d)
		return true, false, true
	}
	got, isBearer := strings.CutPrefix(hdr, "Bearer ")
	if isBearer && subtle.ConstantTimeCompare([]byte(got), want) == 1 {
		g.succeeded(client)
		return true, true, false
	}
	g.failed(client)
	authFailures.WithLabelValues().Inc()
	logger.Warn("admin request refused: wrong token", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path))
	return true, false, false
}

// refuseLocked answers 429 when r's client is locked out; it reports whether it did.
func (s *Server) refuseLocked(w http.ResponseWriter, r *http.Request) bool {
	d := s.guard.locked(clientKey(r))
	if d <= 0 {
		return false
	}
	refuse(w, d)
	return true
}

// refuse answers 429 to a locked-out client, d before its lockout ends.
func refuse(w http.ResponseWriter, d time.Duration) {
	authLocked.WithLabelValues().Inc()
	secs := int((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	http.Error(w, "too many wrong admin tokens from this address: try again in "+strconv.Itoa(secs)+"s", http.StatusTooManyRequests)
}

// RequireBearer wraps h so that it answers only requests carrying
// "Authorization: Bearer <token>" (compared in constant time), with the same lockout of
// an address that keeps sending wrong tokens as the gateway's admin listener. It is for
// admin listeners without a console (the deliverer's): there is no login form and no
// cookie. token must not be empty.
func RequireBearer(token string, logger *zap.Logger, h http.Handler) http.Handler {
	if logger == nil {
		logger = zap.NewNop()
	}
	g := newAuthGuard()
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		present, ok, answered := g.bearer(w, r, want, logger)
		if answered {
			return
		}
		if present && ok {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate admin"`)
		http.Error(w, "admin token required (Authorization: Bearer <token>, the configuration's admin.token)", http.StatusUnauthorized)
	})
}
