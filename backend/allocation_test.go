//go:build !race

package backend

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestZeroAllocs proves the hot handlers allocate nothing per request once warm.
func TestZeroAllocs(t *testing.T) {
	q, err := NewQuery(QueryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPacks(t, map[string]string{"vip": "10001\n10002\n", "new": "10002\n"}, 0)
	cases := []struct {
		desc    string
		handler fasthttp.RequestHandler
		uri     string
		want    string
	}{
		{desc: "query", handler: q.Handler(), uri: "/lottery/draw?user=1",
			want: `{"ok":true,"route":"lottery","prize":"none"}` + "\n"},
		{desc: "query healthz", handler: q.Handler(), uri: "/healthz", want: "ok"},
		{desc: "packs membership, two packs", handler: p.Handler(), uri: "/v1/membership?user=10002",
			want: `{"user":"10002","packs":["new","vip"]}` + "\n"},
		{desc: "packs membership, none", handler: p.Handler(), uri: "/v1/membership?user=3",
			want: `{"user":"3","packs":[]}` + "\n"},
		{desc: "packs list", handler: p.Handler(), uri: "/v1/packs"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.SetRequestURI(tc.uri)
			ctx.Request.Header.SetMethod("GET")
			run := func() {
				ctx.Response.Reset()
				tc.handler(&ctx)
			}
			run()
			if ctx.Response.StatusCode() != 200 || (tc.want != "" && string(ctx.Response.Body()) != tc.want) {
				t.Fatalf("got %d %q, want 200 %q", ctx.Response.StatusCode(), ctx.Response.Body(), tc.want)
			}
			if a := testing.AllocsPerRun(1000, run); a != 0 {
				t.Fatalf("%v allocations per request, want 0", a)
			}
		})
	}
}
