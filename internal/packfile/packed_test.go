package packfile

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// packSorted builds a packed set of the distinct sorted nums with r values per bucket
// (bypassing packShape and the line layout, to reach every shape of bucket).
func packSorted(nums []uint64, r uint64) *Set {
	pk := newPacker(nums[0], nums[len(nums)-1], r)
	for _, n := range nums {
		pk.add(n)
	}
	return pk.finish(len(nums))
}

// checkExact compares s.Contains (and the early-started lookup) with the sorted want on
// every member, both neighbours of each, the bucket edges and random numbers.
func checkExact(t *testing.T, s *Set, want []uint64, rng *rand.Rand) {
	t.Helper()
	in := func(n uint64) bool { _, ok := slices.BinarySearch(want, n); return ok }
	probes := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}
	stride := 1
	if raceEnabled && len(want) > 100_000 { // every member without the race detector; a sample with it
		stride = 11
	}
	for i := 0; i < len(want); i += stride {
		n := want[i]
		probes = append(probes, n, n-1, n+1)
	}
	if s.pkR != 0 {
		lo, hi := want[0], want[len(want)-1]
		for b := uint64(0); b <= (hi-lo)/s.pkR && b < 1<<16; b++ { // each bucket's first and last value
			first := lo + b*s.pkR
			probes = append(probes, first, first+1, first+s.pkR-1, first-1)
		}
	}
	for i := 0; i < 20000; i++ {
		probes = append(probes, rng.Uint64(), want[0]+rng.Uint64N(want[len(want)-1]-want[0]+1))
	}
	for _, n := range probes {
		if got := s.Contains(n); got != in(n) {
			t.Fatalf("Contains(%d) = %v, want %v", n, got, in(n))
		}
		if got := s.ContainsFirst(n, s.First(n)); got != in(n) {
			t.Fatalf("ContainsFirst(%d) = %v, want %v", n, got, in(n))
		}
	}
}

func TestPackedExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	spread := func(n int, lo, span uint64) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = lo + rng.Uint64N(span)
		}
		return out
	}
	tests := []struct {
		desc string
		nums []uint64
		r    uint64 // 0: packShape's choice
		over int    // 1: some bucket must overflow, -1: none may, 0: either (a few may)
	}{
		{"10-digit numbers, packShape", spread(200_000, 1e9, 9e9), 0, 0},
		{"one number", []uint64{12345}, 1000, -1},
		{"two numbers, one bucket", []uint64{5, 9}, 16, -1},
		{"min and max of a wide range, empty buckets between", []uint64{1 << 20, 1<<20 + 7, 1<<50 - 1, 1 << 50}, 1 << 30, -1},
		{"r a power of two", spread(50_000, 0, 1<<26), 1 << 15, 0},
		{"r = 2 (l = 0 and 1)", spread(1000, 100, 4000), 2, -1},
		{"dense: every value", func() []uint64 {
			var out []uint64
			for i := uint64(0); i < 5000; i++ {
				out = append(out, 7_000_000+i)
			}
			return out
		}(), 100, -1},
		{"dense buckets overflow (more than 127 numbers)", func() []uint64 {
			var out []uint64
			for i := uint64(0); i < 5000; i++ {
				out = append(out, 7_000_000+i)
			}
			return out
		}(), 1000, 1},
		{"a cluster overflows its lines", append(spread(20_000, 1e9, 9e9), spread(3000, 5e9, 20_000)...), 0, 1},
		{"large offsets (l up to 56)", append(spread(10, 0, 1<<55), 1<<55), 1 << 55, -1},
		{"large offsets overflow two lines", append(spread(40, 0, 1<<55), 1<<55), 1 << 55, 1},
		{"numbers near the top of uint64", spread(30_000, math.MaxUint64-1<<40, 1<<40), 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			want := slices.Compact(slices.Sorted(slices.Values(tc.nums)))
			r := tc.r
			if r == 0 {
				var ok bool
				if r, ok = bucketRange(want[len(want)-1]-want[0], len(want)); !ok {
					t.Fatal("bucketRange refused")
				}
			}
			s := packSorted(want, r)
			if s.Len() != len(want) {
				t.Fatalf("Len %d, want %d", s.Len(), len(want))
			}
			if got := s.over.Len() > 0; tc.over != 0 && got != (tc.over > 0) {
				t.Errorf("%d numbers overflowed; want overflow %v", s.over.Len(), tc.over > 0)
			}
			checkExact(t, s, want, rng)
		})
	}
}

