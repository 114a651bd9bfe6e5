package packfile

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"
)

// The packed layout: the line layout's computed read at about half its bytes. It was
// built on a pointer chase that put this VM's cache knee near 16 MiB (155 ns per read at
// 32 MiB, the lines of 10M numbers); measured, a set's dependent lookups take 76-86 ns
// in either layout (the 480 MiB L3 holds both) and a decision reads a packed set 10-20
// ns slower than its lines. So it is used for memory, where the lines are large
// (PackMinBytes), not for speed:
//
//   - The range [min, max] is cut into nb buckets of r consecutive values each (bucket
//     of n = (n-min) / r, computed with a multiply); r is chosen so that the average
//     bucket fills pkFill of a 64-byte line.
//   - The buckets are encoded one after the other in one bit stream of 64-byte lines,
//     each as Elias-Fano: its count k (7 bits), the low l bits of each of its numbers'
//     offsets in the bucket (l = floor(log2(r/k)), from a table by k), then their high
//     parts in unary (a one per number, a zero per step of the high part).
//   - Bucket i starts in line i or i+1 (at bit 512*i + hdr[i], hdr[i] <= 512) and ends
//     by the end of line i+1: so a lookup reads lines i and i+1 - two adjacent lines,
//     both computed from the number, read at once (First) - and hdr[i], a small array
//     (2 bytes a bucket).
//   - A bucket that does not fit (more numbers in its range than the lines can take:
//     rare for spread numbers, the rule for a dense cluster) keeps its smallest numbers
//     and flags itself; the rest go to an overflow set (sorted buckets), asked only when
//     the flag is set.
//
// 10M random 10-digit numbers take ~1.7 bytes each (against ~3.3 in lines), 100M 1.2.
// The set is built from a line-layout set (pack), in sorted order, and used when the
// lines take PackMinBytes or more (or ForceLayout asks for it), it is smaller and at
// most 1/64 of the numbers overflow; otherwise the set keeps its lines.

const (
	pkLineBits = 512
	pkKBits    = 7
	pkMaxK     = 1<<pkKBits - 1
	pkWMask    = 0x3ff  // hdr: the bucket's start in its line, 0..512
	pkOver     = 0x8000 // hdr: some of the bucket's numbers are in the overflow set
	pkMaxL     = 56     // a read (pkRead) yields at least 57 bits
	pkMinLen   = 1 << 16
	// pkFill is the share of a line the average bucket takes: the rest absorbs fuller
	// buckets (a bucket may run into the next line, pushing the next bucket on). At
	// 0.92 about one bucket in 40,000 overflows for spread numbers.
	pkFill      = 0.92
	pkMaxLambda = 80 // numbers per bucket at most (the count has 7 bits)
)

// littleEndian: the layout reads its bit stream with unaligned little-endian loads.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// packShape returns the values per bucket for n numbers over span+1 values, or ok=false
// when the packed layout does not apply.
func packShape(span uint64, n int) (r uint64, ok bool) {
	if !littleEndian || n < pkMinLen {
		return 0, false
	}
	return bucketRange(span, n)
}

// bucketRange is packShape for any count.
func bucketRange(span uint64, n int) (r uint64, ok bool) {
	if span >= 1<<56 {
		return 0, false
	}
	density := float64(n) / (float64(span) + 1)
	best := 0.0
	for lambda := 2.0; lambda <= pkMaxLambda; lambda += 0.25 {
		rr := lambda / density
		l := 0.0
		if rr/lambda >= 2 {
			l = math.Floor(math.Log2(rr / lambda))
		}
		if pkKBits+lambda*(l+1)+rr/math.Exp2(l) <= pkFill*pkLineBits {
			best = rr
		}
	}
	r = uint64(best)
	if r < 2 || r >= 1<<56 {
		return 0, false
	}
	return r, true
}

// pkRead returns the stream's bits from pos on (at least 57 valid bits).
func (s *Set) pkRead(pos uint64) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(s.pk)), pos>>3)) >> (pos & 7)
}

// pkBucket returns n's bucket and its offset in it.
func (s *Set) pkBucket(n uint64) (i, off uint64) {
	d := n - s.min
	i, _ = bits.Mul64(d, s.pkMagic)
	off = d - i*s.pkR
	if off >= s.pkR { // the magic rounds up: i is one too many at most
		i--
		off += s.pkR
	}
	return i, off
}

