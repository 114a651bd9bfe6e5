package admin

import (
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"

	_ "github.com/floodgate/floodgate/filters/all"
)

// newGateway applies yamlSrc (with UPSTREAM replaced by a live loopback backend that
// answers 200) and returns the gateway and its updater.
func newGateway(t *testing.T, yamlSrc string) (*gateway.Gateway, *gateway.Updater) {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	t.Cleanup(backend.Close)
	yamlSrc = strings.ReplaceAll(yamlSrc, "UPSTREAM", strings.TrimPrefix(backend.URL, "http://"))
	doc, err := config.Parse("test.yaml", []byte(yamlSrc))
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{})
	t.Cleanup(gw.Close)
	up := gateway.NewUpdater(gw, nil)
	if _, err := up.Apply(gateway.Update{Source: "file:test.yaml", Doc: doc}); err != nil {
		t.Fatal(err)
	}
	return gw, up
}

// send passes one request through the gateway's handler (no listener needed).
func send(gw *gateway.Gateway, uri string) int {
	var ctx fasthttp.RequestCtx
	ctx.Init(&ctx.Request, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.SetHost("gw.test")
	gw.Handler(&ctx)
	return ctx.Response.StatusCode()
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func consoleOf(t *testing.T, h http.Handler, hdr ...string) Console {
	t.Helper()
	rec := get(t, h, "/api/console", hdr...)
	if rec.Code != 200 {
		t.Fatalf("/api/console: %d %s", rec.Code, rec.Body)
	}
	var c Console
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

const consoleConfig = `
pools: {cq: {addrs: ["UPSTREAM"], max_conns: 8}}
routes:
  c_ok:   {path: /ok, pool: cq, core: true, filters: {token_bucket: {rate: 1000, burst: 1000}}}
  c_off:  {path: /off, pool: cq, enabled: false}
  c_tier: {path: /promo, pool: cq, filters: {promo_throttle: {source: "query:tag", default_tier: organic, pressure: 1,
           tiers: {organic: {priority: 2, rate: 500}, push: {priority: 1, rate: 100, match: [push]}}}}}
`

func TestConsoleShowsRatesLatencyAndLimits(t *testing.T) {
	gw, up := newGateway(t, consoleConfig)
	s := New(gw, up, "", nil)
	h := s.Handler()
	s.Sample()
	for i := 0; i < 50; i++ {
		if code := send(gw, "/ok"); code != 200 {
			t.Fatalf("/ok: %d", code)
		}
		send(gw, "/off")
		send(gw, "/promo?tag=push")
	}
	s.Sample()
	c := consoleOf(t, h)

	if c.State.Status != "READY" || c.State.Generation != 1 {
		t.Errorf("state %+v, want READY at generation 1", c.State)
	}
	if len(c.Series.T) != 1 {
		t.Fatalf("series has %d seconds, want 1 (two readings)", len(c.Series.T))
	}
	ok, off := c.Series.Routes["c_ok"], c.Series.Routes["c_off"]
	if ok.Admitted[0] <= 0 || ok.Shed[0] != 0 {
		t.Errorf("c_ok admitted %v shed %v, want admitted > 0 and nothing shed", ok.Admitted, ok.Shed)
	}
	if ok.P50Admitted[0] == nil || ok.P99Admitted[0] == nil || *ok.P99Admitted[0] < *ok.P50Admitted[0] {
		t.Errorf("c_ok latency p50 %v p99 %v, want both, p99 >= p50", ok.P50Admitted[0], ok.P99Admitted[0])
	}
	if off.Shed[0] <= 0 || off.Admitted[0] != 0 || off.Verdicts["route/disabled"] == nil {
		t.Errorf("c_off shed %v admitted %v verdicts %v, want route/disabled shed", off.Shed, off.Admitted, off.Verdicts)
	}
	if off.P50Gateway[0] == nil {
		t.Errorf("c_off: no latency of the gateway's own answers")
	}
	tier := c.Series.Routes["c_tier"]
	if tier.Verdicts["promo_throttle/shed"] == nil {
		t.Errorf("c_tier verdicts %v, want promo_throttle/shed (pressure 1 sheds the push tier)", tier.Verdicts)
	}

	byName := map[string]ConsoleRoute{}
	for _, r := range c.Routes {
		byName[r.Name] = r
	}
	if r := byName["c_ok"]; r.Offered <= 0 || len(r.Limits) != 2 || r.Limits[0].Name != "rate" || r.Limits[0].Value != 1000 || r.Limits[0].Current == nil || *r.Limits[0].Current <= 0 {
		t.Errorf("c_ok now: %+v limits %+v, want offered > 0 and token_bucket rate 1000 with a current rate", r, r.Limits)
	}
	var push *ConsoleLimit
	for i, l := range byName["c_tier"].Limits {
		if l.Name == "tier_rate" && l.Tier == "push" {
			push = &byName["c_tier"].Limits[i]
		}
	}
	if push == nil || !push.Shed || push.Current == nil || *push.Current <= 0 {
		t.Errorf("c_tier push tier limit %+v, want shed with a current rate", push)
	}
	if len(c.Pools) != 1 || c.Pools[0].Name != "cq" || len(c.Pools[0].Servers) != 1 || !c.Pools[0].Servers[0].Healthy || c.Pools[0].Servers[0].MaxConns != 8 {
		t.Errorf("pools %+v, want cq with one healthy server of budget 8", c.Pools)
	}
	if c.Fleet != nil || c.Async != nil || c.Overload != nil {
		t.Errorf("fleet %v async %v overload %v, want null without Consul and providers", c.Fleet, c.Async, c.Overload)
	}
}

func TestConsoleSections(t *testing.T) {
	gw, up := newGateway(t, consoleConfig)
	s := New(gw, up, "", nil)
	RegisterSection("async", func() any { return map[string]int{"backlog": 7} })
	RegisterSection("extra", func() any { return "x" })
	t.Cleanup(func() { RegisterSection("async", nil); RegisterSection("extra", nil) })
	c := consoleOf(t, s.Handler())
	if m, ok := c.Async.(map[string]any); !ok || m["backlog"] != 7.0 {
		t.Errorf("async = %v, want the registered provider's value", c.Async)
	}
	if c.Sections["extra"] != "x" {
		t.Errorf("sections = %v, want extra", c.Sections)
	}
}

func TestConsoleState(t *testing.T) {
	for _, tc := range []struct {
		desc           string
		stale, held    string
		drain          bool
		status, reason string
		readyCode      int
	}{
		{desc: "fresh", status: "READY", readyCode: 200},
		{desc: "stale", stale: "consul unreachable", status: "STALE", reason: "consul unreachable", readyCode: 200},
		{desc: "held beats stale", stale: "consul unreachable", held: "most keys removed", status: "HELD", reason: "most keys removed", readyCode: 200},
		{desc: "draining beats all", held: "x", drain: true, status: "DRAINING", reason: "draining: shutting down", readyCode: 503},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			gw, up := newGateway(t, consoleConfig)
			s := New(gw, up, "", nil)
			s.SetStale(tc.stale)
			s.SetHeld(tc.held)
			if tc.drain {
				s.SetDraining()
			}
			h := s.Handler()
			c := consoleOf(t, h)
			if c.State.Status != tc.status || c.State.Reason != tc.reason {
				t.Errorf("state %+v, want %s (%s)", c.State, tc.status, tc.reason)
			}
			if rec := get(t, h, "/readyz"); rec.Code != tc.readyCode {
				t.Errorf("/readyz %d, want %d", rec.Code, tc.readyCode)
			}
		})
	}
}

func TestTokenAndLogin(t *testing.T) {
	gw, up := newGateway(t, consoleConfig)
	const token = "s3cret-token"
	h := New(gw, up, token, nil).Handler()
	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	good := post("/login", url.Values{"token": {token}})
	if good.Code != http.StatusSeeOther || good.Header().Get("Location") != "/" {
		t.Fatalf("login with the token: %d to %q, want 303 to /", good.Code, good.Header().Get("Location"))
	}
	cookies := good.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Value == "" || strings.Contains(cookies[0].Value, token) {
		t.Fatalf("cookie %+v, want one HttpOnly SameSite=Strict cookie that is not the token", cookies)
	}
	cookie := cookies[0].Name + "=" + cookies[0].Value

	for _, tc := range []struct {
		desc     string
		path     string
		hdr      []string
		code     int
		location string
	}{
		{desc: "probe healthz open", path: "/healthz", code: 200},
		{desc: "probe readyz open", path: "/readyz", code: 200},
		{desc: "browser without a session goes to the login form", path: "/", code: 303, location: "/login"},
		{desc: "login form open", path: "/login", code: 200},
		{desc: "api without token", path: "/api/console", code: 401},
		{desc: "metrics without token", path: "/metrics", code: 401},
		{desc: "bearer token", path: "/api/console", hdr: []string{"Authorization", "Bearer " + token}, code: 200},
		{desc: "wrong bearer token", path: "/api/console", hdr: []string{"Authorization", "Bearer nope"}, code: 401},
		{desc: "wrong bearer with a good cookie", path: "/api/console", hdr: []string{"Authorization", "Bearer nope", "Cookie", cookie}, code: 401},
		{desc: "session cookie: page", path: "/", hdr: []string{"Cookie", cookie}, code: 200},
		{desc: "session cookie: api", path: "/api/console", hdr: []string{"Cookie", cookie}, code: 200},
		{desc: "forged cookie", path: "/api/console", hdr: []string{"Cookie", sessionCookie + "=" + session("other")}, code: 401},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			rec := get(t, h, tc.path, tc.hdr...)
			if rec.Code != tc.code || rec.Header().Get("Location") != tc.location {
				t.Errorf("%s: %d to %q, want %d to %q", tc.path, rec.Code, rec.Header().Get("Location"), tc.code, tc.location)
			}
		})
	}
	if bad := post("/login", url.Values{"token": {"wrong"}}); bad.Code != 401 || len(bad.Result().Cookies()) != 0 || !strings.Contains(bad.Body.String(), "wrong token") {
		t.Errorf("wrong token: %d, cookies %v, want 401 with the form and no cookie", bad.Code, bad.Result().Cookies())
	}
	if out := post("/logout", nil); out.Code != 303 || len(out.Result().Cookies()) != 1 || out.Result().Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v, want 303 and the cookie cleared", out.Code, out.Result().Cookies())
	}
	if rec := post("/config", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /config: %d, want 405 (read-only)", rec.Code)
	}
}

