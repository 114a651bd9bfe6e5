package numberpack

import (
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters/filtertest"
	"github.com/floodgate/floodgate/internal/packfile"
)

// Big packs for the benchmarks are generated once per test binary in a temp directory
// (never committed) and removed by TestMain.
var (
	bigDir     string
	bigDirOnce sync.Once
	bigFiles   = map[int]string{}
	bigMu      sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// bigPack returns the path of a pack of n distinct 10-digit numbers (spreadNumbers).
func bigPack(b *testing.B, n int) string {
	bigDirOnce.Do(func() {
		d, err := os.MkdirTemp("", "floodgate-number-pack-bench-")
		if err != nil {
			b.Fatal(err)
		}
		bigDir = d
	})
	bigMu.Lock()
	defer bigMu.Unlock()
	if p, ok := bigFiles[n]; ok {
		return p
	}
	start := time.Now()
	p := writePack(b, bigDir, "pack-"+strconv.Itoa(n)+".txt", spreadNumbers(n, 0), false)
	st, _ := os.Stat(p)
	b.Logf("generated %s: %d numbers, %d MB in %v", p, n, st.Size()>>20, time.Since(start).Round(time.Millisecond))
	bigFiles[n] = p
	return p
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// keys returns canonical keys of k random members and k random non-members of
// spreadNumbers(n, 0).
func keys(n, k int) (members, others [][]byte) {
	rng := rand.New(rand.NewPCG(7, 8))
	all := spreadNumbers(n, 0)
	for i := 0; i < k; i++ {
		members = append(members, strconv.AppendUint(nil, all[rng.IntN(n)], 10))
		others = append(others, strconv.AppendUint(nil, spreadNumbers(1, uint64(n+rng.IntN(1<<30)))[0], 10))
	}
	return members, others
}

// BenchmarkPack is the pack cache at 1M and 10M numbers: load time and memory per number
// (reported), then lookups of random members and non-members, beside a plain
// map[uint64]uint64 holding the same numbers. Run with -bench Pack -benchtime 1x for the
// loads (one load per size); the lookups use the usual benchtime.
func BenchmarkPack(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		name := strconv.Itoa(n/1_000_000) + "M"
		path := bigPack(b, n)
		members, others := keys(n, 4096)

		var g *generation
		b.Run(name+"/bigcache/load", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				g = nil
				before := heapInUse()
				start := time.Now()
				var err error
				g, err = loadGeneration([]packSpec{{"big", path}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				b.ReportMetric(took.Seconds(), "s/load")
				b.ReportMetric(float64(heapInUse()-before)/float64(g.total), "B/number")
			}
			b.StopTimer()
			// No decision flips: every number is a member, the non-members are not.
			var key []byte
			for _, x := range spreadNumbers(n, 0) {
				key = strconv.AppendUint(key[:0], x, 10)
				if g.lookup(key) != 1 {
					b.Fatalf("number %d missing after the load", x)
				}
			}
			for _, k := range others {
				if g.lookup(k) != 0 {
					b.Fatalf("non-member %s found", k)
				}
			}
		})
		if g == nil {
			continue
		}
		b.Run(name+"/bigcache/lookup_member", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				g.lookup(members[i&4095])
				i++
			}
		})
		b.Run(name+"/bigcache/lookup_nonmember", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				g.lookup(others[i&4095])
				i++
			}
		})
		b.Run(name+"/bigcache/lookup_member_parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(4096)
				for pb.Next() {
					g.lookup(members[i&4095])
					i++
				}
			})
		})
		g = nil

		var m map[uint64]uint64
		b.Run(name+"/map/load", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m = nil
				before := heapInUse()
				start := time.Now()
				m = make(map[uint64]uint64)
				if _, err := packfile.Read(path, func(x uint64) error { m[x] |= 1; return nil }); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/load")
				b.ReportMetric(float64(heapInUse()-before)/float64(len(m)), "B/number")
			}
		})
		memberNums, otherNums := make([]uint64, 4096), make([]uint64, 4096)
		for i := range members {
			memberNums[i], _ = packfile.ParseNumber(members[i])
			otherNums[i], _ = packfile.ParseNumber(others[i])
		}
		b.Run(name+"/map/lookup_member", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				n, _ := packfile.ParseNumber(members[i&4095]) // the same parse the cache's key needs
				_ = m[n]
				i++
			}
		})
		b.Run(name+"/map/lookup_nonmember", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				n, _ := packfile.ParseNumber(others[i&4095])
				_ = m[n]
				i++
			}
		})
		m = nil
	}
}

// BenchmarkDecide is the whole filter on a 1M-number pack with random users. Each
// goroutine reuses one request (as a connection does) and sets its uin per iteration
// (about 10 ns of the figure).
func BenchmarkDecide(b *testing.B) {
	const n = 1_000_000
	path := bigPack(b, n)
	members, others := keys(n, 4096)
	for _, mode := range []string{"require", "annotate"} {
		f := build(b, "mode: "+mode+"\npacks: {big: {file: "+yamlQuote(path)+"}}", nil)
		waitLoaded(b, f)
		for _, set := range []struct {
			name string
			keys [][]byte
		}{{"member", members}, {"nonmember", others}} {
			b.Run(mode+"/"+set.name, func(b *testing.B) {
				r := filtertest.NewRequest(b, filtertest.Req{URI: "/grant?uin=1"})
				args := r.Ctx.QueryArgs()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					args.SetBytesV("uin", set.keys[i&4095])
					f.Decide(r)
					i++
				}
			})
			b.Run(mode+"/"+set.name+"_parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					r := filtertest.NewRequest(b, filtertest.Req{URI: "/grant?uin=1"})
					args := r.Ctx.QueryArgs()
					i := rand.IntN(4096)
					for pb.Next() {
						args.SetBytesV("uin", set.keys[i&4095])
						f.Decide(r)
						i++
					}
				})
			})
		}
		f.Close()
	}
}
