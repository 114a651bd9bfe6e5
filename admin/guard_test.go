package admin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeNow is a clock the tests step.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time       { return f.t }
func (f *fakeNow) step(d time.Duration) { f.t = f.t.Add(d) }
func newFakeGuard() (*authGuard, *fakeNow) {
	c := &fakeNow{t: time.Unix(1e9, 0)}
	g := newAuthGuard()
	g.now = c.now
	return g, c
}

func TestAuthGuardRules(t *testing.T) {
	for _, tc := range []struct {
		desc string
		run  func(g *authGuard, c *fakeNow) time.Duration // returns the lockout left for "a"
		want time.Duration
	}{
		{desc: "the first five wrong tokens lock nothing", want: 0, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree {
				g.failed("a")
			}
			return g.locked("a")
		}},
		{desc: "the sixth locks for a second", want: time.Second, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 1 {
				g.failed("a")
			}
			return g.locked("a")
		}},
		{desc: "each further wrong token doubles the lockout", want: 8 * time.Second, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 4 {
				g.failed("a")
			}
			return g.locked("a")
		}},
		{desc: "the lockout is capped", want: guardMaxLock, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 100 {
				g.failed("a")
			}
			return g.locked("a")
		}},
		{desc: "a lockout ends on time", want: 0, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 2 {
				g.failed("a")
			}
			c.step(2 * time.Second)
			return g.locked("a")
		}},
		{desc: "the count survives the end of a lockout", want: 4 * time.Second, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 2 {
				g.failed("a")
			}
			c.step(2 * time.Second)
			g.failed("a")
			return g.locked("a")
		}},
		{desc: "a right token clears the count", want: 0, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree {
				g.failed("a")
			}
			g.succeeded("a")
			g.failed("a")
			return g.locked("a")
		}},
		{desc: "a client quiet for the forget time starts afresh", want: 0, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 1 {
				g.failed("a")
			}
			c.step(guardForget + time.Second)
			g.failed("a")
			return g.locked("a")
		}},
		{desc: "another client's failures do not lock this one", want: 0, run: func(g *authGuard, c *fakeNow) time.Duration {
			for range guardFree + 3 {
				g.failed("b")
			}
			return g.locked("a")
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			g, c := newFakeGuard()
			if got := tc.run(g, c); got != tc.want {
				t.Errorf("lockout left %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAuthGuardTableIsBounded(t *testing.T) {
	g, c := newFakeGuard()
	for i := range guardMaxClients + 50 {
		g.failed(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		c.step(time.Millisecond)
	}
	if n := len(g.clients); n > guardMaxClients {
		t.Fatalf("%d clients remembered, want at most %d", n, guardMaxClients)
	}
	// the least recently seen went first; the newest is kept
	if _, ok := g.clients["10.0.0.0"]; ok {
		t.Error("the oldest client is still remembered after the table filled")
	}
	last := guardMaxClients + 49
	if _, ok := g.clients[fmt.Sprintf("10.0.%d.%d", last/256, last%256)]; !ok {
		t.Error("the newest client was dropped")
	}
}

// TestWrongTokensLockTheClientOut drives the admin handler: wrong bearer tokens and
// wrong /login posts from one address lock it out (429, Retry-After) without comparing the
// token, even a right one; other addresses and requests without a token are not affected;
// the right token works again once the lockout ends.
func TestWrongTokensLockTheClientOut(t *testing.T) {
	gw, up := newGateway(t, consoleConfig)
	const token = "s3cret-token"
	s := New(gw, up, token, nil)
	c := &fakeNow{t: time.Unix(1e9, 0)}
	s.guard.now = c.now
	h := s.Handler()
	call := func(from, path, bearer string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = from
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	login := func(from, tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = from
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const attacker, attacker2, operator = "203.0.113.7:40000", "203.0.113.7:40001", "198.51.100.2:5000"
	for i := range guardFree {
		if rec := call(attacker, "/api/console", fmt.Sprintf("guess-%d", i)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, rec.Code)
		}
	}
	if rec := login(attacker, "guess-login"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("sixth wrong token (on /login): %d, want 401", rec.Code)
	}
	for _, tc := range []struct {
		desc string
		rec  *httptest.ResponseRecorder
		want int
	}{
		{"locked out: the right token is not even compared", call(attacker2, "/api/console", token), http.StatusTooManyRequests},
		{"locked out: /login too", login(attacker, token), http.StatusTooManyRequests},
		{"another address keeps working", call(operator, "/api/console", token), http.StatusOK},
		{"no token is not a guess: the login form still opens", call(attacker, "/login", ""), http.StatusOK},
		{"probes stay open", call(attacker, "/healthz", ""), http.StatusOK},
	} {
		if tc.rec.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.desc, tc.rec.Code, tc.want)
		}
		if tc.want == http.StatusTooManyRequests && tc.rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After %q, want 1", tc.desc, tc.rec.Header().Get("Retry-After"))
		}
	}
	c.step(1100 * time.Millisecond)
	if rec := call(attacker, "/api/console", "guess-again"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("after the lockout, a wrong token: %d, want 401", rec.Code)
	}
	if rec := call(attacker, "/api/console", token); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("the next lockout doubles: %d Retry-After %q, want 429 and 2", rec.Code, rec.Header().Get("Retry-After"))
	}
	c.step(2100 * time.Millisecond)
	if rec := call(attacker, "/api/console", token); rec.Code != http.StatusOK {
		t.Fatalf("after the lockout, the right token: %d, want 200", rec.Code)
	}
	if rec := call(attacker, "/api/console", "wrong-once"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("the right token cleared the count, so one wrong token is a 401 again: %d", rec.Code)
	}
}
