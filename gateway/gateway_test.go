package gateway

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const baseConfig = `
server:
  listen: 127.0.0.1:0
  trusted_proxies: [198.51.100.0/24]
pools:
  q: {addrs: [q1:1], max_conns: 8, eject: {failures: 2, duration: 200ms}}
  d: {addrs: [d1:1], max_conns: 4}
  gone: {addrs: [nowhere:1], max_conns: 4}
routes:
  lottery:     {path: /lottery, pool: q, core: true}
  draw:        {path: /lottery/draw, pool: q}
  act:         {host: act.example.com, path: /, pool: q}
  wild:        {host: "*.example.com", path: /info, pool: q}
  grant:       {path: /grant, pool: d, core: true, filters: {acl: {allow_methods: [POST]}}}
  off:         {path: /off, pool: q, enabled: false, fallback: {status: 200, body: '{"closed":true}', headers: {Cache-Control: no-store}}}
  down:        {path: /down, pool: gone, fallback: {status: 503, body: down}}
  slow:        {path: /slow, pool: q, timeout: 50ms}
  err5:        {path: /err5, pool: q, upstream_5xx: fallback}
  err5pass:    {path: /err5pass, pool: q}
`

func echoUpstream(ctx *fasthttp.RequestCtx) {
	switch {
	case strings.HasPrefix(string(ctx.Path()), "/slow"):
		time.Sleep(300 * time.Millisecond)
	case strings.HasPrefix(string(ctx.Path()), "/err5"):
		ctx.SetStatusCode(500)
		ctx.SetBodyString("upstream broke")
		return
	}
	ctx.Response.Header.Set("X-Upstream-Path", string(ctx.Path()))
	ctx.SetBodyString("ok")
}

func TestRouting(t *testing.T) {
	r := newRig(t, baseConfig)
	st := r.gw.state.Load()
	for _, tc := range []struct {
		desc, host, path, want string
	}{
		{"exact prefix", "gw.test", "/lottery", "lottery"},
		{"prefix with trailing slash", "gw.test", "/lottery/", "lottery"},
		{"below the prefix", "gw.test", "/lottery/result", "lottery"},
		{"longest prefix wins", "gw.test", "/lottery/draw", "draw"},
		{"longest prefix, deeper", "gw.test", "/lottery/draw/1", "draw"},
		{"no segment-boundary match", "gw.test", "/lottery2", ""},
		{"unknown path", "gw.test", "/nothing", ""},
		{"exact host beats any-host routes", "act.example.com", "/lottery", "act"},
		{"host match ignores port and case", "ACT.example.com:8080", "/x", "act"},
		{"wildcard host", "m.example.com", "/info/1", "wild"},
		{"wildcard needs a subdomain", "example.com", "/info", ""},
		{"wildcard host, other path falls to any-host routes", "m.example.com", "/lottery", "lottery"},
	} {
		got := ""
		if rt := st.match([]byte(tc.host), []byte(tc.path)); rt != nil {
			got = rt.name
		}
		if got != tc.want {
			t.Errorf("%s: %s%s -> %q, want %q", tc.desc, tc.host, tc.path, got, tc.want)
		}
	}
}

func TestAnswers(t *testing.T) { eachUpstreamMode(t, testAnswers) }