func TestDashboardIsSelfContained(t *testing.T) {
	gw, up := newGateway(t, consoleConfig)
	rec := get(t, New(gw, up, "", nil).Handler(), "/")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, "uPlot") || strings.Contains(body, "/*UPLOT_JS*/") {
		t.Fatalf("dashboard: %d, uPlot inlined: %v", rec.Code, strings.Contains(body, "uPlot"))
	}
	for _, bad := range []string{`src="http`, `href="http`, `src="//`, `@import`} {
		if strings.Contains(body, bad) {
			t.Errorf("dashboard loads something from elsewhere (%s): it must work offline", bad)
		}
	}
}

func hist(counts ...uint64) *dto.Histogram {
	bounds := []float64{.001, .01, .1, 1}
	h := &dto.Histogram{SampleCount: new(uint64)}
	var cum uint64
	for i, c := range counts {
		cum += c
		n := cum
		ub := bounds[i]
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: &ub, CumulativeCount: &n})
	}
	*h.SampleCount = cum
	return h
}

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		q         float64
		cur, prev *dto.Histogram
		want      float64
	}{
		{desc: "all in the first bucket, median", q: .5, cur: hist(10, 0, 0, 0), want: .0005},
		{desc: "interpolated in the second bucket", q: .5, cur: hist(0, 10, 0, 0), want: .001 + .009*.5},
		{desc: "p99 in the last bucket", q: .99, cur: hist(90, 0, 0, 10), want: .1 + .9*.9},
		{desc: "only the difference counts", q: .5, cur: hist(100, 0, 10, 0), prev: hist(100, 0, 0, 0), want: .01 + .09*.5},
		{desc: "nothing new", q: .5, cur: hist(5, 0, 0, 0), prev: hist(5, 0, 0, 0), want: math.NaN()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := quantile(tc.q, tc.cur, tc.prev)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
				t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestVerdictClass(t *testing.T) {
	for _, tc := range []struct{ verdict, want string }{
		{"admitted", "admitted"},
		{"async/accepted", "admitted"}, // an async route's 202 is its admission
		{"async/unavailable", "failed"},
		{"upstream/timeout", "failed"},
		{"token_bucket/limited", "shed"},
		{"async/missing_key", "shed"},
		{"route/disabled", "shed"},
	} {
		if got := verdictClass(tc.verdict); got != tc.want {
			t.Errorf("verdictClass(%q) = %q, want %q", tc.verdict, got, tc.want)
		}
	}
}
