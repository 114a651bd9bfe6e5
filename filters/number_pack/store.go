package numberpack

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/internal/packfile"
)

// Bulk-loaded packs live in packfile.Sets (sorted low bits in buckets, ~2.2 bytes per
// 10-digit number, lookups without allocation or lock), one per pack file, shared by
// every route that names the same file at the same version (registry.go). bigcache is
// kept where it serves: the read-through cache of the packs service (service.go), whose
// keys are the canonical decimal numbers hashed by numberHasher.

// numberHasher is the bigcache Hasher of the service's answer cache: keys are canonical decimal user
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

// canonical returns the user number in b as the caches key it - 1 to 20 digits, no sign
// or spaces, fitting a uint64, without leading zeros ("007" is 7) - and its value. It
// does not allocate: the result is a sub-slice of b.
func canonical(b []byte) ([]byte, uint64, bool) {
	n, ok := packfile.ParseNumber(b)
	if !ok || n == reservedNumber {
		return nil, 0, false
	}
	for len(b) > 1 && b[0] == '0' {
		b = b[1:]
	}
	return b, n, true
}

// generation is one loaded state of a route's pack files: one shared Set per pack file
// (bit i of a lookup's mask = paths[i]). It is immutable once built and may be shared by
// the loaders of successive configurations; its sets may also be shared with other
// routes naming the same files (see registry.go).
type generation struct {
	sets   []*sharedSet
	paths  []string
	files  []fileVersion
	counts []int // distinct numbers per pack
	total  int   // distinct numbers over all packs (a number in two packs counts twice)
	took   time.Duration
	refs   atomic.Int32
}

// lookup returns the bitmask of the number packs holding n, 0 if none. It reads each
// pack's set once and allocates nothing.
func (g *generation) lookup(n uint64) uint64 {
	var m uint64
	for i, s := range g.sets {
		if s.set.Contains(n) { // nil (a string pack) contains nothing
			m |= 1 << uint(i)
		}
	}
	return m
}

// lookupKey returns the bitmask of the packs holding key: string packs by the key as
// sent, number packs by its value when it is a user number (num).
func (g *generation) lookupKey(key []byte, n uint64, num bool) uint64 {
	var m uint64
	for i, s := range g.sets {
		if s.keys != nil {
			if s.keys.has(key) {
				m |= 1 << uint(i)
			}
		} else if num && s.set.Contains(n) {
			m |= 1 << uint(i)
		}
	}
	return m
}

func (g *generation) acquire() { g.refs.Add(1) }

// release drops a loader's hold; the last one gives the generation's sets back to the
// registry. A request still reading the generation after its loader retired is safe:
// the sets are immutable and the memory goes back when the last reader is gone.
func (g *generation) release() {
	if g.refs.Add(-1) == 0 {
		for _, s := range g.sets {
			s.release()
		}
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

func (v *view) lookup(n uint64) uint64 { return v.remapped(v.gen.lookup(n)) }

// lookupKey is lookup with string packs (see generation.lookupKey).
func (v *view) lookupKey(key []byte, n uint64, num bool) uint64 {
	return v.remapped(v.gen.lookupKey(key, n, num))
}

func (v *view) remapped(m uint64) uint64 {
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

// rebase makes a view of g for a filter with packs, matching packs by file path and key
// kind (the name may differ). It returns nil when g holds none of them.
func rebase(g *generation, packs []packSpec) *view {
	v := &view{gen: g}
	identity := len(g.paths) == len(packs)
	remap := make([]uint64, len(g.paths))
	for j, path := range g.paths {
		for i, p := range packs {
			if p.path == path && p.strings == g.sets[j].key.strings {
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

// loadGeneration takes every pack file's set from the registry (loading the files that
// no route holds at their current version) and builds a new generation beside whatever
// is serving. A load checks stop between files and every 64Ki numbers.
func loadGeneration(packs []packSpec, stop <-chan struct{}) (*generation, error) {
	start := time.Now()
	g := &generation{}
	for _, p := range packs {
		s, err := acquireSet(p.path, p.strings, stop)
		if err != nil {
			for _, s := range g.sets {
				s.release()
			}
			return nil, err
		}
		g.sets = append(g.sets, s)
		g.paths = append(g.paths, p.path)
		g.files = append(g.files, s.fv)
		g.counts = append(g.counts, s.len())
		g.total += s.len()
	}
	g.took = time.Since(start)
	return g, nil
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

// packSpec is one pack of a filter: its name, absolute file path and whether its keys
// are strings (keys: string) rather than user numbers.
type packSpec struct {
	name, path string
	strings    bool
}

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
					j := slices.IndexFunc(seed.gen.sets, func(s *sharedSet) bool { return s.key.path == p.path && s.key.strings == p.strings })
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
		l.m.loadError.Inc()
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
