package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/gateway/config"
)

// TestUpdateRebuildsOnlyChangedRoutes: a kill switch through the updater rebuilds the
// switched route and keeps every other route as built (its filters and their state); a
// pool's adaptive settings or a new file rebuild the routes they concern.
func TestUpdateRebuildsOnlyChangedRoutes(t *testing.T) {
	r := newRig(t, `
pools:
  q: {addrs: ["up:1"]}
  d: {addrs: ["up:2"]}
routes:
  a: {path: /a, pool: q, filters: {token_bucket: {rate: 100}}}
  b: {path: /b, pool: q, filters: {token_bucket: {rate: 100}}}
  c: {path: /c, pool: d, filters: {token_bucket: {rate: 100}}}
`)
	r.upstream("up:1", func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") })
	r.upstream("up:2", func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") })
	routes := func() map[string]*route {
		out := map[string]*route{}
		for _, rt := range r.gw.state.Load().routes {
			out[rt.name] = rt
		}
		return out
	}
	set := func(kv ...string) {
		t.Helper()
		var ov []config.Override
		for i := 0; i < len(kv); i += 2 {
			ov = append(ov, config.Override{Path: kv[i], Value: kv[i+1], Origin: "consul:fg/" + kv[i]})
		}
		if _, err := r.up.Apply(Update{Source: "consul", Overrides: &ov}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		desc    string
		kv      []string
		rebuilt string // the routes that must be new, in name order
		status  map[string]int
	}{
		{desc: "first keys: a route whose keys did not change is kept", kv: []string{"routes/a/token_bucket/rate", "200"}, rebuilt: "a",
			status: map[string]int{"/a": 200, "/b": 200, "/c": 200}},
		{desc: "kill switch of b", kv: []string{"routes/a/token_bucket/rate", "200", "routes/b/enabled", "false"}, rebuilt: "b",
			status: map[string]int{"/a": 200, "/b": 503, "/c": 200}},
		{desc: "b back on", kv: []string{"routes/a/token_bucket/rate", "200"}, rebuilt: "b",
			status: map[string]int{"/a": 200, "/b": 200, "/c": 200}},
		{desc: "a pool key (adaptive on pool d) decodes and rebuilds every route", kv: []string{"routes/a/token_bucket/rate", "200", "pools/d/adaptive/enabled", "true"}, rebuilt: "abc",
			status: map[string]int{"/a": 200, "/b": 200, "/c": 200}},
		{desc: "same keys again: nothing rebuilt", kv: []string{"routes/a/token_bucket/rate", "200", "pools/d/adaptive/enabled", "true"}, rebuilt: "",
			status: map[string]int{"/a": 200, "/b": 200, "/c": 200}},
	} {
		before := routes()
		set(tc.kv...)
		after := routes()
		rebuilt := ""
		for _, name := range []string{"a", "b", "c"} {
			if after[name] != before[name] {
				rebuilt += name
			}
		}
		if rebuilt != tc.rebuilt {
			t.Errorf("%s: rebuilt %q, want %q", tc.desc, rebuilt, tc.rebuilt)
		}
		for path, want := range tc.status {
			if got := r.do("GET", "http://gw.test"+path, nil).StatusCode(); got != want {
				t.Errorf("%s: GET %s = %d, want %d", tc.desc, path, got, want)
			}
		}
	}
}
