package packfile

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/floodgate/floodgate/internal/cputime"
)

func buildSet(t testing.TB, nums []uint64) *Set {
	t.Helper()
	b := NewSetBuilder()
	for _, n := range nums {
		b.Scan(n)
	}
	if err := b.Size(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nums {
		if err := b.CountNumber(n); err != nil {
			t.Fatal(err)
		}
	}
	b.Place()
	for _, n := range nums {
		if err := b.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func() uint64) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = f()
		}
		return out
	}
	tests := []struct {
		desc  string
		nums  []uint64
		width int // bytes of the low bits; -1: the line layout, -2: packed
	}{
		{"empty", nil, 0},
		{"one number", []uint64{42}, 2},
		{"zero and max", []uint64{0, math.MaxUint64}, 8},
		{"duplicates", []uint64{7, 7, 7, 9, 9, 1}, -1},
		{"10-digit numbers, sparse (uint32 low bits cost less than offsets)", gen(200_000, func() uint64 { return 1e9 + rng.Uint64N(9e9) }), 4},
		{"10-digit numbers", gen(800_000, func() uint64 { return 1e9 + rng.Uint64N(9e9) }), -1},
		{"dense run", gen(100_000, func() uint64 { return 5e9 + rng.Uint64N(120_000) }), -1},
		{"lines with overflow", append(gen(200_000, func() uint64 { return rng.Uint64N(2e7) }), gen(20_000, func() uint64 { return 1e6 + rng.Uint64N(30_000) })...), -1},
		{"all of uint64", gen(50_000, rng.Uint64), 8},
		{"two far clusters", append(gen(1000, func() uint64 { return rng.Uint64N(1e6) }), gen(1000, func() uint64 { return 1<<40 + rng.Uint64N(1e6) })...), 4},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := buildSet(t, tc.nums)
			want := slices.Compact(slices.Sorted(slices.Values(tc.nums)))
			if s.Len() != len(want) {
				t.Fatalf("Len %d, want %d distinct", s.Len(), len(want))
			}
			w := 0
			switch {
			case s.pk != nil:
				w = -2
			case s.lines != nil:
				w = -1
			case s.lo16 != nil:
				w = 2
			case s.lo32 != nil:
				w = 4
			case s.lo64 != nil:
				w = 8
			}
			if w != tc.width {
				t.Errorf("low bits of %d bytes, want %d (shift %d)", w, tc.width, s.shift)
			}
			stride := 1
			if raceEnabled { // every member without the race detector; a sample with it
				stride = 7
			}
			for i := 0; i < len(want); i += stride {
				if n := want[i]; !s.Contains(n) || !s.ContainsFirst(n, s.First(n)) {
					t.Fatalf("member %d not found", n)
				}
			}
			in := func(n uint64) bool { _, ok := slices.BinarySearch(want, n); return ok }
			probes := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}
			for i := 0; i < len(want); i += 1 + len(want)/20000 { // neighbours of a sample of members
				probes = append(probes, want[i]-1, want[i]+1)
			}
			for i := 0; i < 10000; i++ {
				probes = append(probes, rng.Uint64(), 1e9+rng.Uint64N(9e9))
			}
			if len(want) > 0 { // low 16 bits 0 (the value of an empty slot) and its neighbours
				for d := uint64(0); d <= want[len(want)-1]-want[0] && d < 1<<28; d += 1 << 16 {
					probes = append(probes, want[0]+d, want[0]+d+1, want[0]+d+2)
				}
			}
			for _, n := range probes {
				if s.Contains(n) != in(n) {
					t.Fatalf("Contains(%d) = %v, want %v", n, !in(n), in(n))
				}
				if s.ContainsFirst(n, s.First(n)) != in(n) { // the lookup started early
					t.Fatalf("ContainsFirst(%d) = %v, want %v", n, !in(n), in(n))
				}
			}
			if tc.desc == "10-digit numbers" && float64(s.Bytes())/float64(len(want)) > maxLineBytes {
				t.Errorf("%.2f bytes per number, want <= %d (32-byte lines)", float64(s.Bytes())/float64(len(want)), maxLineBytes)
			}
			if tc.desc == "lines with overflow" && s.over.Len() == 0 {
				t.Error("no number overflowed its line")
			}
			if len(want) > 10000 {
				t.Logf("%d numbers: %.2f bytes each (shift %d, %d buckets, %d lines of %d slots, %d overflowed)", len(want), float64(s.Bytes())/float64(len(want)),
					s.shift, len(s.off)-1, uint64(len(s.lines))/max(1, s.slots), s.slots, s.over.Len())
			}
		})
	}
}

