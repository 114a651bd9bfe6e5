package tokenbucket

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/floodgate/floodgate/filters/filtertest"
)

// BenchmarkDecide: route-wide and single-key buckets, and per-user buckets for 1M
// distinct user numbers in a query parameter, drawn at random, one request per
// microsecond of fake time, 10/s and burst 1 per user. Each user comes back about once
// a second and stays live for 100ms, so about 95,000 keys are live at a time:
// max_keys 128Ki (1 MiB, live keys at 73%) is the right size; the 1M-slot table (8 MiB)
// shows the cost of a table larger than the CPU's caches. Serial and b.RunParallel; the
// random-keys cases report the table's bytes per key (of max_keys).
func BenchmarkDecide(b *testing.B) {
	const users = 1 << 20
	for _, c := range []struct {
		name, yaml string
		random     bool
	}{
		{"route", `{rate: 20000}`, false},
		{"single-key", `{rate: 20000, key: "query:uin"}`, false},
		{"random-keys", `{rate: 10, burst: 1, key: "query:uin", max_keys: 131072}`, true},
		{"random-keys-8MiB-table", `{rate: 10, burst: 1, key: "query:uin", max_keys: 1048576}`, true},
	} {
		b.Run(c.name+"/serial", func(b *testing.B) {
			f := filtertest.Build(b, Name, c.yaml, nil)
			req := filtertest.NewRequest(b, filtertest.Req{URI: "/lottery?adtag=wx_1&uin=10000000000"})
			rng := rand.New(rand.NewPCG(1, 2))
			var buf [20]byte
			for b.Loop() {
				if c.random {
					filtertest.SetQueryArg(req, "uin", strconv.AppendUint(buf[:0], 10_000_000_000+rng.Uint64N(users), 10))
				}
				req.Now += 1000
				f.Decide(req)
			}
			if tb := f.(*TokenBucket).Table(); tb != nil && c.random {
				b.ReportMetric(float64(tb.Bytes())/float64(tb.MaxKeys()), "bytes/key")
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			f := filtertest.Build(b, Name, c.yaml, nil)
			var seed atomic.Uint64
			procs := int64(runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				id := seed.Add(1)
				req := filtertest.NewRequest(b, filtertest.Req{URI: "/lottery?adtag=wx_1&uin=10000000000"})
				req.Now += int64(id) * 1000
				rng := rand.New(rand.NewPCG(id, 2))
				var buf [20]byte
				for pb.Next() {
					if c.random {
						filtertest.SetQueryArg(req, "uin", strconv.AppendUint(buf[:0], 10_000_000_000+rng.Uint64N(users), 10))
					}
					req.Now += 1000 * procs // the goroutines' clocks advance together
					f.Decide(req)
				}
			})
			if tb := f.(*TokenBucket).Table(); tb != nil && c.random {
				b.ReportMetric(float64(tb.Bytes())/float64(tb.MaxKeys()), "bytes/key")
			}
		})
	}
}