// inPacked is Contains in the packed layout.
func (s *Set) inPacked(x uint64) bool {
	i, off := s.pkBucket(x)
	h := s.pkHdr[i]
	p := i*pkLineBits + uint64(h&pkWMask)
	return s.inBucket(p, (i+2)*pkLineBits, off) || (h&pkOver != 0 && s.over.Contains(x))
}

const mask56 = 1<<56 - 1

// inBucket reports whether the bucket encoded from bit p holds off; limit is where its
// lines end. The common case takes no branch on the data (a mispredicted branch after
// the line's cache miss costs as much again as the decoding): the high part's position
// is selected in one of two windows of the unary, and the first two numbers with that
// high part are compared at once.
func (s *Set) inBucket(p, limit, off uint64) bool {
	k := s.pkRead(p) & pkMaxK
	if k == 0 {
		return false
	}
	l := uint64(s.pkL[k])
	hi, lo, lmask := off>>l, off&(1<<l-1), uint64(1)<<l-1
	lows := p + pkKBits
	u := lows + k*l // the unary high parts: a one per number, a zero per step up
	// pos: just after the hi-th zero, counting a zero before the unary as the 0th
	// (pos = u for hi = 0). Window a is that zero and 55 bits of the unary, b the next 56.
	a := s.pkRead(u-1) &^ 1 & mask56
	b := s.pkRead(u+55) & mask56
	za := 56 - uint64(bits.OnesCount64(a))
	second := -b2u(hi >= za) // all ones when hi's zero is in window b: no branch
	w, base, r := a^(a^b)&second, u-1+56&second, hi-za&second
	var pos uint64
	if r < 56-uint64(bits.OnesCount64(w)) {
		pos = base + select1(^w&mask56, r) + 1
	} else if pos = s.skipZeros(base+56, r-(56-uint64(bits.OnesCount64(w))), limit); pos >= limit {
		return false // fewer zeros in the bucket: no number has this high part
	}
	// The ones from pos on are the numbers with high part hi, the j-th of the bucket
	// first (j counts the ones before pos; past the bucket's k ones there is none).
	j := min(pos-u-hi, k)
	run := uint64(bits.TrailingZeros64(^s.pkRead(pos)))
	c := min(run, k-j)
	v0 := s.pkRead(lows+j*l) & lmask
	v1 := s.pkRead(lows+(j+1)*l) & lmask
	found := b2u(v0 == lo)&b2u(c >= 1) | b2u(v1 == lo)&b2u(c >= 2)
	if found != 0 {
		return true
	}
	// A third number with this high part (rare). The run of ones may be longer than
	// the read that counted it (c), so the loop follows the unary itself.
	for t := uint64(2); c >= 2 && j+t < k && s.pkRead(pos+t)&1 != 0; t++ {
		if v := s.pkRead(lows+(j+t)*l) & lmask; v >= lo {
			return v == lo
		}
	}
	return false
}

