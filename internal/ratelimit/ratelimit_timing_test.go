package ratelimit

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

func BenchmarkBucket(b *testing.B) {
	lim := NewLimit(20000, 2000)
	b.Run("serial", func(b *testing.B) {
		var bk Bucket
		now := s
		for b.Loop() {
			now += 10_000
			bk.Reserve(now, lim, 0)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var bk Bucket
		var clock atomic.Int64
		clock.Store(s)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bk.Reserve(clock.Add(10_000), lim, 0)
			}
		})
	})
}

// BenchmarkTable: keys drawn at random from 1M distinct ones, one request per
// microsecond of fake time (each key comes back about once a second), 10/s and burst 1
// per key (a key is live for 100ms after a request: about 95,000 live keys), in a table
// for max_keys = 128Ki (1 MiB).
func BenchmarkTable(b *testing.B) {
	const distinct = 1 << 20
	const maxKeys = 1 << 17
	lim := NewLimit(10, 1)
	key := func(rng *rand.Rand) uint64 { return hk(rng.Uint64N(distinct)) } // 1M keys, no table of them
	b.Run("random-keys/serial", func(b *testing.B) {
		tbl := NewTable(maxKeys)
		now := s
		rng := rand.New(rand.NewPCG(5, 6))
		for b.Loop() {
			now += 1000
			tbl.Reserve(key(rng), now, lim, 0)
		}
		b.ReportMetric(float64(tbl.Bytes())/maxKeys, "bytes/key")
	})
	b.Run("random-keys/parallel", func(b *testing.B) {
		tbl := NewTable(maxKeys)
		var clock atomic.Int64
		clock.Store(s)
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seed.Add(1), 7))
			for pb.Next() {
				tbl.Reserve(key(rng), clock.Add(1000), lim, 0)
			}
		})
		b.ReportMetric(float64(tbl.Bytes())/maxKeys, "bytes/key")
	})
	b.Run("one-key/parallel", func(b *testing.B) {
		tbl := NewTable(maxKeys)
		var clock atomic.Int64
		clock.Store(s)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tbl.Reserve(42, clock.Add(1000), lim, 0)
			}
		})
	})
}
