package numberpack

import (
	"bufio"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters/filtertest"
	"github.com/floodgate/floodgate/internal/cputime"
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

// keyPool is how many random keys the lookup benchmarks cycle through: 1Mi, so that a
// lookup's cache lines are as cold as a random user's (4096 keys would stay in the CPU
// cache and flatter every store).
const keyPool = 1 << 20

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

// keyTable holds a benchmark's keys in one contiguous []byte, keyStride bytes each (the
// length, then the key), read in order: key i+1 is next to key i, so the CPU's
// prefetcher has it in the cache by the time a request reads it - as a gateway has the
// uin in the request buffer it has just read from the socket. The users stay random (1Mi
// of them: their set lines are cold); only the key bytes are hot. A [][]byte of 1Mi
// separately allocated keys instead costs a cache miss per key before Decide starts
// (~90 ns of the figure, measured with a profile: the copy of the key into the request).
type keyTable []byte

const keyStride = 16

func newKeyTable(keys [][]byte) keyTable {
	t := make(keyTable, len(keys)*keyStride)
	for i, k := range keys {
		if len(k) >= keyStride {
			panic("key too long for the key table: " + string(k))
		}
		t[i*keyStride] = byte(len(k))
		copy(t[i*keyStride+1:], k)
	}
	return t
}

// at returns key i (mod keyPool).
func (t keyTable) at(i int) []byte {
	o := (i & (keyPool - 1)) * keyStride
	return t[o+1 : o+1+int(t[o])]
}

// rss returns the process's resident set (VmRSS of /proc/self/status) after a full GC
// with the freed memory given back to the OS, so that what it counts is what is live.
func rss(tb testing.TB) int64 {
	tb.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	v := procStatus(tb, "VmRSS:")
	if v < 0 {
		tb.Fatal("no VmRSS in /proc/self/status")
	}
	return v
}

// procStatus returns a kB field of /proc/self/status in bytes (-1: none).
func procStatus(tb testing.TB, field string) int64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == field && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	return -1
}

// BenchmarkPack compares the stores for bulk-loaded packs on the same data in one run:
// the Set (this filter), the bigcache store it replaced, and a plain map[uint64]uint64,
// at 1M and 10M numbers: load time, memory per number (heap and resident set, measured
// before and after the load), then lookups of random members and non-members, serial
// and parallel. Run with -benchtime 1x for one load per size (the lookups then run
// once too: add -bench 'Pack/.*/lookup' -benchtime 1s for their figures), e.g.
//
//	flock /tmp/floodgate-bench.lock go test -run XXX -bench 'Pack$' -benchtime 1x ./filters/number_pack/
func BenchmarkPack(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		name := strconv.Itoa(n/1_000_000) + "M"
		path := bigPack(b, n)
		members, others := keys(n, keyPool)
		memberNums, otherNums := make([]uint64, keyPool), make([]uint64, keyPool)
		for i := range members {
			memberNums[i], _ = packfile.ParseNumber(members[i])
			otherNums[i], _ = packfile.ParseNumber(others[i])
		}

		for _, layout := range []string{"lines", "packed"} {
			setBench(b, name+"/set_"+layout, n, path, layout == "lines", otherNums, memberNums)
		}

		var c *cacheGeneration
		b.Run(name+"/bigcache/load", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c = nil
				heap0, rss0 := heapInUse(), rss(b)
				start, cpu0 := time.Now(), cputime.Process()
				var err error
				c, err = loadCacheGeneration([]packSpec{{name: "big", path: path}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/load")
				b.ReportMetric((cputime.Process() - cpu0).Seconds(), "cpu-s/load")
				b.ReportMetric(float64(heapInUse()-heap0)/float64(c.total), "heapB/number")
				b.ReportMetric(float64(rss(b)-rss0)/float64(c.total), "rssB/number")
			}
			b.StopTimer()
			for _, k := range others {
				if c.lookup(k) != 0 {
					b.Fatalf("non-member %s found", k)
				}
			}
		})
		if c != nil {
			lookups(b, name+"/bigcache", func(i int) { c.lookup(members[i&(keyPool-1)]) }, func(i int) { c.lookup(others[i&(keyPool-1)]) })
			c.cache.Close()
			c = nil
		}

		var m map[uint64]uint64
		b.Run(name+"/map/load", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m = nil
				heap0, rss0 := heapInUse(), rss(b)
				start, cpu0 := time.Now(), cputime.Process()
				m = make(map[uint64]uint64)
				if _, err := packfile.Read(path, func(x uint64) error { m[x] |= 1; return nil }); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s/load")
				b.ReportMetric((cputime.Process() - cpu0).Seconds(), "cpu-s/load")
				b.ReportMetric(float64(heapInUse()-heap0)/float64(len(m)), "heapB/number")
				b.ReportMetric(float64(rss(b)-rss0)/float64(len(m)), "rssB/number")
			}
		})
		if m != nil {
			lookups(b, name+"/map", func(i int) { _ = m[memberNums[i&(keyPool-1)]] }, func(i int) { _ = m[otherNums[i&(keyPool-1)]] })
			m = nil
		}
	}
}

