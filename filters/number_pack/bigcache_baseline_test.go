package numberpack

// The bigcache store that held bulk-loaded packs until the Set replaced it, kept as the
// baseline of BenchmarkPack (the same data in both, measured in one run) and of the
// tests that check it still answers like the Set. One bigcache per route: one entry per
// distinct number, its value the bitmask of the route's packs holding it; sized exactly
// before it is filled so that it never evicts (bigcache #239, #267).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/floodgate/floodgate/internal/bytesconv"
	"github.com/floodgate/floodgate/internal/packfile"
)

// cacheGeneration is one loaded state of a route's pack files: a bigcache holding every
// number of every pack once, with a value of width bytes: the little-endian bitmask of
// the packs it is in (bit i = paths[i]). With a single pack the value is empty (width 0:
// being there is the answer), which saves bigcache's value copy on every hit. It is
// immutable once built and may be shared by the loaders of successive configurations.
type cacheGeneration struct {
	cache  *bigcache.BigCache
	paths  []string
	files  []fileVersion
	counts []int // distinct numbers per pack
	width  int
	total  int // distinct numbers
	took   time.Duration
}

// lookup returns the bitmask of key (a canonical number), 0 if it is in no pack.
// bigcache's Get copies the stored key (to compare it) and the value: on a hit, one
// small allocation with one pack (empty value), two with several; none on a miss.
// v3.1.0 has no copy-free read (GetWithInfo copies the same).
func (g *cacheGeneration) lookup(key []byte) uint64 {
	v, err := g.cache.Get(bytesconv.String(key))
	if err != nil {
		return 0
	}
	if g.width == 0 {
		return 1
	}
	var m uint64
	for i := len(v) - 1; i >= 0; i-- {
		m = m<<8 | uint64(v[i])
	}
	return m
}

// errEvicted marks a load whose cache lost entries while it was filled.
var errEvicted = errors.New("the cache lost entries while loading")

// cacheLoadWorkers is how many goroutines fill a cache: half the CPUs, so that a reload
// during the event leaves the other half to the traffic.
var cacheLoadWorkers = func() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Shard counts: about 8Ki numbers per shard, between 16 and 1024 shards.
func decimalLen(n uint64) int {
	l := 1
	for n >= 10 {
		n /= 10
		l++
	}
	return l
}

// merged walks the sorted, distinct numbers of several packs in order, each number once
// with the bitmask of the packs holding it.
type merged struct {
	nums [][]uint64
	pos  []int
}

func newMerged(nums [][]uint64) *merged { return &merged{nums: nums, pos: make([]int, len(nums))} }

func (m *merged) next() (n, mask uint64, ok bool) {
	for i, ns := range m.nums {
		if p := m.pos[i]; p < len(ns) && (!ok || ns[p] < n) {
			n, ok = ns[p], true
		}
	}
	if !ok {
		return 0, 0, false
	}
	for i, ns := range m.nums {
		if p := m.pos[i]; p < len(ns) && ns[p] == n {
			mask |= 1 << uint(i)
			m.pos[i]++
		}
	}
	return n, mask, true
}

func (m *merged) rewind() { clear(m.pos) }

// loadCacheGeneration reads every pack file and builds a new, complete generation beside
// whatever is serving. It checks stop between files and every 64Ki numbers.
func loadCacheGeneration(packs []packSpec, stop <-chan struct{}) (*cacheGeneration, error) {
	return buildCacheGeneration(packs, stop, 1)
}

