package numberpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/internal/bytesconv"
	"github.com/floodgate/floodgate/internal/packfile"
)

// How the pack cache is kept from losing entries (bigcache #239, #267: entries vanish
// early when LifeWindow, CleanWindow or the per-shard size limit bite):
//
//   - LifeWindow is the longest Duration and CleanWindow is 0: no entry ever expires and
//     no cleaner goroutine runs. (LifeWindow 0 would expire every entry one second after
//     it was set, on the next Set in its shard - during a long load.)
//   - HardMaxCacheSize is split evenly across shards, so one unlucky shard evicts while
//     the cache as a whole has room. The loader knows every number before it creates the
//     cache, so it counts the bytes each shard will hold and sizes every shard's queue
//     for the fullest one: the queue is allocated once, never grows, never wraps. The hard
//     limit is 25% above that, a guard that is never reached.
//   - Keys are the canonical decimal numbers and the Hasher is a bijection of the number
//     (murmur3's finalizer): two numbers can never share a hash, so a Set can never
//     replace another number's entry (bigcache keys its index by hash alone).
//   - The cache is written only while it is built, before it serves; after the swap no
//     Set runs, so the eviction paths (which bigcache runs inside Set) never run either.
//   - And it is checked: OnRemoveWithReason counts removals during the load, and after it
//     the cache must hold exactly the distinct numbers read. Any loss throws the new cache
//     away (number_pack_loads_total{result="evicted"}); the previous one keeps serving.

// numberHasher is the bigcache Hasher of the pack caches: keys are canonical decimal user
// numbers, hashed as a bijection of their value.
type numberHasher struct{}

func (numberHasher) Sum64(key string) uint64 {
	var n uint64
	for i := 0; i < len(key); i++ {
		n = n*10 + uint64(key[i]-'0')
	}
	return hashNumber(n)
}

// hashNumber is murmur3's fmix64 of n+1: a bijection on uint64 (each step is invertible),
// so distinct numbers never collide. fmix64(0) = 0 and bigcache reads a zero hash as
// "deleted", so the +1 moves the zero hash to n = MaxUint64, which is not a user number
// (reservedNumber).
func hashNumber(n uint64) uint64 {
	n++
	n ^= n >> 33
	n *= 0xff51afd7ed558ccd
	n ^= n >> 33
	n *= 0xc4ceb9fe1a85ec53
	n ^= n >> 33
	return n
}

// reservedNumber is the one number the caches cannot hold (its hash is 0).
const reservedNumber = math.MaxUint64

// canonical returns the user number in b as the caches key it: 1 to 20 digits, no sign
// or spaces, fitting a uint64, without leading zeros ("007" is 7). It does not allocate:
// the result is a sub-slice of b.
func canonical(b []byte) ([]byte, bool) {
	n, ok := packfile.ParseNumber(b)
	if !ok || n == reservedNumber {
		return nil, false
	}
	for len(b) > 1 && b[0] == '0' {
		b = b[1:]
	}
	return b, true
}

// generation is one loaded state of a route's pack files: a bigcache holding every
// number of every pack once, with a value of width bytes: the little-endian bitmask of
// the packs it is in (bit i = paths[i]). With a single pack the value is empty (width 0:
// being there is the answer), which saves bigcache's value copy on every hit. It is
// immutable once built and may be shared by the loaders of successive configurations.
type generation struct {
	cache  *bigcache.BigCache
	paths  []string
	files  []fileVersion
	counts []int // distinct numbers per pack
	width  int
	total  int // distinct numbers
	took   time.Duration
	refs   atomic.Int32
}

