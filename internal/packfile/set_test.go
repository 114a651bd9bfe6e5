package packfile

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
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
		width int // bytes of the low bits
	}{
		{"empty", nil, 0},
		{"one number", []uint64{42}, 2},
		{"zero and max", []uint64{0, math.MaxUint64}, 8},
		{"duplicates", []uint64{7, 7, 7, 9, 9, 1}, 2},
		{"10-digit numbers, sparse (uint32 low bits cost less than offsets)", gen(200_000, func() uint64 { return 1e9 + rng.Uint64N(9e9) }), 4},
		{"10-digit numbers", gen(1_000_000, func() uint64 { return 1e9 + rng.Uint64N(9e9) }), 2},
		{"dense run", gen(100_000, func() uint64 { return 5e9 + rng.Uint64N(120_000) }), 2},
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
			for _, n := range want {
				if !s.Contains(n) {
					t.Fatalf("member %d not found", n)
				}
			}
			in := func(n uint64) bool { _, ok := slices.BinarySearch(want, n); return ok }
			probes := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}
			for _, n := range want {
				probes = append(probes, n-1, n+1)
			}
			for i := 0; i < 10000; i++ {
				probes = append(probes, rng.Uint64(), 1e9+rng.Uint64N(9e9))
			}
			for _, n := range probes {
				if s.Contains(n) != in(n) {
					t.Fatalf("Contains(%d) = %v, want %v", n, !in(n), in(n))
				}
			}
			if tc.desc == "10-digit numbers" && float64(s.Bytes())/float64(len(want)) > 2.6 {
				t.Errorf("%.2f bytes per number, want <= 2.6 (uint16 low bits and a small offsets array)", float64(s.Bytes())/float64(len(want)))
			}
			if len(want) > 10000 {
				t.Logf("%d numbers: %.2f bytes each (shift %d, %d buckets)", len(want), float64(s.Bytes())/float64(len(want)), s.shift, len(s.off)-1)
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