// setBench loads the pack at path into a Set (in the line layout when linesOnly, else
// packed), reports the load's time and memory, and runs the lookups.
func setBench(b *testing.B, name string, n int, path string, linesOnly bool, otherNums, memberNums []uint64) {
	var g *generation
	b.Run(name+"/load", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if g != nil {
				g.release()
				g = nil
			}
			heap0, rss0 := heapInUse(), rss(b)
			start, cpu0 := time.Now(), cputime.Process()
			var err error
			packfile.ForceLayout.Store(map[bool]int32{true: packfile.LayoutLines, false: packfile.LayoutPacked}[linesOnly])
			g, err = loadGeneration([]packSpec{{name: "big", path: path}}, nil)
			packfile.ForceLayout.Store(packfile.LayoutAuto)
			if err != nil {
				b.Fatal(err)
			}
			g.refs.Store(1)
			if g.sets[0].set.Packed() == linesOnly {
				b.Fatalf("packed %v, want %v", !linesOnly, linesOnly)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s/load")
			b.ReportMetric((cputime.Process() - cpu0).Seconds(), "cpu-s/load")
			b.ReportMetric(float64(heapInUse()-heap0)/float64(g.total), "heapB/number")
			b.ReportMetric(float64(rss(b)-rss0)/float64(g.total), "rssB/number")
			reportHugePages(b, g)
		}
		b.StopTimer()
		for _, x := range spreadNumbers(n, 0) { // no decision flips
			if g.lookup(x) != 1 {
				b.Fatalf("number %d missing after the load", x)
			}
		}
		for _, x := range otherNums {
			if g.lookup(x) != 0 {
				b.Fatalf("non-member %d found", x)
			}
		}
	})
	if g != nil {
		lookups(b, name, func(i int) { g.lookup(memberNums[i&(keyPool-1)]) }, func(i int) { g.lookup(otherNums[i&(keyPool-1)]) })
		g.release()
		g = nil
	}
}

// reportHugePages reports how much of the generation's sets the kernel backs with huge
// pages (AnonHugePages of their mappings): "hugeMiB" of "mappedMiB".
func reportHugePages(b *testing.B, g *generation) {
	var huge, mapped int64
	for _, s := range g.sets {
		h, m, err := s.set.HugePages()
		if err != nil {
			b.Logf("huge pages: %v", err)
		}
		huge, mapped = huge+h, mapped+m
	}
	b.ReportMetric(float64(huge)/(1<<20), "hugeMiB")
	b.ReportMetric(float64(mapped)/(1<<20), "mappedMiB")
}

