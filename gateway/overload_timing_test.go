package gateway

import (
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/adaptive"
)

// BenchmarkOverloadDecision is the whole admission decision forward adds for a route with
// adaptive protection: the request's level (promotion tier, user key hash, window draw),
// Admit, and Done. Issue 9: <= 50 ns/op, 0 allocations, serial and parallel.
func BenchmarkOverloadDecision(b *testing.B) {
	r := newRig(b, overloadConfig(-1, ""))
	st := r.gw.state.Load()
	for _, route := range []string{"lottery", "info"} {
		rt := st.byName(route)
		b.Run(route, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			ctx.Request.SetRequestURI("/" + route + "?uin=10001&adtag=banner")
			ctx.QueryArgs() // parsed once per request by fasthttp anyway (the chain reads it)
			ip := netip.MustParseAddr("192.0.2.1")
			b.ReportAllocs()
			for b.Loop() {
				if rt.ovl.ctl.Admit(r.gw.level(&rt.ovl, &ctx, ip, 1), rt.info.Core).Forward() {
					rt.ovl.ctl.Done(time.Millisecond, adaptive.Answered, rt.info.Core)
				}
			}
		})
		b.Run(route+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var ctx fasthttp.RequestCtx
				ctx.Request.SetRequestURI("/" + route + "?uin=10001&adtag=banner")
				ctx.QueryArgs()
				ip := netip.MustParseAddr("192.0.2.1")
				for pb.Next() {
					if rt.ovl.ctl.Admit(r.gw.level(&rt.ovl, &ctx, ip, 1), rt.info.Core).Forward() {
						rt.ovl.ctl.Done(time.Millisecond, adaptive.Answered, rt.info.Core)
					}
				}
			})
		})
	}
}
