package numberpack

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Bulk-loaded packs live in packfile.Sets (one cache line per lookup, ~3.3 bytes per
// 10-digit number, lookups without allocation or lock), one per pack file, shared by
// every route that names the same file at the same version (registry.go). bigcache is
// kept where it serves: the read-through cache of the packs service (service.go), whose
// keys are the canonical decimal numbers hashed by numberHasher (number.go), and the
// string packs (keyset.go).
//
// This file is what requests read: a generation (the sets of one load) and a filter's
// view of it. load.go reads pack files into sets, loader.go keeps them loaded and swaps
// in new versions.

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

// maxProbes is how many of a generation's packs a lookup starts early (probe).
const maxProbes = 4

// probes are the first words of a number's lines in a generation's first maxProbes sets
// (packfile.Set.First).
type probes [maxProbes]uint64

// probe starts a lookup of n: it reads n's line in each of the first maxProbes sets, so
// that the caller's other work overlaps the reads; lookupProbed ends it.
func (g *generation) probe(n uint64, p *probes) {
	for i, s := range g.sets[:min(len(g.sets), maxProbes)] {
		p[i] = s.set.First(n)
	}
}

// lookupProbed is lookup given probe(n, p).
func (g *generation) lookupProbed(n uint64, p *probes) uint64 {
	var m uint64
	for i, s := range g.sets {
		var in bool
		if i < maxProbes {
			in = s.set.ContainsFirst(n, p[i])
		} else {
			in = s.set.Contains(n)
		}
		if in {
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

// lookupProbed is lookup given v.gen.probe(n, p).
func (v *view) lookupProbed(n uint64, p *probes) uint64 {
	return v.remapped(v.gen.lookupProbed(n, p))
}

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