func testAnswers(t *testing.T, baseConfig string) {
	r := newRig(t, baseConfig)
	r.upstream("q1:1", echoUpstream)
	r.upstream("d1:1", echoUpstream)
	for _, tc := range []struct {
		desc, method, uri string
		status            int
		verdict, body     string
		header            [2]string
	}{
		{desc: "admitted: upstream answer, no verdict", method: "GET", uri: "/lottery", status: 200, body: "ok", header: [2]string{"X-Upstream-Path", "/lottery"}},
		{desc: "route disabled: fallback with its headers", method: "GET", uri: "/off", status: 200, verdict: "route/disabled", body: `{"closed":true}`, header: [2]string{"Cache-Control", "no-store"}},
		{desc: "upstream unreachable", method: "GET", uri: "/down", status: 503, verdict: "upstream/unavailable", body: "down"},
		{desc: "upstream too slow for the route timeout", method: "GET", uri: "/slow", status: 503, verdict: "upstream/timeout"},
		{desc: "upstream 5xx replaced when configured", method: "GET", uri: "/err5", status: 503, verdict: "upstream/error"},
		{desc: "upstream 5xx passed by default", method: "GET", uri: "/err5pass", status: 500, body: "upstream broke"},
		{desc: "filter rejects: its status, the route's fallback body", method: "GET", uri: "/grant", status: 405, verdict: "acl/method_not_allowed"},
		{desc: "filter admits", method: "POST", uri: "/grant", status: 200, body: "ok"},
		{desc: "no route", method: "GET", uri: "/nothing", status: 404, verdict: "route/not_found"},
	} {
		resp := r.do(tc.method, tc.uri, nil)
		if resp.StatusCode() != tc.status {
			t.Errorf("%s: status %d, want %d", tc.desc, resp.StatusCode(), tc.status)
		}
		if got := string(resp.Header.Peek(VerdictHeader)); got != tc.verdict {
			t.Errorf("%s: verdict %q, want %q", tc.desc, got, tc.verdict)
		}
		if tc.body != "" && string(resp.Body()) != tc.body {
			t.Errorf("%s: body %q, want %q", tc.desc, resp.Body(), tc.body)
		}
		if tc.header[0] != "" && string(resp.Header.Peek(tc.header[0])) != tc.header[1] {
			t.Errorf("%s: header %s = %q, want %q", tc.desc, tc.header[0], resp.Header.Peek(tc.header[0]), tc.header[1])
		}
	}
}

func TestVerdictHeaderCanBeTurnedOff(t *testing.T) {
	r := newRig(t, strings.Replace(baseConfig, "listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  verdict_header: false", 1))
	resp := r.do("GET", "/off", nil)
	if resp.StatusCode() != 200 || len(resp.Header.Peek(VerdictHeader)) != 0 {
		t.Fatalf("status %d verdict %q; want the fallback without a verdict header", resp.StatusCode(), resp.Header.Peek(VerdictHeader))
	}
}

func TestHeaderHygiene(t *testing.T) { eachUpstreamMode(t, testHeaderHygiene) }

func testHeaderHygiene(t *testing.T, baseConfig string) {
	r := newRig(t, baseConfig)
	var seen atomic.Pointer[fasthttp.RequestHeader]
	r.upstream("q1:1", func(ctx *fasthttp.RequestCtx) {
		h := &fasthttp.RequestHeader{}
		ctx.Request.Header.CopyTo(h)
		seen.Store(h)
		ctx.Response.Header.Set("Keep-Alive", "timeout=99")
		ctx.Response.Header.Set("Connection", "X-Internal")
		ctx.Response.Header.Set("X-Internal", "secret")
		ctx.Response.Header.Set("Upgrade", "h2c")
		ctx.Response.Header.Set("Proxy-Authenticate", "Basic")
		ctx.Response.Header.Set("X-Kept", "yes")
		ctx.SetBodyString("ok")
	})
	resp := r.do("GET", "/lottery", map[string]string{
		"Connection":          "keep-alive, X-Hop",
		"X-Hop":               "must go",
		"Keep-Alive":          "timeout=5",
		"Upgrade":             "websocket",
		"Proxy-Authorization": "Basic Zm9v",
		"Proxy-Connection":    "keep-alive",
		"TE":                  "trailers",
		"Trailer":             "X-Sum",
		"X-Forwarded-For":     "6.6.6.6",
		"X-Real-IP":           "6.6.6.6",
		"X-App":               "kept",
	})
	h := seen.Load()
	if h == nil {
		t.Fatalf("upstream not reached: %d %s", resp.StatusCode(), resp.Body())
	}
	for _, name := range []string{"X-Hop", "Keep-Alive", "Upgrade", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding"} {
		if v := h.Peek(name); len(v) != 0 {
			t.Errorf("upstream received hop-by-hop header %s: %q", name, v)
		}
	}
	if v := string(h.Peek("Connection")); v != "" && !strings.EqualFold(v, "keep-alive") {
		t.Errorf("upstream received Connection: %q", v)
	}
	if got := string(h.Peek("X-Forwarded-For")); got != "192.0.2.10" {
		t.Errorf("X-Forwarded-For = %q: an untrusted client's value must be replaced by its address", got)
	}
	if got := string(h.Peek("X-Real-IP")); got != "192.0.2.10" {
		t.Errorf("X-Real-IP = %q, want the peer address", got)
	}
	if got := string(h.Peek("X-App")); got != "kept" {
		t.Errorf("end-to-end header X-App = %q, want kept", got)
	}
	for _, name := range []string{"Keep-Alive", "X-Internal", "Upgrade", "Proxy-Authenticate"} {
		if v := resp.Header.Peek(name); len(v) != 0 {
			t.Errorf("client received hop-by-hop header %s: %q", name, v)
		}
	}
	if resp.ConnectionClose() {
		t.Errorf("client connection closed although only the upstream's hop said so")
	}
	if string(resp.Header.Peek("X-Kept")) != "yes" {
		t.Errorf("end-to-end response header lost")
	}
}

