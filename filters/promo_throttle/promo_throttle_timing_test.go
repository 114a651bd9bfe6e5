package promothrottle

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/floodgate/floodgate/filters/filtertest"
)

// tags is a mix of promotion tags: exact values, prefixed ones, unknown ones and none.
var tags = []string{"wechat", "wx", "wx_moments", "wx_group_17", "bn_top", "bn_side_3", "qqmail", "", "organic-ish", "bn", "wx_", "WX"}

// BenchmarkDecide: random tags from the mix, one request per microsecond of fake time
// (so every tier is mostly over its rate), serial and b.RunParallel.
func BenchmarkDecide(b *testing.B) {
	b.Run("random-tags/serial", func(b *testing.B) {
		f := filtertest.Build(b, Name, sketch, nil)
		req := filtertest.NewRequest(b, filtertest.Req{URI: "/lottery?uin=10001&adtag=x"})
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			filtertest.SetQueryArg(req, "adtag", tags[rng.IntN(len(tags))])
			req.Now += 1000
			f.Decide(req)
		}
	})
	b.Run("random-tags/parallel", func(b *testing.B) {
		f := filtertest.Build(b, Name, sketch, nil)
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			id := seed.Add(1)
			req := filtertest.NewRequest(b, filtertest.Req{URI: "/lottery?uin=10001&adtag=x"})
			rng := rand.New(rand.NewPCG(id, 2))
			for pb.Next() {
				filtertest.SetQueryArg(req, "adtag", tags[rng.IntN(len(tags))])
				req.Now += 2000
				f.Decide(req)
			}
		})
	})
	b.Run("shed/serial", func(b *testing.B) {
		f := filtertest.Build(b, Name, sketch+"pressure: 2", nil)
		req := filtertest.NewRequest(b, filtertest.Req{URI: "/lottery?uin=10001&adtag=wx_a"})
		for b.Loop() {
			req.Now += 1000
			f.Decide(req)
		}
	})
}
