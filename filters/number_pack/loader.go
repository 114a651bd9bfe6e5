package numberpack

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/internal/packfile"
)

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
		if packfile.SameVersion(st, l.seen[i]) {
			continue
		}
		if l.complete {
			if h, err := packfile.HashFile(p.path); err == nil && h == l.hashes[i] {
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

// close stops the loader (a load in progress is abandoned within a chunk), waits
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