// The builder packs a line-layout set when that is smaller, and not when too many
// numbers would overflow or the range is too wide.
func TestPackChoice(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	gen := func(n int, f func() uint64) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = f()
		}
		return out
	}
	tenDigits := gen(800_000, func() uint64 { return 1e9 + rng.Uint64N(9e9) })
	tests := []struct {
		desc     string
		nums     []uint64
		layout   int32
		minBytes int // packMinBytes
		packed   bool
	}{
		{"800K 10-digit numbers", tenDigits, LayoutPacked, PackMinBytes, true},
		{"800K 10-digit numbers, auto, lines below the size", tenDigits, LayoutAuto, PackMinBytes, false},
		{"800K 10-digit numbers, auto, lines above the size", tenDigits, LayoutAuto, 1 << 20, true},
		{"800K 10-digit numbers, lines forced", tenDigits, LayoutLines, 0, false},
		{"duplicates", append(gen(100_000, func() uint64 { return 1e9 + rng.Uint64N(9e8) }), gen(100_000, func() uint64 { return 1e9 + rng.Uint64N(9e8) })...), LayoutPacked, 0, true},
		{"fewer than pkMinLen numbers", gen(pkMinLen-1, func() uint64 { return 1e9 + rng.Uint64N(1e8) }), LayoutPacked, 0, false},
		{"a dense cluster: most would overflow", append(gen(200_000, func() uint64 { return rng.Uint64N(2e7) }), gen(20_000, func() uint64 { return 1e6 + rng.Uint64N(30_000) })...), LayoutPacked, 0, false},
	}
	defer func() { ForceLayout.Store(LayoutAuto); packMinBytes = PackMinBytes }()
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ForceLayout.Store(tc.layout)
			packMinBytes = tc.minBytes
			s := buildSet(t, tc.nums)
			ForceLayout.Store(LayoutAuto)
			packMinBytes = PackMinBytes
			if got := s.pk != nil; got != tc.packed {
				t.Fatalf("packed %v, want %v (lines %v, %d overflowed)", got, tc.packed, s.lines != nil, s.over.Len())
			}
			want := slices.Compact(slices.Sorted(slices.Values(tc.nums)))
			if s.Len() != len(want) {
				t.Fatalf("Len %d, want %d", s.Len(), len(want))
			}
			checkExact(t, s, want, rng)
			if tc.packed {
				t.Logf("%d numbers: %.2f bytes each, r %d, %d buckets, %d overflowed", len(want), float64(s.Bytes())/float64(len(want)), s.pkR, len(s.pkHdr)-1, s.over.Len())
			}
		})
	}
}

func TestSelect1(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 100_000; i++ {
		x := rng.Uint64() & rng.Uint64() // sparser and denser words
		if i%3 == 0 {
			x |= rng.Uint64()
		}
		if x == 0 {
			continue
		}
		r := rng.Uint64N(uint64(bits.OnesCount64(x)))
		y, want := x, uint64(0)
		for j := uint64(0); j < r; j++ {
			y &= y - 1
		}
		want = uint64(bits.TrailingZeros64(y))
		if got := select1(x, r); got != want {
			t.Fatalf("select1(%#x, %d) = %d, want %d", x, r, got, want)
		}
	}
}

func TestPackedAllocatesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	nums := make([]uint64, 100_000)
	for i := range nums {
		nums[i] = 1e9 + rng.Uint64N(1e8)
	}
	ForceLayout.Store(LayoutPacked)
	s := buildSet(t, nums)
	ForceLayout.Store(LayoutAuto)
	if s.pk == nil {
		t.Fatal("not packed")
	}
	x := nums[0]
	if a := testing.AllocsPerRun(1000, func() { s.ContainsFirst(x, s.First(x)); s.Contains(x + 1) }); a != 0 {
		t.Fatalf("%v allocations per lookup", a)
	}
}