func TestTrustedProxyForwardedFor(t *testing.T) { eachUpstreamMode(t, testTrustedProxyForwardedFor) }

func testTrustedProxyForwardedFor(t *testing.T, baseConfig string) {
	r := newRig(t, baseConfig)
	r.net.from = &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40000}
	var xff, realIP atomic.Value
	r.upstream("q1:1", func(ctx *fasthttp.RequestCtx) {
		xff.Store(string(ctx.Request.Header.Peek("X-Forwarded-For")))
		realIP.Store(string(ctx.Request.Header.Peek("X-Real-IP")))
	})
	r.do("GET", "/lottery", map[string]string{"X-Forwarded-For": "203.0.113.5, 198.51.100.9"})
	if got := xff.Load(); got != "203.0.113.5, 198.51.100.9, 198.51.100.7" {
		t.Errorf("X-Forwarded-For via trusted proxy = %q, want the chain with the peer appended", got)
	}
	if got := realIP.Load(); got != "203.0.113.5" {
		t.Errorf("X-Real-IP = %q, want the nearest untrusted hop 203.0.113.5", got)
	}
}

// TestPassiveEjectionAndRecovery: with health checks off, an ejected server is tried
// again by requests when its ejection expires (health_test.go has the probed recovery).
func TestPassiveEjectionAndRecovery(t *testing.T) {
	eachUpstreamMode(t, testPassiveEjectionAndRecovery)
}

func testPassiveEjectionAndRecovery(t *testing.T, baseConfig string) {
	r := newRig(t, strings.Replace(baseConfig, "eject: {failures: 2, duration: 200ms}", "eject: {failures: 2, duration: 200ms}, health_check: {enabled: false}", 1))
	// q1 has no listener yet: connect errors eject it after 2 failures.
	for i := 0; i < 3; i++ {
		resp := r.do("GET", "/lottery", nil)
		if v := string(resp.Header.Peek(VerdictHeader)); v != "upstream/unavailable" {
			t.Fatalf("request %d: verdict %q, want upstream/unavailable", i, v)
		}
	}
	p := r.gw.state.Load().pools["q"]
	if p.servers[0].ejectedUntil.Load() == 0 {
		t.Fatalf("server not ejected after consecutive failures")
	}
	r.upstream("q1:1", echoUpstream)
	// While ejected, answers come from the fallback without trying the server.
	if v := string(r.do("GET", "/lottery", nil).Header.Peek(VerdictHeader)); v != "upstream/unavailable" {
		t.Fatalf("while ejected: verdict %q", v)
	}
	time.Sleep(250 * time.Millisecond) // eject duration is 200ms
	resp := r.do("GET", "/lottery", nil)
	if resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
		t.Fatalf("after the eject window: %d %q, want the upstream's answer", resp.StatusCode(), resp.Body())
	}
	if p.servers[0].ejectedUntil.Load() != 0 {
		t.Fatalf("server still marked ejected after a success")
	}
}