// lookups runs a store's member, non-member and parallel member lookups.
func lookups(b *testing.B, name string, member, other func(i int)) {
	b.Run(name+"/lookup_member", func(b *testing.B) {
		b.ReportAllocs()
		cputime.Loop(b, member)
	})
	b.Run(name+"/lookup_nonmember", func(b *testing.B) {
		b.ReportAllocs()
		cputime.Loop(b, other)
	})
	b.Run(name+"/lookup_member_parallel", func(b *testing.B) {
		b.ReportAllocs()
		cputime.Parallel(b, func(pb *testing.PB) {
			i := rand.IntN(keyPool)
			for pb.Next() {
				member(i)
				i++
			}
		})
	})
}

// BenchmarkDecide is the whole filter on a 10M-number pack with random users, the
// pack in the line layout and packed (packfile.Set) in one run. Each
// goroutine reuses one request (as a connection does) and sets its uin per iteration
// (about 10 ns of the figure), from a keyTable read in order (the key's bytes are hot, as
// a request's are; the user is one of 1Mi random ones, so its set line is cold).
func BenchmarkDecide(b *testing.B) {
	const n = 10_000_000
	path := bigPack(b, n)
	members, others := keys(n, keyPool)
	for _, c := range []struct{ layout, mode string }{{"lines", "require"}, {"packed", "require"}, {"lines", "annotate"}} {
		packfile.ForceLayout.Store(map[bool]int32{true: packfile.LayoutLines, false: packfile.LayoutPacked}[c.layout == "lines"])
		mode := c.layout + "/" + c.mode
		f := build(b, "mode: "+c.mode+"\npacks: {big: {file: "+yamlQuote(path)+"}}", nil)
		g := waitLoaded(b, f)
		packfile.ForceLayout.Store(packfile.LayoutAuto)
		if g.sets[0].set.Packed() != (c.layout == "packed") {
			b.Fatalf("%s: packed %v", c.layout, g.sets[0].set.Packed())
		}
		for _, set := range []struct {
			name string
			keys keyTable
		}{{"member", newKeyTable(members)}, {"nonmember", newKeyTable(others)}} {
			b.Run(mode+"/"+set.name, func(b *testing.B) {
				r := filtertest.NewRequest(b, filtertest.Req{URI: "/grant?uin=1"})
				b.ReportAllocs()
				cputime.Loop(b, func(i int) {
					filtertest.SetQueryArg(r, "uin", set.keys.at(i))
					f.Decide(r)
				})
				reportHugePages(b, g)
			})
			b.Run(mode+"/"+set.name+"_parallel", func(b *testing.B) {
				b.ReportAllocs()
				cputime.Parallel(b, func(pb *testing.PB) {
					r := filtertest.NewRequest(b, filtertest.Req{URI: "/grant?uin=1"})
					i := rand.IntN(keyPool)
					for pb.Next() {
						filtertest.SetQueryArg(r, "uin", set.keys.at(i))
						f.Decide(r)
						i++
					}
				})
			})
		}
		f.Close()
	}
}

// BenchmarkAnnotateFresh is annotate mode on requests that arrive without the annotate
// header, as a gateway's requests do (BenchmarkDecide reuses one request, so each of its
// annotate decisions also strips the header the previous one set: a spoofed header,
// ~30 ns of fasthttp's DelBytes). Here every iteration removes the header after the
// decision; "strip_only" does the same iteration with a plain header set in place of
// Decide, so Decide's cost on a fresh request is decide_then_strip - strip_only + the
// cost of one header set (its own). 10M numbers, lines layout, 1Mi random members.
func BenchmarkAnnotateFresh(b *testing.B) {
	const n = 10_000_000
	path := bigPack(b, n)
	members, _ := keys(n, keyPool)
	kt := newKeyTable(members)
	packfile.ForceLayout.Store(packfile.LayoutLines)
	f := build(b, "mode: annotate\npacks: {big: {file: "+yamlQuote(path)+"}}", nil)
	waitLoaded(b, f)
	packfile.ForceLayout.Store(packfile.LayoutAuto)
	defer f.Close()
	for _, variant := range []string{"decide_then_strip", "strip_only"} {
		b.Run(variant, func(b *testing.B) {
			r := filtertest.NewRequest(b, filtertest.Req{URI: "/grant?uin=1"})
			h := &r.Ctx.Request.Header
			val := []byte("big")
			b.ReportAllocs()
			cputime.Loop(b, func(i int) {
				filtertest.SetQueryArg(r, "uin", kt.at(i))
				if variant == "decide_then_strip" {
					f.Decide(r)
				} else {
					h.SetCanonical(f.headerCanon, val)
				}
				h.DelBytes(f.header)
			})
		})
	}
}