// skipZeros returns the position just after the (r+1)-th zero from pos, or limit when
// there is none before limit.
func (s *Set) skipZeros(pos, r, limit uint64) uint64 {
	for pos < limit {
		w := s.pkRead(pos) & mask56
		z := 56 - uint64(bits.OnesCount64(w))
		if r < z {
			return pos + select1(^w&mask56, r) + 1
		}
		r -= z
		pos += 56
	}
	return limit
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// select1 returns the position of the r-th (from 0) set bit of x, which has more than r.
func select1(x, r uint64) uint64 {
	const l8, h8 = 0x0101010101010101, 0x8080808080808080
	b := x - (x>>1)&0x5555555555555555
	b = b&0x3333333333333333 + (b>>2)&0x3333333333333333
	b = (b + b>>4) & 0x0f0f0f0f0f0f0f0f
	sums := b * l8 // byte i: set bits in bytes 0..i
	// bytes whose running count is <= r: the target byte is the first one past them
	le := ((r*l8 | h8) - sums) & h8
	place := uint64(bits.OnesCount64(le)) * 8
	rank := r - (sums<<8>>place)&0xff
	return place + uint64(selectInByte[(x>>place&0xff)|rank<<8])
}

// selectInByte[b | r<<8] is the position of the r-th set bit of the byte b.
var selectInByte = func() (t [8 << 8]uint8) {
	for b := 0; b < 256; b++ {
		r := 0
		for i := 0; i < 8; i++ {
			if b&(1<<i) != 0 {
				t[b|r<<8] = uint8(i)
				r++
			}
		}
	}
	return t
}()

// packer writes a packed set from numbers in increasing order.
type packer struct {
	s     *Set
	nb    uint64
	cur   uint64   // the bucket being gathered
	offs  []uint64 // its numbers' offsets
	end   uint64   // where the previous bucket ended (bits)
	spill []uint64
}

func newPacker(lo, hi uint64, r uint64) *packer {
	s := &Set{min: lo, max: hi, pkR: r, pkMagic: (math.MaxUint64)/r + 1}
	if r&(r-1) == 0 { // a power of two: the exact 2^64/r
		s.pkMagic = 1 << (64 - bits.TrailingZeros64(r))
	}
	nb := (hi-lo)/r + 1
	for k := 1; k <= pkMaxK; k++ {
		l := 0
		if q := r / uint64(k); q > 0 {
			l = bits.Len64(q) - 1
		}
		s.pkL[k] = uint8(min(l, pkMaxL))
	}
	// lines 0..nb (bucket nb-1 may end in line nb), a line of slack for the 8-byte reads
	// past the last one, then hdr: one allocation, on huge pages when large
	words := int(nb+2)*8 + int(nb+1+3)/4
	s.pk = hugeAlloc[uint64](s, words)
	s.pkHdr = unsafe.Slice((*uint16)(unsafe.Pointer(&s.pk[(nb+2)*8])), nb+1)
	s.pk = s.pk[:(nb+2)*8]
	return &packer{s: s, nb: nb}
}

// add takes the next number (greater than the last).
func (pk *packer) add(n uint64) {
	i, off := pk.s.pkBucket(n)
	for pk.cur < i {
		pk.flush()
	}
	pk.offs = append(pk.offs, off)
}

// bucketBits is the size of the bucket of the k smallest offs.
func (s *Set) bucketBits(offs []uint64, k int) uint64 {
	if k == 0 {
		return pkKBits
	}
	l := uint64(s.pkL[k])
	return pkKBits + uint64(k)*(l+1) + offs[k-1]>>l
}

// flush writes the gathered bucket and moves to the next one.
func (pk *packer) flush() {
	s, i := pk.s, pk.cur
	p := max(i*pkLineBits, pk.end)
	limit := (i + 2) * pkLineBits
	s.pkHdr[i] = uint16(p - i*pkLineBits)
	k := min(len(pk.offs), pkMaxK)
	for k > 0 && p+s.bucketBits(pk.offs, k) > limit {
		k--
	}
	if k < len(pk.offs) {
		s.pkHdr[i] |= pkOver
		base := s.min + i*s.pkR
		for _, off := range pk.offs[k:] {
			pk.spill = append(pk.spill, base+off)
		}
	}
	pk.setBits(p, uint64(k), pkKBits)
	if k > 0 {
		l := uint64(s.pkL[k])
		lows := p + pkKBits
		u := lows + uint64(k)*l
		for j, off := range pk.offs[:k] {
			pk.setBits(lows+uint64(j)*l, off&(1<<l-1), l)
			b := u + uint64(j) + off>>l // the j-th one: after j ones and off>>l zeros
			s.pk[b>>6] |= 1 << (b & 63)
		}
	}
	pk.end = p + s.bucketBits(pk.offs, k)
	pk.offs = pk.offs[:0]
	pk.cur++
}

func (pk *packer) setBits(pos, v, n uint64) {
	if n == 0 {
		return
	}
	w, o := pos>>6, pos&63
	pk.s.pk[w] |= v << o
	if o+n > 64 {
		pk.s.pk[w+1] |= v >> (64 - o)
	}
}

// finish writes the last buckets and returns the set (stored + spilled = n numbers).
func (pk *packer) finish(n int) *Set {
	for pk.cur < pk.nb {
		pk.flush()
	}
	s := pk.s
	s.pkHdr[pk.nb] = uint16(max(pk.end, pk.nb*pkLineBits) - pk.nb*pkLineBits)
	s.over = buildPlain(pk.spill)
	s.n = n
	return s
}

// Packed reports whether the set is in the packed layout.
func (s *Set) Packed() bool { return s != nil && s.pk != nil }

// Layouts a set built in the line layout may end in (ForceLayout).
const (
	LayoutAuto   = iota // packed when the lines take at least PackMinBytes
	LayoutLines         // never packed
	LayoutPacked        // packed whenever the packed layout applies
)

// ForceLayout overrides the choice between the line and the packed layout for the sets
// built while it is set (default LayoutAuto): the benchmarks measure both layouts side
// by side in one run with it.
var ForceLayout atomic.Int32

// PackMinBytes is the size of line layout from which a set is packed (LayoutAuto): 256
// MiB, ~80M 10-digit numbers. Measured on this VM, a decision reads a packed 10M set
// 10-20 ns slower than its lines (three cache lines - two adjacent ones and the bucket's
// start - instead of one, and a longer decoding), and the lines' 32 MiB are no slower
// to read than the packed set's 18 (the 480 MiB L3 holds both; dependent lookups: ~80
// ns either way). So the packed layout is kept for what it does better, memory: half
// the bytes where a pack is large enough for that to count.
const PackMinBytes = 256 << 20

var packMinBytes = PackMinBytes // the tests lower it

// pack returns the set in the packed layout when that applies (see above), else s. s
// must be in the line layout; when it is replaced, its memory is given back at once.
func (s *Set) pack() *Set {
	if s.lines == nil || s.n == 0 {
		return s
	}
	switch ForceLayout.Load() {
	case LayoutLines:
		return s
	case LayoutAuto:
		if s.Bytes() < packMinBytes {
			return s
		}
	}
	r, ok := packShape(s.max-s.min, s.n)
	if !ok {
		return s
	}
	pk := newPacker(s.min, s.max, r)
	s.eachLines(pk.add)
	p := pk.finish(s.n)
	if p.over.Len() > s.n/64 || p.Bytes() >= s.Bytes() {
		p.free()
		return s
	}
	s.free()
	return p
}

// eachLines calls fn with every number of a line-layout set, in increasing order.
func (s *Set) eachLines(fn func(n uint64)) {
	var over []uint64
	s.over.each(func(n uint64) { over = append(over, n) })
	nb := uint64(len(s.lines)) / s.slots
	// lineStart is the smallest n-min of line i: ceil(i * 2^64 / mult)
	lineStart := func(i uint64) uint64 {
		if i >= nb {
			return math.MaxUint64
		}
		q, r := bits.Div64(i, 0, s.mult)
		if r != 0 {
			q++
		}
		return q
	}
	var buf []uint64
	start := uint64(0)
	for i := uint64(0); i < nb; i++ {
		next := lineStart(i + 1)
		line := s.lines[i*s.slots : (i+1)*s.slots]
		buf = buf[:0]
		for _, v := range line[1 : 1+line[0]&countMask] {
			buf = append(buf, s.min+start+uint64(v-uint16(start))) // the one value of the line with these low bits
		}
		for len(over) > 0 && (next == math.MaxUint64 || over[0]-s.min < next) {
			buf = append(buf, over[0])
			over = over[1:]
		}
		slices.Sort(buf)
		for _, n := range buf {
			fn(n)
		}
		start = next
	}
}

// each calls fn with every number of a sorted-buckets set, in increasing order.
func (s *Set) each(fn func(n uint64)) {
	if s == nil || s.off == nil {
		return
	}
	for b := 0; b+1 < len(s.off); b++ {
		base := s.min + uint64(b)<<s.shift
		if s.shift == 64 {
			base = s.min
		}
		for j := s.off[b]; j < s.off[b+1]; j++ {
			switch {
			case s.lo16 != nil:
				fn(base + uint64(s.lo16[j]))
			case s.lo32 != nil:
				fn(base + uint64(s.lo32[j]))
			default:
				fn(base + s.lo64[j])
			}
		}
	}
}

// free gives the set's mappings back at once; the set must be unreachable to readers.
func (s *Set) free() {
	for ; s != nil; s = s.over {
		for _, m := range s.maps {
			m.Unmap()
		}
	}
}