func TestBadUpdateKeepsServing(t *testing.T) {
	r := newRig(t, baseConfig)
	r.upstream("q1:1", echoUpstream)
	gen := r.gw.Generation()
	bad := strings.Replace(baseConfig, "pool: d, core: true", "pool: nope, core: true", 1)
	err := r.apply(bad)
	if err == nil || !strings.Contains(err.Error(), `routes.grant.pool: no pool named "nope"`) {
		t.Fatalf("bad update error = %v", err)
	}
	if r.gw.Generation() != gen {
		t.Fatalf("generation moved on a rejected update")
	}
	if resp := r.do("GET", "/lottery", nil); resp.StatusCode() != 200 {
		t.Fatalf("not serving after a rejected update: %d", resp.StatusCode())
	}
	ev := r.up.Events().List()
	if last := ev[len(ev)-1]; last.Result != "rejected" || len(last.Errors) == 0 {
		t.Fatalf("last event %+v, want a rejected event with its errors", last)
	}
	good := strings.Replace(baseConfig, "enabled: false", "enabled: true", 1)
	if err := r.apply(good); err != nil {
		t.Fatal(err)
	}
	if r.gw.Generation() != gen+1 {
		t.Fatalf("generation %d after a good update, want %d", r.gw.Generation(), gen+1)
	}
	if resp := r.do("GET", "/off", nil); resp.StatusCode() != 200 || len(resp.Header.Peek(VerdictHeader)) != 0 {
		t.Fatalf("/off after enabling: %d verdict %q", resp.StatusCode(), resp.Header.Peek(VerdictHeader))
	}
	// Applying the same content again is no new generation.
	if err := r.apply(good + "\n"); err != nil {
		t.Fatal(err)
	}
	if r.gw.Generation() != gen+1 {
		t.Fatalf("generation %d after re-applying equal content, want %d (unchanged)", r.gw.Generation(), gen+1)
	}
}

func TestPoolsCarriedOverReload(t *testing.T) {
	r := newRig(t, baseConfig)
	before := r.gw.state.Load().pools
	changed := strings.Replace(baseConfig, "d: {addrs: [d1:1], max_conns: 4}", "d: {addrs: [d1:1], max_conns: 6}", 1)
	changed = strings.Replace(changed, "enabled: false", "enabled: true", 1)
	if err := r.apply(changed); err != nil {
		t.Fatal(err)
	}
	after := r.gw.state.Load().pools
	if before["q"] != after["q"] {
		t.Errorf("unchanged pool q was rebuilt; it must be carried over")
	}
	if before["d"] == after["d"] {
		t.Errorf("changed pool d was carried over; it must be rebuilt")
	}
}

func TestServerSettingsNeedRestart(t *testing.T) {
	r := newRig(t, baseConfig)
	err := r.apply(strings.Replace(baseConfig, "listen: 127.0.0.1:0", "listen: 127.0.0.1:1", 1))
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("changing server.listen live: err = %v, want a restart-needed rejection", err)
	}
}

// TestEjectionSurvivesAPoolRebuild: a configuration change that rebuilds a pool (here its
// max_conns) keeps its servers' ejection state: an ejected server gets no traffic from
// the new pool either, until its ejection ends as the settings say.
func TestEjectionSurvivesAPoolRebuild(t *testing.T) {
	cfg := strings.Replace(baseConfig, "eject: {failures: 2, duration: 200ms}", "eject: {failures: 2, duration: 1h}, health_check: {enabled: false}", 1)
	r := newRig(t, cfg)
	for i := 0; i < 2; i++ { // q1 has no listener: two connect errors eject it
		if v := string(r.do("GET", "/lottery", nil).Header.Peek(VerdictHeader)); v != "upstream/unavailable" {
			t.Fatalf("request %d: verdict %q, want upstream/unavailable", i, v)
		}
	}
	old := r.gw.state.Load().pools["q"]
	if old.servers[0].ejectedUntil.Load() == 0 {
		t.Fatal("server not ejected after consecutive failures")
	}
	var served atomic.Int64
	r.upstream("q1:1", func(ctx *fasthttp.RequestCtx) { served.Add(1); ctx.SetBodyString("ok") })
	if err := r.apply(strings.Replace(cfg, "max_conns: 8", "max_conns: 16", 1)); err != nil {
		t.Fatal(err)
	}
	p := r.gw.state.Load().pools["q"]
	if p == old {
		t.Fatal("the pool was not rebuilt: the test changes nothing")
	}
	if got, want := p.servers[0].ejectedUntil.Load(), old.servers[0].ejectedUntil.Load(); got != want {
		t.Errorf("after the rebuild: ejectedUntil %d, want %d (carried over)", got, want)
	}
	if got := p.servers[0].ejected.Load(); got != 1 {
		t.Errorf("after the rebuild: %d ejections counted, want 1", got)
	}
	for i := 0; i < 3; i++ {
		if v := string(r.do("GET", "/lottery", nil).Header.Peek(VerdictHeader)); v != "upstream/unavailable" {
			t.Fatalf("after the rebuild, request %d: verdict %q, want upstream/unavailable (still ejected)", i, v)
		}
	}
	if n := served.Load(); n != 0 {
		t.Fatalf("the ejected server got %d requests after the pool was rebuilt", n)
	}
}
