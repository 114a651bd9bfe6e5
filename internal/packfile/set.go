package packfile

import (
	"errors"
	"math"
	"slices"

	"github.com/floodgate/floodgate/internal/hugepage"
)

// Set is an immutable set of uint64 numbers made for number packs: millions of user
// numbers in a bounded range (10-digit QQ numbers span about 2^33).
//
// Layout: the numbers, minus the smallest, are split by their high bits into buckets of
// 2^shift values; an offsets array (uint32 per bucket) says where each bucket's numbers
// start; each bucket holds the low shift bits of its numbers, sorted, as uint16, uint32
// or uint64 - the narrowest that fits shift bits. The shift is chosen to minimise the
// bytes (low bits + offsets) with at most 64 numbers per bucket on average, so a lookup
// is one offsets read and a binary search in a cache line or two.
//
// For 10M distinct 10-digit numbers that is about 2.2 bytes per number (uint16 low
// bits, ~18 per bucket); for numbers spread over all of uint64 about 8.4. A lookup reads
// two arrays and allocates nothing. Where it costs at most 6 bytes per number, the
// builder fills the one-cache-line layout of lines.go instead (~3.3 bytes per 10-digit
// number at 10M, one read per lookup), and packs it (packed.go: ~1.7 bytes, two
// adjacent lines per lookup) where the lines take PackMinBytes or more.
type Set struct {
	min, max uint64
	shift    uint
	mask     uint64
	n        int
	off      []uint32 // bucket b holds low[off[b]:off[b+1]]
	lo16     []uint16
	lo32     []uint32
	lo64     []uint64

	// The one-cache-line layout (lines.go), when it fits: lines replaces the arrays
	// above, over holds the numbers that overflowed their line.
	lines []uint16
	slots uint64 // uint16 slots per line: 16 (32 bytes) or 32 (64 bytes)
	mult  uint64 // line of n = high 64 bits of (n-min) * mult
	over  *Set

	// The packed layout (packed.go), when it is smaller: pk replaces lines, over holds
	// the numbers of the buckets that did not fit.
	pk      []uint64 // the bit stream of the buckets; hdr follows it in the same mapping
	pkHdr   []uint16
	pkR     uint64 // values per bucket
	pkMagic uint64 // bucket of n = high 64 bits of (n-min) * pkMagic (+ a correction)
	pkL     [pkMaxK + 1]uint8

	maps []*hugepage.Mapping // arrays outside the Go heap (hugemem.go)
}

// maxPerBucket bounds the average bucket (the binary search's length).
const maxPerBucket = 64

// MaxSetLen is the most numbers a Set holds (its offsets are uint32).
const MaxSetLen = math.MaxUint32 - 1

// Len is the number of distinct numbers in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Bytes is the memory the set's arrays take.
func (s *Set) Bytes() int {
	if s == nil {
		return 0
	}
	return 4*cap(s.off) + 2*cap(s.lo16) + 4*cap(s.lo32) + 8*cap(s.lo64) + 2*cap(s.lines) + 8*cap(s.pk) + s.over.Bytes() // cap(pk) covers pkHdr
}

// Contains reports whether x is in the set. It does not allocate.
func (s *Set) Contains(x uint64) bool {
	if s == nil || s.n == 0 || x < s.min || x > s.max {
		return false
	}
	if s.pk != nil {
		return s.inPacked(x)
	}
	if s.lines != nil {
		return s.inLine(x, s.First(x))
	}
	d := x - s.min
	b := d >> s.shift
	lo, hi := s.off[b], s.off[b+1]
	low := d & s.mask
	switch {
	case s.lo16 != nil:
		return search(s.lo16[lo:hi], uint16(low))
	case s.lo32 != nil:
		return search(s.lo32[lo:hi], uint32(low))
	default:
		return search(s.lo64[lo:hi], low)
	}
}