// A source that yields other numbers in a later pass is refused, never half-built.
func TestSetChangedBetweenPasses(t *testing.T) {
	tests := []struct {
		desc         string
		pass2, pass3 []uint64
	}{
		{"out of range in pass 2", []uint64{1, 2, 300_000}, nil},
		{"out of range in pass 3", []uint64{1, 2, 3}, []uint64{1, 2, 300_000}},
		{"one bucket more", []uint64{1, 2, 3}, []uint64{1, 2, 3, 3}},
		{"one number fewer", []uint64{1, 2, 3}, []uint64{1, 2}},
		{"moved between buckets", []uint64{10, 100_000, 200_000}, []uint64{10, 10, 200_000}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			b := NewSetBuilder()
			for _, n := range []uint64{1, 2, 3, 10, 100_000, 200_000} {
				b.Scan(n)
			}
			b.Size()
			var err error
			for _, n := range tc.pass2 {
				err = errors.Join(err, b.CountNumber(n))
			}
			if tc.pass3 != nil {
				b.Place()
				for _, n := range tc.pass3 {
					err = errors.Join(err, b.Add(n))
				}
				if err == nil {
					_, err = b.Finish()
				}
			}
			if !errors.Is(err, ErrSetChanged) {
				t.Fatalf("err = %v, want ErrSetChanged", err)
			}
		})
	}
}

// BenchmarkSetLayouts compares the three layouts on the same 10M random 10-digit
// numbers in one run: sorted buckets (two dependent reads), lines (one read) and packed
// (two adjacent lines at once, half the bytes of lines), with 1Mi random members and
// non-members (cold cache lines, as random users are). Each lookup is started early
// (First) and ended with ContainsFirst, as the filter does; "member_dep" makes each
// lookup depend on the previous one's answer, so that the CPU cannot overlap their
// memory reads: its figure is a lookup's latency (the filter does one lookup per
// request, among other work).
func BenchmarkSetLayouts(b *testing.B) {
	const n, pool = 10_000_000, 1 << 20
	rng := rand.New(rand.NewPCG(5, 6))
	nums := make([]uint64, n)
	for i := range nums {
		nums[i] = 1e9 + rng.Uint64N(9e9)
	}
	members, others := make([]uint64, pool), make([]uint64, pool)
	for i := range members {
		members[i] = nums[rng.IntN(n)]
		others[i] = 1e9 + rng.Uint64N(9e9) // a member with odds 1/900
	}
	for _, layout := range []string{"buckets", "lines", "packed"} {
		ForceLayout.Store(map[bool]int32{true: LayoutLines, false: LayoutPacked}[layout == "lines"])
		bl := NewSetBuilder()
		bl.plain = layout == "buckets"
		for _, x := range nums {
			bl.Scan(x)
		}
		bl.Size()
		for _, x := range nums {
			bl.CountNumber(x)
		}
		bl.Place()
		for _, x := range nums {
			bl.Add(x)
		}
		s, err := bl.Finish()
		ForceLayout.Store(LayoutAuto)
		if err != nil {
			b.Fatal(err)
		}
		if got := map[bool]string{true: "lines", false: "buckets"}[s.lines != nil]; s.pk != nil {
			got = "packed"
		} else if got != layout {
			b.Fatalf("%s: built %s", layout, got)
		}
		lookup := func(x uint64) bool { return s.ContainsFirst(x, s.First(x)) }
		b.Run(layout+"/member", func(b *testing.B) {
			cputime.Loop(b, func(i int) { lookup(members[i&(pool-1)]) })
			b.ReportMetric(float64(s.Bytes())/float64(s.Len()), "B/number")
		})
		b.Run(layout+"/member_dep", func(b *testing.B) {
			j := uint64(0)
			cputime.Loop(b, func(i int) {
				x := members[(uint64(i)+j)&(pool-1)]
				first := s.First(x)
				in := s.ContainsFirst(x, first)
				// the next key waits for this one's line (first) and answer (in)
				j += first>>63 + uint64(*(*uint8)(unsafe.Pointer(&in)))
			})
		})
		b.Run(layout+"/nonmember", func(b *testing.B) {
			cputime.Loop(b, func(i int) { lookup(others[i&(pool-1)]) })
		})
		b.Run(layout+"/member_parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(pool)
				for pb.Next() {
					lookup(members[i&(pool-1)])
					i++
				}
			})
		})
	}
}

// The line layout is filled in two passes; a second pass that differs is refused too.
func TestSetLinesChangedBetweenPasses(t *testing.T) {
	nums := make([]uint64, 100)
	for i := range nums {
		nums[i] = uint64(1000 + 3*i)
	}
	for _, tc := range []struct {
		desc  string
		pass3 []uint64
	}{
		{"one fewer", nums[1:]},
		{"one more", append(slices.Clone(nums), 1000)},
		{"out of range", append(slices.Clone(nums[1:]), 5000)},
	} {
		b := NewSetBuilder()
		for _, n := range nums {
			b.Scan(n)
		}
		b.Size()
		if b.NeedsCounts() {
			t.Fatal("100 numbers over 300 values: want the line layout")
		}
		b.Place()
		var err error
		for _, n := range tc.pass3 {
			err = errors.Join(err, b.Add(n))
		}
		if err == nil {
			_, err = b.Finish()
		}
		if !errors.Is(err, ErrSetChanged) {
			t.Errorf("%s: err = %v, want ErrSetChanged", tc.desc, err)
		}
	}
}