// buildCacheGeneration is loadCacheGeneration with the shards sized at undersize times what they
// need (1 in production; tests shrink them to force losses).
func buildCacheGeneration(packs []packSpec, stop <-chan struct{}, undersize float64) (*cacheGeneration, error) {
	start := time.Now()
	g := &cacheGeneration{width: (len(packs) + 7) / 8}
	if len(packs) == 1 {
		g.width = 0
	}
	nums := make([][]uint64, len(packs))
	total := 0
	for i, p := range packs {
		ns, fv, err := readPack(p.path, stop)
		if err != nil {
			return nil, err
		}
		nums[i] = ns
		g.paths = append(g.paths, p.path)
		g.files = append(g.files, fv)
		g.counts = append(g.counts, len(ns))
		total += len(ns)
	}

	// Size every shard for what it will hold, and group the numbers by shard (a counting
	// sort): filling one shard at a time keeps its index and queue in the CPU cache,
	// several times faster than scattering 10M Sets across all shards.
	shards := shardCount(total)
	shardOf := func(n uint64) int { return int(hashNumber(n) & uint64(shards-1)) }
	perShard := make([]int, shards)
	start0 := make([]int, shards+1)
	m := newMerged(nums)
	for n, _, ok := m.next(); ok; n, _, ok = m.next() {
		s := shardOf(n)
		perShard[s] += queueBytes(decimalLen(n), g.width)
		start0[s+1]++
		g.total++
	}
	for s := 1; s <= shards; s++ {
		start0[s] += start0[s-1]
	}
	order := make([]uint64, g.total)
	var masks []uint64
	if len(packs) > 1 {
		masks = make([]uint64, g.total)
	}
	fill := slices.Clone(start0[:shards])
	m.rewind()
	for n, mask, ok := m.next(); ok; n, mask, ok = m.next() {
		s := shardOf(n)
		order[fill[s]] = n
		if masks != nil {
			masks[fill[s]] = mask
		}
		fill[s]++
	}
	nums, m = nil, nil // let the GC have the per-pack slices while the cache fills

	maxShard := int(float64(slices.Max(perShard)+64) * undersize) // +64: the queue's margins
	entrySize := (maxShard + hintPerShard - 1) / hintPerShard
	hardMB := (shards*entrySize*hintPerShard*5/4 + 1<<20 - 1) >> 20
	if undersize != 1 {
		hardMB = max(1, (shards*entrySize*hintPerShard)>>20)
	}
	var removed atomic.Int64
	cache, err := bigcache.New(context.Background(), bigcache.Config{
		Shards:             shards,
		LifeWindow:         time.Duration(math.MaxInt64),
		CleanWindow:        0,
		MaxEntriesInWindow: shards * hintPerShard,
		MaxEntrySize:       entrySize,
		HardMaxCacheSize:   hardMB,
		Hasher:             numberHasher{},
		OnRemoveWithReason: func(string, []byte, bigcache.RemoveReason) { removed.Add(1) },
		Logger:             nopLogger{},
	})
	if err != nil {
		return nil, err
	}

	// Fill: cacheLoadWorkers goroutines, each a contiguous range of shards (no two touch the
	// same shard, so they never wait on each other's locks).
	workers := min(cacheLoadWorkers(), shards)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var key [20]byte
			var val [8]byte
			val[0] = 1
			from, to := start0[shards*w/workers], start0[shards*(w+1)/workers]
			for i := from; i < to; i++ {
				if (i-from)&0xffff == 0xffff && stopped(stop) {
					errs[w] = errStopped
					return
				}
				if masks != nil {
					for b := 0; b < g.width; b++ {
						val[b] = byte(masks[i] >> (8 * b))
					}
				}
				if err := cache.Set(bytesconv.String(strconv.AppendUint(key[:0], order[i], 10)), val[:g.width]); err != nil {
					errs[w] = fmt.Errorf("%w: %v", errEvicted, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, errStopped) {
			return nil, errStopped
		}
		return nil, err
	}
	if r := removed.Load(); r > 0 || cache.Len() != g.total {
		return nil, fmt.Errorf("%w: %d of %d numbers missing, %d removed", errEvicted, g.total-cache.Len(), g.total, r)
	}
	g.cache = cache
	g.took = time.Since(start)
	return g, nil
}

// readPack reads one pack file into a sorted, distinct slice, with the file's version.
// A file replaced or modified while it was read is an error (the next check retries).
func readPack(path string, stop <-chan struct{}) ([]uint64, fileVersion, error) {
	f, err := packfile.Open(path)
	if err != nil {
		return nil, fileVersion{}, err
	}
	defer f.Close()
	h := packfile.NewHasher()
	ns := make([]uint64, 0, f.Info().Size()/10+16) // a 9-10 digit number and '\n' per line
	k := 0
	_, err = f.Numbers(h, func(n uint64) error {
		if k++; k&0xffff == 0 && stopped(stop) {
			return errStopped
		}
		if n == reservedNumber {
			return fmt.Errorf("%s: number %d is reserved (not a user number)", path, n)
		}
		ns = append(ns, n)
		return nil
	})
	if err != nil {
		return nil, fileVersion{}, err
	}
	after, err := f.Unchanged()
	if err != nil {
		return nil, fileVersion{}, err
	}
	slices.Sort(ns)
	ns = slices.Compact(ns)
	return ns, fileVersion{info: after, hash: h.Sum64()}, nil
}