// A pack file read by ReadSet (the parallel chunks and the stream reader) ends packed
// with every number, when the packed layout is asked for.
func TestReadSetPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	nums := make([]uint64, 100_000)
	var text []byte
	for i := range nums {
		nums[i] = 1e9 + rng.Uint64N(1e8)
		text = strconv.AppendUint(text, nums[i], 10)
		text = append(text, '\n')
	}
	want := slices.Compact(slices.Sorted(slices.Values(nums)))
	dir := t.TempDir()
	ForceLayout.Store(LayoutPacked)
	defer ForceLayout.Store(LayoutAuto)
	for _, tc := range []struct {
		desc    string
		content []byte
	}{
		{"plain: parallel chunks", text},
		{"gzip: one stream", []byte(gz(t, string(text)))},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(dir, "p.txt")
			if err := os.WriteFile(p, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s, _, err := ReadSet(f, 2, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Packed() || s.Len() != len(want) {
				t.Fatalf("packed %v, Len %d; want packed, %d", s.Packed(), s.Len(), len(want))
			}
			checkExact(t, s, want, rng)
		})
	}
}

// A line-layout set whose lines overflowed packs with every number (the overflow set's
// numbers merged into their lines' order), and random shapes of packed sets answer
// exactly like a sorted slice.
func TestPackedFromOverflowingLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var nums []uint64
	for range 200_000 {
		nums = append(nums, 1e9+rng.Uint64N(5e7))
	}
	for range 1500 { // a cluster: its lines fill up
		nums = append(nums, 1e9+2e7+rng.Uint64N(3000))
	}
	ForceLayout.Store(LayoutLines)
	lines := buildSet(t, nums)
	ForceLayout.Store(LayoutPacked)
	s := buildSet(t, nums)
	ForceLayout.Store(LayoutAuto)
	if lines.lines == nil || lines.over.Len() == 0 {
		t.Fatalf("want lines with overflow: lines %v, %d overflowed", lines.lines != nil, lines.over.Len())
	}
	if !s.Packed() {
		t.Fatalf("not packed (%d of %d would overflow)", s.over.Len(), s.Len())
	}
	checkExact(t, s, slices.Compact(slices.Sorted(slices.Values(nums))), rng)
}

func TestPackedRandomShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	rounds := 300
	if raceEnabled {
		rounds = 60
	}
	for round := range rounds {
		n := 1 + rng.IntN(3000)
		span := uint64(n) + rng.Uint64N(1<<uint(1+rng.IntN(40)))
		base := rng.Uint64N(math.MaxUint64 - span)
		nums := make([]uint64, n)
		for i := range nums {
			nums[i] = base + rng.Uint64N(span)
			if i > 0 && rng.IntN(10) == 0 { // runs and duplicates
				nums[i] = nums[i-1] + rng.Uint64N(3)
			}
		}
		want := slices.Compact(slices.Sorted(slices.Values(nums)))
		r, ok := bucketRange(want[len(want)-1]-want[0], len(want))
		if !ok || rng.IntN(3) == 0 {
			r = 2 + rng.Uint64N(1<<uint(1+rng.IntN(30)))
		}
		r = max(r, (want[len(want)-1]-want[0])/(1<<16)) // at most 64Ki buckets (4 MiB)
		s := packSorted(want, r)
		if s.Len() != len(want) {
			t.Fatalf("round %d: Len %d, want %d", round, s.Len(), len(want))
		}
		in := func(x uint64) bool { _, ok := slices.BinarySearch(want, x); return ok }
		for _, x := range want {
			for _, y := range []uint64{x, x - 1, x + 1} {
				if s.Contains(y) != in(y) || s.ContainsFirst(y, s.First(y)) != in(y) {
					t.Fatalf("round %d (n %d, r %d): Contains(%d) = %v, want %v", round, len(want), r, y, !in(y), in(y))
				}
			}
		}
		for range 200 {
			y := want[0] + rng.Uint64N(want[len(want)-1]-want[0]+1)
			if s.Contains(y) != in(y) {
				t.Fatalf("round %d (n %d, r %d): Contains(%d) = %v, want %v", round, len(want), r, y, !in(y), in(y))
			}
		}
	}
}
