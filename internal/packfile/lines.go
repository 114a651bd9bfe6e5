package packfile

import (
	"math/bits"
	"unsafe"
)

// The one-cache-line layout. The sorted-buckets layout costs a lookup two dependent
// memory reads (the offsets, then the bucket): on a 10M-number pack with random users
// both miss the CPU cache. Here a number's line is computed, not looked up:
//
//   - The range [min, max] is cut into nb lines by line = hi64((n-min) * mult), with
//     mult = floor((2^64-1)/(max-min+1)) * nb: monotonic, and at least 2^48, so two
//     numbers of one line differ by less than 65536 and their low 16 bits tell them
//     apart. A line stores exactly those low 16 bits.
//   - A line is 32 or 64 bytes (16 or 32 uint16 slots), aligned: slot 0 is the count
//     (bit 15: some of the line's numbers overflowed), the others the numbers' low bits.
//     A lookup reads one line: one cache miss, a scan of at most 31 values in it.
//   - Lines are sized for ~20 numbers (64-byte lines) or ~9 (32-byte lines); the few
//     numbers of a fuller line go to an overflow Set (sorted buckets), asked only when the
//     line's overflow bit is set.
//
// 10M 10-digit numbers take ~3.3 bytes each (500K lines of 64 bytes, 0.3% overflow); the
// layout is used when it costs at most maxLineBytes per number (decided after pass 1,
// from the range and count), else the set keeps the sorted buckets (2.2-8.4 bytes, two
// reads). The lines are filled straight from the numbers (no pass 2, no sorting): a
// number already in its line is a duplicate.

// maxLineBytes is the most bytes per number the line layout may cost.
const maxLineBytes = 6

const (
	overflowBit = 0x8000
	countMask   = 0x7fff
)

// lineShape returns the lines and slots per line for count numbers over span+1 values
// and their bytes, or ok=false when the layout does not fit.
func lineShape(span uint64, count int) (nb, slots, mult uint64, ok bool) {
	if count == 0 || span == ^uint64(0) {
		return 0, 0, 0, false
	}
	q := ^uint64(0) / (span + 1)
	minLines := (uint64(1)<<48 + q - 1) / q // mult = q*nb >= 2^48
	best := ^uint64(0)
	for _, c := range []struct{ slots, mean uint64 }{{32, 20}, {16, 9}} {
		n := max(minLines, (uint64(count)+c.mean-1)/c.mean)
		if n > span+1 { // more lines than values
			continue
		}
		if bytes := n * c.slots * 2; bytes < best {
			best, nb, slots = bytes, n, c.slots
		}
	}
	if nb == 0 || best > maxLineBytes*uint64(count) {
		return 0, 0, 0, false
	}
	return nb, slots, q * nb, true
}

// addLine puts n into its line (pass 3 of a direct build): a number already there is a
// duplicate; a full line spills it to the overflow set.
func (b *SetBuilder) addLine(n uint64) {
	switch b.s.putLine(n) {
	case lineAdded:
		b.inserted++
	case lineFull:
		b.spill = append(b.spill, n)
	}
}

// What putLine did with a number.
const (
	lineAdded = iota
	lineDuplicate
	lineFull // the line is full: the number goes to the overflow set
)

// putLine writes n into its line, unless it is there already or the line is full (it
// then sets the line's overflow bit). n must be within [min, max].
func (s *Set) putLine(n uint64) int {
	d := n - s.min
	hi, _ := bits.Mul64(d, s.mult)
	line := s.lines[hi*s.slots : (hi+1)*s.slots]
	c := line[0] & countMask
	low := uint16(d)
	for _, v := range line[1 : 1+c] {
		if v == low {
			return lineDuplicate
		}
	}
	if uint64(c) == s.slots-1 {
		line[0] |= overflowBit
		return lineFull
	}
	line[c+1] = low
	line[0]++
	return lineAdded
}

// finishLines ends a direct build: every number of pass 1 came again, the spilled ones
// become the overflow set.
func (b *SetBuilder) finishLines() (*Set, error) {
	if b.added != b.count {
		return nil, ErrSetChanged
	}
	s := b.s
	s.over = buildPlain(b.spill)
	b.spill = nil
	s.n = b.inserted + s.over.Len()
	return s.pack(), nil
}

// buildPlain builds a sorted-buckets set of nums (nil for none).
func buildPlain(nums []uint64) *Set {
	if len(nums) == 0 {
		return nil
	}
	b := NewSetBuilder()
	b.plain = true
	for _, n := range nums {
		b.Scan(n)
	}
	b.Size()
	for _, n := range nums {
		b.CountNumber(n)
	}
	b.Place()
	for _, n := range nums {
		b.Add(n)
	}
	s, _ := b.Finish() // the same numbers thrice: cannot fail
	return s
}

// First starts a lookup of x early: it reads the first word of the cache line a lookup
// of x reads (0 where the set has no line for x). The read of a line that is not in the
// CPU cache takes 100-300 ns on a loaded machine; a caller that has other work to do
// (a request's headers) calls First, does that work while the read is under way, and
// ends with ContainsFirst, which finds the line in the cache. It does not allocate.
//
// In the packed layout it reads the first words of the two lines a lookup reads and the
// bucket's start (at once: all three addresses come from x), and returns them mixed.
func (s *Set) First(x uint64) uint64 {
	if s == nil || x < s.min || x > s.max {
		return 0
	}
	if s.pk != nil {
		i, _ := s.pkBucket(x)
		return s.pk[i*8] ^ s.pk[i*8+8] ^ uint64(s.pkHdr[i])
	}
	if s.lines == nil {
		return 0
	}
	hi, _ := bits.Mul64(x-s.min, s.mult)
	return *(*uint64)(unsafe.Pointer(&s.lines[hi*s.slots]))
}

// ContainsFirst is Contains(x) given first = First(x).
func (s *Set) ContainsFirst(x, first uint64) bool {
	if s == nil || s.lines == nil || x < s.min || x > s.max {
		return s.Contains(x)
	}
	return s.inLine(x, first)
}

// inLine is Contains in the line layout, given the line's first word (First). It
// compares four slots at a time (SWAR on the uint64 words of the line) and every word
// of the line whatever the count (lanes past it masked), so that no branch depends on
// where the number is: a mispredicted branch right after the line's cache miss costs
// about as much as the comparisons.
func (s *Set) inLine(x, first uint64) bool {
	d := x - s.min
	hi, _ := bits.Mul64(d, s.mult)
	line := s.lines[hi*s.slots : (hi+1)*s.slots]
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&line[0])), s.slots/4)
	c := first & countMask // slots 1..c hold numbers
	pattern := uint64(uint16(d)) * 0x0001000100010001
	const low15, high = 0x7fff7fff7fff7fff, 0x8000800080008000
	v := first ^ pattern // a lane is 0 where the slot equals the low bits
	acc := ^(((v & low15) + low15) | v) & high &^ 0x8000 & lanes(c+1)
	for i := 1; i < len(words); i++ {
		v := words[i] ^ pattern
		acc |= ^(((v & low15) + low15) | v) & high & lanes(c+1-min(c+1, uint64(4*i)))
	}
	return acc != 0 || first&overflowBit != 0 && s.over.Contains(x)
}

// lanes is the mask of the first min(k, 4) 16-bit lanes of a word.
func lanes(k uint64) uint64 { return ^uint64(0) >> (64 - 16*min(k, 4)) }
