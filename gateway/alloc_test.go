//go:build !race

package gateway

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

const allocConfig = `
server: {listen: 127.0.0.1:0, trusted_proxies: [10.0.0.0/8]}
pools: {q: {addrs: ["q1:1"], max_conns: 64}}
routes:
  lottery: {path: /lottery, pool: q, core: true}
  acl:     {path: /acl, pool: q, filters: {acl: {allow_methods: [GET], deny_networks: [10.0.0.0/8]}}}
  off:     {path: /off, pool: q, enabled: false}
  flood:   {path: /flood, pool: q, core: true, filters: {token_bucket: {rate: 1, burst: 1}}}
`

// adaptiveAllocConfig adds pools with adaptive overload protection: a route proxied
// through it (core, and non-core with a promotion tier and a user key), and one shed by it.
const adaptiveAllocConfig = allocConfig + `  acore:   {path: /acore, pool: a, core: true}
  ainfo:   {path: /ainfo, pool: a, filters: {promo_throttle: {source: query:adtag, default_tier: organic, tiers: {organic: {priority: 2, rate: 1000000000}, wx: {priority: 1, rate: 1000000000, match: [wx]}}}}}
  ashed:   {path: /ashed, pool: s}
  alevel:  {path: /alevel, pool: l, filters: {promo_throttle: {source: query:adtag, default_tier: organic, tiers: {organic: {priority: 2, rate: 1000000000}, wx: {priority: 1, rate: 1000000000, match: [wx]}}}}}
`

const adaptivePools = `
  a: {addrs: ["q1:1"], max_conns: 64, adaptive: {enabled: true, user_key: "query:uin"}}
  s: {addrs: ["q1:1"], max_conns: 64, adaptive: {enabled: true, pinned_level: 2048}}
  l: {addrs: ["q1:1"], max_conns: 64, adaptive: {enabled: true, pinned_level: 1, user_key: "query:uin"}}
`

type allocCase struct {
	desc, uri string
	status    int
}

func okUpstream(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }

// TestRequestPathAllocatesNothing drives whole requests client -> gateway -> upstream
// over in-memory connections and asserts that the steady state allocates nothing: the
// gateway (routing, header hygiene, X-Forwarded-For, proxying, counting) as well as the
// fasthttp client and servers around it.
func TestRequestPathAllocatesNothing(t *testing.T) {
	t.Run("access log off", func(t *testing.T) { requestPathAllocs(t, allocConfig) })
	t.Run("access log on", func(t *testing.T) {
		path := t.TempDir() + "/access.log"
		requestPathAllocs(t, "access_log: {enabled: true, path: \""+path+"\"}\n"+allocConfig)
	})
	t.Run("adaptive overload protection on", func(t *testing.T) {
		cfg := strings.Replace(adaptiveAllocConfig, `pools: {q: {addrs: ["q1:1"], max_conns: 64}}`, "pools:\n  q: {addrs: [\"q1:1\"], max_conns: 64}"+adaptivePools, 1)
		requestPathAllocs(t, cfg,
			allocCase{"adaptive, core", "/acore?uin=10001", 200},
			allocCase{"adaptive, non-core with tier and user key", "/ainfo?uin=10001&adtag=wx", 200},
			allocCase{"adaptive, shed", "/ashed?uin=10001", 503},
			// (a healthy pool decides without the request's level; a pool that sheds by
			// level computes it: tier rank, user key read and hash)
			allocCase{"adaptive, shedding by level, this request's level admitted", "/alevel?uin=10001&adtag=wx", 200})
	})
	// keys read from a cookie and from an escaped query parameter (filters/rawread.go)
	t.Run("keys from cookies and escaped queries", func(t *testing.T) {
		requestPathAllocs(t, allocConfig+`  keyed:   {path: /keyed, pool: q, filters: {sample: {ratio: 1, key: "query:uin"}, token_bucket: {rate: 1000000, burst: 1000000, key: "cookie:uin"}}}
`, allocCase{"keys from a cookie and an escaped query", "/keyed?uin=%2B10001&x=a%7Eb", 200})
	})
	// a route whose fallback answers some verdicts apart (fallback.verdicts)
	t.Run("answers per verdict", func(t *testing.T) {
		requestPathAllocs(t, allocConfig+`  vflood:  {path: /vflood, pool: q, filters: {token_bucket: {rate: 1, burst: 1}}, fallback: {verdicts: {route: {disabled: {body: off}}, token_bucket: {limited: {status: 503, body: wait}}}}}
`, allocCase{"shed, answered per verdict", "/vflood?uin=10001", 503})
	})
	// a pool that pipelines (pipeline.go): the request serialised into a pooled work item,
	// coalesced writes, the answer parsed into the client's response
	t.Run("upstream pipelining on", func(t *testing.T) {
		r := requestPathAllocs(t, pipelinedAllocConfig,
			allocCase{"pipelined, empty chain", "/piped?uin=10001", 200},
			allocCase{"pipelined through a filter", "/pacl?uin=10001", 200})
		if pc := r.gw.state.Load().pools["p"].servers[0].pc; pc == nil || pc.ConnsCount() == 0 {
			t.Fatal("the pipelined pool opened no pipelined connection: its requests went another way")
		}
	})
}

