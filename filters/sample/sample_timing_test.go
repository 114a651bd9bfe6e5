package sample_test

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// requests returns n requests with random user numbers (query:uin), their query strings
// already parsed as the gateway's earlier steps would have.
func requests(b *testing.B, n int, withKey bool) []*filters.Request {
	rng := rand.New(rand.NewPCG(1, 2))
	rs := make([]*filters.Request, n)
	for i := range rs {
		uri := "/info"
		if withKey {
			uri += "?uin=" + strconv.FormatUint(10_000+rng.Uint64N(4_000_000_000), 10)
		}
		rs[i] = filtertest.NewRequest(b, filtertest.Req{URI: uri, Wall: t0 + rng.Int64N(int64(time.Hour))})
	}
	return rs
}

// BenchmarkDecide: random users at ratio 0.3 (the budget is 150 ns/op and 0 allocs/op).
func BenchmarkDecide(b *testing.B) {
	for _, bc := range []struct {
		name string
		key  bool
	}{{"random_users", true}, {"keyless", false}} {
		b.Run(bc.name, func(b *testing.B) {
			f := filtertest.Build(b, "sample", "ratio: 0.3", nil)
			rs := requests(b, 4096, bc.key)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.Decide(rs[i&4095])
				i++
			}
		})
	}
}

// BenchmarkDecideParallel is BenchmarkDecide on every P (the counters are shared).
func BenchmarkDecideParallel(b *testing.B) {
	f := filtertest.Build(b, "sample", "ratio: 0.3", nil)
	rs := requests(b, 4096, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(4096)
		for pb.Next() {
			f.Decide(rs[i&4095])
			i++
		}
	})
}
