package gateway

import (
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/adaptive"
)

// BenchmarkOverloadDecision is the whole admission decision forward adds for a route with
// adaptive protection (overload.admit: AdmitFast, the request's level when it is needed -
// user key read and hash, window draw - Admit or Count) and Done. Issue 9: <= 50 ns/op,
// 0 allocations, serial and parallel. The cases:
//   - healthy: nothing shed by level, the pool under half its limit (the level is not
//     computed);
//   - busy: more than half the limit in flight (the level is computed and counted);
//   - shedding: the pool sheds by level (pinned); the request's level is computed and
//     passes (info) or is shed (report, no Done).
func BenchmarkOverloadDecision(b *testing.B) {
	for _, bc := range []struct {
		name  string
		pin   int
		route string
		rank  int // what the route's promo_throttle leaves in filters.Request.Rank
		fill  int // core requests held in flight (the pool's limit is 16)
	}{
		{"healthy/core", -1, "lottery", 0, 0},
		{"healthy/promo-tiers", -1, "info", 2, 0},
		{"busy/promo-tiers", -1, "info", 2, 9},
		{"shedding/admitted", int(adaptive.MakeLevel(2, 0, 0)), "info", 2, 0},
		{"shedding/shed", int(adaptive.MakeLevel(2, 0, 0)), "report", 0, 0},
	} {
		r := newRig(b, overloadConfig(bc.pin, ""))
		rt := r.gw.state.Load().byName(bc.route)
		for range bc.fill {
			rt.ovl.ctl.Admit(adaptive.NumLevels-1, true)
		}
		ip := netip.MustParseAddr("192.0.2.1")
		decide := func(ctx *fasthttp.RequestCtx) {
			if rt.ovl.admit(ctx, ip, 1, bc.rank).Forward() {
				rt.ovl.ctl.Done(time.Millisecond, adaptive.Answered, rt.ovl.core)
			}
		}
		newCtx := func() *fasthttp.RequestCtx {
			ctx := new(fasthttp.RequestCtx)
			ctx.Request.SetRequestURI("/" + bc.route + "?uin=10001&adtag=banner")
			ctx.QueryArgs() // parsed once per request by fasthttp anyway (the chain reads it)
			return ctx
		}
		b.Run(bc.name, func(b *testing.B) {
			ctx := newCtx()
			b.ReportAllocs()
			for b.Loop() {
				decide(ctx)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := newCtx()
				for pb.Next() {
					decide(ctx)
				}
			})
		})
	}
}