// pipelinedAllocConfig adds a pool that pipelines to the same upstream.
var pipelinedAllocConfig = strings.Replace(allocConfig, `pools: {q: {addrs: ["q1:1"], max_conns: 64}}`,
	"pools:\n  q: {addrs: [\"q1:1\"], max_conns: 64}\n  p: {addrs: [\"q1:1\"], max_conns: 64, pipeline: {enabled: true, conns: 2}}", 1) +
	`  piped:   {path: /piped, pool: p, core: true}
  pacl:    {path: /pacl, pool: p, filters: {acl: {allow_methods: [GET], deny_networks: [10.0.0.0/8]}}}
`

func requestPathAllocs(t *testing.T, cfg string, extra ...allocCase) *testRig {
	r := newRig(t, cfg)
	r.upstream("q1:1", okUpstream)
	for _, tc := range append([]allocCase{
		{"proxied, empty chain", "/lottery?uin=10001", 200},
		{"proxied through a filter", "/acl?uin=10001", 200},
		{"fallback answer", "/off", 503},
		{"shed by token_bucket (429 with Retry-After)", "/flood?uin=10001", 429},
		{"no route", "/nothing", 404},
	}, extra...) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI(tc.uri)
		req.Header.SetHost("gw.test")
		req.Header.Set("X-Forwarded-For", "203.0.113.1")
		req.Header.Set("Connection", "keep-alive, X-Hop")
		req.Header.Set("X-Hop", "1")
		// every line of a list header is read: a second X-Forwarded-For and Connection
		req.Header.Add("X-Forwarded-For", "198.51.100.7")
		req.Header.Add("Connection", "X-Hop2")
		req.Header.Set("X-Hop2", "1")
		req.Header.Set("True-Client-IP", "6.6.6.6")
		req.Header.Set("Proxy-Foo", "1")                    // stripped (every Proxy-* name)
		req.Header.Set("Cookie", "uin=10001; sid=abc; x=1") // forwarded as sent, read raw by cookie keys
		do := func() {
			if err := r.client.Do(req, resp); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 100; i++ {
			do()
		}
		if resp.StatusCode() != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.desc, resp.StatusCode(), tc.status)
		}
		if n := testing.AllocsPerRun(2000, do); n != 0 {
			t.Errorf("%s: %.2f allocations per request; the request path must allocate nothing", tc.desc, n)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	return r
}

// BenchmarkRequestPath is the in-memory round trip (client + gateway + upstream in one
// process); see bench/ for the loopback comparison with nginx and haproxy.
func BenchmarkRequestPath(b *testing.B) {
	b.Run("access-log-off", func(b *testing.B) { benchRequestPath(b, allocConfig, "/lottery?uin=10001") })
	b.Run("access-log-on", func(b *testing.B) {
		benchRequestPath(b, "access_log: {enabled: true, path: \""+b.TempDir()+"/access.log\"}\n"+allocConfig, "/lottery?uin=10001")
	})
	// the same core route on a pool with adaptive overload protection on (healthy: nothing shed)
	b.Run("adaptive-on", func(b *testing.B) {
		cfg := strings.Replace(adaptiveAllocConfig, `pools: {q: {addrs: ["q1:1"], max_conns: 64}}`, "pools:\n  q: {addrs: [\"q1:1\"], max_conns: 64}"+adaptivePools, 1)
		benchRequestPath(b, cfg, "/acore?uin=10001")
	})
	// the same core route on a pool that pipelines
	b.Run("pipelined", func(b *testing.B) { benchRequestPath(b, pipelinedAllocConfig, "/piped?uin=10001") })
}

func benchRequestPath(b *testing.B, cfg, uri string) {
	r := newRig(b, cfg)
	r.upstream("q1:1", okUpstream)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI(uri)
		req.Header.SetHost("gw.test")
		for pb.Next() {
			if err := r.client.Do(req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHandler is the gateway's own work per request (no client or server): a
// disabled route's fallback, and a flood shed by token_bucket (429 with Retry-After).
func BenchmarkHandler(b *testing.B) {
	for _, uri := range []string{"/off", "/flood?uin=10001"} {
		b.Run(strings.TrimPrefix(uri, "/"), func(b *testing.B) {
			r := newRig(b, allocConfig)
			r.upstream("q1:1", okUpstream)
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI(uri)
				r.gw.serve(&ctx)
			}
		})
	}
}

// TestForwardTargetAllocatesNothing: the target rebuilt in its routed form (the rare
// case) allocates nothing once its buffer is pooled; the usual case never does.
func TestForwardTargetAllocatesNothing(t *testing.T) {
	for _, uri := range []string{"/lottery/a?uin=1", "/lottery/a/../%41//b?uin=%7E1", "*"} {
		var req fasthttp.Request
		w := bufio.NewWriter(io.Discard)
		do := func() {
			req.SetRequestURI(uri)
			req.Header.SetHost("GW.test")
			req.URI()
			forwardTarget(&req)
			if err := req.Write(w); err != nil {
				t.Fatal(err)
			}
			w.Flush()
		}
		do()
		if n := testing.AllocsPerRun(1000, do); n != 0 {
			t.Errorf("%s: %.2f allocations per request", uri, n)
		}
	}
}