// BenchmarkPackLoad100M is the seed's largest scale: a pack of 100M distinct 10-digit
// numbers (1.1 GB of text, generated in a temp directory and removed after) loaded into
// a Set: the load must take under 60 s and the set under 1 GiB resident (VmRSS before
// and after the load). It loads it twice: in the line layout ("lines") and as the
// loader chooses ("auto": packed, the lines being over packfile.PackMinBytes). It runs
// one load each whatever the benchtime; `make bench-packs` runs it.
func BenchmarkPackLoad100M(b *testing.B) {
	const n = 100_000_000
	dir := b.TempDir()
	path := filepath.Join(dir, "pack-100M.txt")
	start := time.Now()
	fh, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	var buf [24]byte
	for i := 0; i < n; i++ { // spreadNumbers(n, 0), streamed: 100M numbers never in memory
		w.Write(append(strconv.AppendUint(buf[:0], 1_000_000_000+(uint64(i)*2_654_435_761)%9_000_000_000, 10), '\n'))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	b.Logf("generated %d numbers, %d MB in %v", n, st.Size()>>20, time.Since(start).Round(time.Millisecond))

	for _, layout := range []struct {
		name  string
		force int32
	}{{"lines", packfile.LayoutLines}, {"auto", packfile.LayoutAuto}} {
		b.Run(layout.name, func(b *testing.B) { load100M(b, path, n, layout.force) })
	}
}

// load100M loads the 100M-number pack at path into a Set, the layout forced (ForceLayout).
func load100M(b *testing.B, path string, n int, force int32) {
	defer packfile.ForceLayout.Store(packfile.LayoutAuto)
	for i := 0; i < b.N; i++ {
		rss0 := rss(b)
		resetPeak := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil // VmHWM := VmRSS
		packfile.ForceLayout.Store(force)
		start, cpu0 := time.Now(), cputime.Process()
		g, err := loadGeneration([]packSpec{{name: "big", path: path}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		took, cpu := time.Since(start), cputime.Process()-cpu0
		packfile.ForceLayout.Store(packfile.LayoutAuto)
		g.refs.Store(1)
		resident := rss(b) - rss0
		b.ReportMetric(took.Seconds(), "s/load")
		b.ReportMetric(cpu.Seconds(), "cpu-s/load")
		b.ReportMetric(float64(resident)/float64(g.total), "rssB/number")
		b.ReportMetric(float64(resident)/(1<<20), "rssMiB")
		if peak := procStatus(b, "VmHWM:"); resetPeak && peak > 0 {
			b.ReportMetric(float64(peak-rss0)/(1<<20), "peakMiB") // the most resident during the load
		}
		b.ReportMetric(float64(g.sets[0].set.Bytes())/float64(g.total), "setB/number")
		reportHugePages(b, g)
		if g.total != n {
			b.Fatalf("%d numbers loaded, want %d", g.total, n)
		}
		for j := 0; j < n; j += 997 { // a sample: every 997th number is a member
			if x := 1_000_000_000 + (uint64(j)*2_654_435_761)%9_000_000_000; g.lookup(x) != 1 {
				b.Fatalf("number %d missing", x)
			}
		}
		b.Logf("100M numbers: load %v (%v of CPU), %d MiB resident", took.Round(time.Millisecond), cpu.Round(time.Millisecond), resident>>20)
		if took > 60*time.Second {
			b.Errorf("100M numbers loaded in %v, the target is under 60 s", took)
		}
		if resident >= 1<<30 {
			b.Errorf("100M numbers take %d MiB resident, the target is under 1 GiB", resident>>20)
		}
		g.release()
	}
}