// lookup returns the bitmask of key (a canonical number), 0 if it is in no pack.
// bigcache's Get copies the stored key (to compare it) and the value: on a hit, one
// small allocation with one pack (empty value), two with several; none on a miss.
// v3.1.0 has no copy-free read (GetWithInfo copies the same).
func (g *generation) lookup(key []byte) uint64 {
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

func (g *generation) acquire() { g.refs.Add(1) }

// release drops a loader's hold; the last one closes the cache. Close only stops
// bigcache's cleaner (none runs here), so a request still reading the generation after
// its loader retired is safe; the memory goes back when the last reader is gone.
func (g *generation) release() {
	if g.refs.Add(-1) == 0 {
		g.cache.Close()
	}
}

// view is what a filter's requests read: a generation, and how its pack bits map to the
// filter's (nil remap: the same). known is the filter's packs the view can answer for:
// all of them, or - right after a configuration added a pack - only the packs carried
// over from the previous configuration until the new load completes.
type view struct {
	gen   *generation
	remap []uint64
	known uint64
}

func (v *view) lookup(key []byte) uint64 {
	m := v.gen.lookup(key)
	if v.remap == nil || m == 0 {
		return m
	}
	var out uint64
	for m != 0 {
		out |= v.remap[bits.TrailingZeros64(m)]
		m &= m - 1
	}
	return out
}

// rebase makes a view of g for a filter with packs, matching packs by file path (the
// name may differ). It returns nil when g holds none of them.
func rebase(g *generation, packs []packSpec) *view {
	v := &view{gen: g}
	identity := len(g.paths) == len(packs)
	remap := make([]uint64, len(g.paths))
	for j, path := range g.paths {
		for i, p := range packs {
			if p.path == path {
				remap[j] |= 1 << uint(i)
				v.known |= 1 << uint(i)
			}
		}
		identity = identity && remap[j] == 1<<uint(j)
	}
	if v.known == 0 {
		return nil
	}
	if !identity {
		v.remap = remap
	}
	g.acquire()
	return v
}

// fileVersion is what a pack file was when it was read.
type fileVersion struct {
	info os.FileInfo
	hash uint64 // xxhash64 of the file's bytes
}

func sameStat(a, b os.FileInfo) bool {
	return a != nil && b != nil && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

var errStopped = errors.New("number_pack: loader stopped")

// errEvicted marks a load whose cache lost entries while it was filled.
var errEvicted = errors.New("the cache lost entries while loading")

// loadWorkers is how many goroutines fill a cache: half the CPUs, so that a reload
// during the event leaves the other half to the traffic.
var loadWorkers = func() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Shard counts: about 8Ki numbers per shard, between 16 and 1024 shards.
const (
	minShards       = 16
	maxShards       = 1024
	numbersPerShard = 8 << 10
	// hintPerShard is the initial hashmap size per shard. bigcache sizes both its index
	// and its (unused here) stats map from MaxEntriesInWindow/Shards, so a large hint
	// would cost a second, empty index; the index grows as entries come instead.
	hintPerShard = 64
	entryHeader  = 8 + 8 + 2 // bigcache's timestamp, hash and key length
)

func shardCount(n int) int {
	s := minShards
	for s < maxShards && s*numbersPerShard < n {
		s <<= 1
	}
	return s
}

// queueBytes is how many bytes bigcache's queue takes for one entry of a keyLen-byte key
// and a width-byte value (its varint length header included).
func queueBytes(keyLen, width int) int {
	l := entryHeader + keyLen + width
	switch {
	case l < 127:
		return l + 1
	case l < 16382:
		return l + 2
	}
	return l + 3
}

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

// loadGeneration reads every pack file and builds a new, complete generation beside
// whatever is serving. It checks stop between files and every 64Ki numbers.
func loadGeneration(packs []packSpec, stop <-chan struct{}) (*generation, error) {
	return buildGeneration(packs, stop, 1)
}

// buildGeneration is loadGeneration with the shards sized at undersize times what they
// need (1 in production; tests shrink them to force losses).
func buildGeneration(packs []packSpec, stop <-chan struct{}, undersize float64) (*generation, error) {
	start := time.Now()
	g := &generation{width: (len(packs) + 7) / 8}
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

	// Fill: loadWorkers goroutines, each a contiguous range of shards (no two touch the
	// same shard, so they never wait on each other's locks).
	workers := min(loadWorkers(), shards)
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
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileVersion{}, err
	}
	defer fh.Close()
	before, err := fh.Stat()
	if err != nil {
		return nil, fileVersion{}, err
	}
	h := xxhash.New()
	ns := make([]uint64, 0, before.Size()/10+16) // a 9-10 digit number and '\n' per line
	k := 0
	_, err = packfile.ReadFrom(io.TeeReader(fh, h), path, func(n uint64) error {
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
	if _, err := io.Copy(h, fh); err != nil { // bytes after a gzip stream's end
		return nil, fileVersion{}, fmt.Errorf("%s: %w", path, err)
	}
	after, err := os.Stat(path)
	if err != nil {
		return nil, fileVersion{}, err
	}
	if !sameStat(before, after) {
		return nil, fileVersion{}, fmt.Errorf("%s changed while it was read", path)
	}
	slices.Sort(ns)
	ns = slices.Compact(ns)
	return ns, fileVersion{info: after, hash: h.Sum64()}, nil
}

// hashFile returns the xxhash64 of the file's bytes.
func hashFile(path string) (uint64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	h := xxhash.New()
	if _, err := io.Copy(h, fh); err != nil {
		return 0, err
	}
	return h.Sum64(), nil
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// packSpec is one pack of a filter: its name and absolute file path.
type packSpec struct{ name, path string }

// loader keeps a filter's packs loaded: it loads them in the background, checks the
// files every `every` and, when one has a new version, loads all of them into a new
// generation beside the serving one and swaps it in with one atomic store.
type loader struct {
	packs []packSpec
	full  uint64
	every time.Duration
	log   *zap.Logger
	m     *filterMetrics

	cur atomic.Pointer[view]

	// Owned by the loader goroutine:
	seen   []os.FileInfo // each file's stat at the last load attempt (or check)
	hashes []uint64      // each file's hash in the serving generation (complete only)
	// complete: cur answers for every pack: loaded by this loader, or carried over
	// whole from the previous configuration (possibly with its bits remapped).
	complete bool
	lastErr  string

	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool
	once    sync.Once
}

func newLoader(packs []packSpec, every time.Duration, log *zap.Logger, m *filterMetrics, seed *view) *loader {
	l := &loader{
		packs:  packs,
		full:   fullMask(len(packs)),
		every:  every,
		log:    log,
		m:      m,
		seen:   make([]os.FileInfo, len(packs)),
		hashes: make([]uint64, len(packs)),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if seed != nil {
		if v := rebase(seed.gen, packs); v != nil {
			l.cur.Store(v)
			if v.known == l.full { // every pack carried over (maybe renamed or reordered)
				l.complete = true
				for i, p := range packs {
					j := slices.Index(seed.gen.paths, p.path)
					l.seen[i] = seed.gen.files[j].info
					l.hashes[i] = seed.gen.files[j].hash
				}
			}
		}
	}
	return l
}

// current returns the serving view (nil before the first load).
func (l *loader) current() *view { return l.cur.Load() }

func (l *loader) start() {
	l.started.Store(true)
	go l.run()
}

func (l *loader) run() {
	defer close(l.done)
	if l.complete {
		l.m.loaded.Set(1)
	} else {
		l.m.loaded.Set(0)
		l.load()
	}
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.check()
		}
	}
}

// check loads the packs again when a file has a new version: its size, mtime or inode
// changed and its bytes hash differently from the serving generation's. A file that
// is touched but not changed costs one read and no load. A failed load is retried when
// a file changes again (a broken file is not re-read every check).
func (l *loader) check() {
	changed := false
	for i, p := range l.packs {
		st, err := os.Stat(p.path)
		if err != nil {
			l.report(fmt.Errorf("pack %s: %w", p.name, err))
			continue
		}
		if sameStat(st, l.seen[i]) {
			continue
		}
		if l.complete {
			if h, err := hashFile(p.path); err == nil && h == l.hashes[i] {
				l.seen[i] = st // touched, same content
				continue
			}
		}
		changed = true
	}
	if changed {
		l.load()
	}
}

// testHookLoad, if set, runs at the start of every load (tests use it to hold a load).
var testHookLoad atomic.Pointer[func()]

func (l *loader) load() {
	if h := testHookLoad.Load(); h != nil {
		(*h)()
	}
	for i, p := range l.packs { // what this attempt reads; a failure is retried when it changes
		l.seen[i], _ = os.Stat(p.path)
	}
	g, err := loadGeneration(l.packs, l.stop)
	if errors.Is(err, errStopped) {
		return
	}
	if err != nil {
		if errors.Is(err, errEvicted) {
			l.m.loadEvicted.Inc()
		} else {
			l.m.loadError.Inc()
		}
		l.report(err)
		return
	}
	g.refs.Store(1)
	old := l.cur.Swap(&view{gen: g, known: l.full})
	if old != nil {
		old.gen.release()
	}
	l.complete = true
	l.lastErr = ""
	for i, fv := range g.files {
		l.seen[i], l.hashes[i] = fv.info, fv.hash
		l.m.numbers[i].Set(float64(g.counts[i]))
	}
	l.m.loadOK.Inc()
	l.m.entries.Set(float64(g.total))
	l.m.loadSeconds.Set(g.took.Seconds())
	l.m.loaded.Set(1)
	l.log.Info("number_pack: packs loaded", zap.Int("packs", len(l.packs)), zap.Int("numbers", g.total),
		zap.Ints("per_pack", g.counts), zap.Duration("took", g.took))
}

// report logs a load or check error once until it changes.
func (l *loader) report(err error) {
	if msg := err.Error(); msg != l.lastErr {
		l.lastErr = msg
		what := "membership is unknown until they load (on_unknown applies)"
		if l.cur.Load() != nil {
			what = "the loaded packs keep serving"
		}
		l.log.Error("number_pack: cannot load packs; "+what, zap.Error(err))
	}
}

// close stops the loader (a load in progress is abandoned within 64Ki numbers), waits
// for it, and drops its hold on the serving generation. Safe to call more than once.
func (l *loader) close() { l.shutdown(true) }

// shutdown is close; without wait it only signals and lets a goroutine finish (for the
// runtime's cleanup goroutine, which must not block).
func (l *loader) shutdown(wait bool) {
	l.once.Do(func() {
		close(l.stop)
		finish := func() {
			if l.started.Load() {
				<-l.done
			}
			if v := l.cur.Load(); v != nil {
				v.gen.release()
			}
		}
		if wait {
			finish()
		} else {
			go finish()
		}
	})
}