func search[T uint16 | uint32 | uint64](a []T, x T) bool {
	i, j := 0, len(a)
	for i < j {
		h := int(uint(i+j) >> 1)
		if a[h] < x {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(a) && a[i] == x
}

// ErrSetChanged is returned by a SetBuilder fed other numbers than it was sized for.
var ErrSetChanged = errors.New("the numbers changed between the passes")

// SetBuilder builds a Set in three passes over the same numbers (two for the line
// layout: NeedsCounts is then false and pass 2 is skipped), holding nothing but
// the final arrays (no []uint64 of everything, so 100M numbers build in about 2.2 bytes
// each):
//
//	b := NewSetBuilder()
//	for each n: b.Scan(n)        // pass 1: range and count
//	b.Size()
//	for each n: b.CountNumber(n) // pass 2: per-bucket counts
//	b.Place()
//	for each n: b.Add(n)         // pass 3: the low bits, in their buckets
//	set, err := b.Finish()       // sorts each bucket, drops duplicates
type SetBuilder struct {
	s     *Set
	count int
	width int
	cur   []uint32 // pass 3: each bucket's next slot
	plain bool     // keep the sorted buckets (the line layout's overflow set)

	// direct: the line layout fits, so pass 3 fills the lines themselves and pass 2 is
	// not needed (see NeedsCounts).
	direct   bool
	added    int
	inserted int
	spill    []uint64
}

// NeedsCounts reports whether pass 2 (CountNumber) is needed; after Size, false when the
// numbers go straight into the line layout (two passes instead of three).
func (b *SetBuilder) NeedsCounts() bool { return !b.direct }

// NewSetBuilder starts a build.
func NewSetBuilder() *SetBuilder { return &SetBuilder{s: &Set{min: math.MaxUint64}} }

// Scan is pass 1.
func (b *SetBuilder) Scan(n uint64) {
	b.s.min = min(b.s.min, n)
	b.s.max = max(b.s.max, n)
	b.count++
}

// chooseShift returns the shift (and low-bits width in bytes) that minimises the set's
// bytes for count numbers over [0, span], with at most maxPerBucket per bucket on
// average.
func chooseShift(span uint64, count int) (shift uint, width int) {
	best := math.Inf(1)
	for s := uint(0); s <= 64; s++ {
		var buckets float64
		if s == 64 {
			buckets = 1
		} else {
			buckets = float64(span>>s) + 1
		}
		if float64(count) > maxPerBucket*buckets {
			break // larger shifts only make bigger buckets
		}
		w := 8
		switch {
		case s <= 16:
			w = 2
		case s <= 32:
			w = 4
		}
		if cost := float64(w)*float64(count) + 4*(buckets+1); cost < best {
			best, shift, width = cost, s, w
		}
	}
	return shift, width
}

// Size ends pass 1: it chooses the layout and allocates the offsets.
func (b *SetBuilder) Size() error {
	if b.count > MaxSetLen {
		return errors.New("more than 2^32-1 numbers in one pack")
	}
	if b.count == 0 {
		b.s.min, b.s.max = 1, 0
		b.s.off = []uint32{0}
		return nil
	}
	if !b.plain {
		if nb, slots, mult, ok := lineShape(b.s.max-b.s.min, b.count); ok {
			b.direct = true
			b.s.slots, b.s.mult = slots, mult
			b.s.lines = hugeAlloc[uint16](b.s, int(nb*slots))
			return nil
		}
	}
	shift, width := chooseShift(b.s.max-b.s.min, b.count)
	b.s.shift, b.width = shift, width
	b.s.mask = math.MaxUint64
	if shift < 64 {
		b.s.mask = 1<<shift - 1
	}
	buckets := uint64(1)
	if shift < 64 {
		buckets = (b.s.max-b.s.min)>>shift + 1
	}
	b.s.off = hugeAlloc[uint32](b.s, int(buckets+1))
	return nil
}

func (b *SetBuilder) bucket(n uint64) (uint64, bool) {
	if n < b.s.min || n > b.s.max {
		return 0, false
	}
	if b.s.shift == 64 {
		return 0, true
	}
	return (n - b.s.min) >> b.s.shift, true
}

// CountNumber is pass 2. It returns ErrSetChanged for a number outside pass 1's range.
func (b *SetBuilder) CountNumber(n uint64) error {
	if b.direct {
		return nil // not needed (NeedsCounts)
	}
	k, ok := b.bucket(n)
	if !ok {
		return ErrSetChanged
	}
	b.s.off[k+1]++
	return nil
}

// Place ends pass 2: off[k] becomes bucket k's start and a cursor per bucket (a
// temporary copy of the starts) is where pass 3 puts its next number.
func (b *SetBuilder) Place() {
	if b.direct {
		return
	}
	var sum uint32
	for k := 1; k < len(b.s.off); k++ {
		sum += b.s.off[k]
		b.s.off[k] = sum
	}
	b.cur = slices.Clone(b.s.off[:len(b.s.off)-1])
	switch b.width {
	case 2:
		b.s.lo16 = hugeAlloc[uint16](b.s, int(sum))
	case 4:
		b.s.lo32 = hugeAlloc[uint32](b.s, int(sum))
	case 8:
		b.s.lo64 = hugeAlloc[uint64](b.s, int(sum))
	}
}

// Add is pass 3. It returns ErrSetChanged when a bucket gets more numbers than pass 2
// counted.
func (b *SetBuilder) Add(n uint64) error {
	if b.direct {
		if n < b.s.min || n > b.s.max || b.added == b.count {
			return ErrSetChanged
		}
		b.added++
		b.addLine(n)
		return nil
	}
	k, ok := b.bucket(n)
	if !ok {
		return ErrSetChanged
	}
	i := b.cur[k]
	if i >= b.s.off[k+1] {
		return ErrSetChanged
	}
	b.cur[k] = i + 1
	low := (n - b.s.min) & b.s.mask
	switch b.width {
	case 2:
		b.s.lo16[i] = uint16(low)
	case 4:
		b.s.lo32[i] = uint32(low)
	default:
		b.s.lo64[i] = low
	}
	return nil
}

// Finish sorts each bucket, drops duplicates and returns the set. Every bucket must have
// received exactly the numbers pass 2 counted.
func (b *SetBuilder) Finish() (*Set, error) {
	s := b.s
	if b.count == 0 {
		return s, nil
	}
	if b.direct {
		return b.finishLines()
	}
	for k, c := range b.cur {
		if c != s.off[k+1] {
			return nil, ErrSetChanged
		}
	}
	b.cur = nil
	w, start := uint32(0), uint32(0)
	for k := 0; k+1 < len(s.off); k++ {
		end := s.off[k+1]
		s.off[k] = w
		switch b.width {
		case 2:
			w = compact(s.lo16, start, end, w)
		case 4:
			w = compact(s.lo32, start, end, w)
		default:
			w = compact(s.lo64, start, end, w)
		}
		start = end
	}
	s.off[len(s.off)-1] = w
	s.n = int(w)
	// Duplicates leave their room unused at the end (packs rarely repeat a number).
	switch b.width {
	case 2:
		s.lo16 = s.lo16[:w:w]
	case 4:
		s.lo32 = s.lo32[:w:w]
	default:
		s.lo64 = s.lo64[:w:w]
	}
	return s, nil
}

// compact sorts a[start:end], writes its distinct values to a[w:] and returns the new
// write position (w <= start, so nothing unread is overwritten).
func compact[T uint16 | uint32 | uint64](a []T, start, end, w uint32) uint32 {
	seg := a[start:end]
	if len(seg) > 1 {
		slices.Sort(seg)
	}
	var prev T
	for i, v := range seg { // w <= start+i: a[w] was read already
		if i > 0 && v == prev {
			continue
		}
		prev = v
		a[w] = v
		w++
	}
	return w
}
