package adaptive

import (
	"testing"
	"time"
)

// BenchmarkAdmit is the controller's part of the admission decision: Admit (or AdmitFast)
// and, for a forwarded request, Done. Issue 9 asks for <= 50 ns/op and 0 allocations, serial and parallel.
func BenchmarkAdmit(b *testing.B) {
	s := Settings{Enabled: true, MinLimit: 4, MaxLimit: 1 << 20, PinnedLevel: -1, CoreFloor: MakeLevel(6, 0, 0)}
	b.Run("serial", func(b *testing.B) {
		c := New(DefaultParams(), s)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if c.Admit(Level(i%NumLevels), true).Forward() {
				c.Done(time.Millisecond, Answered, true)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := New(DefaultParams(), s)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if c.Admit(Level(i%NumLevels), true).Forward() {
					c.Done(time.Millisecond, Answered, true)
				}
			}
		})
	})
	// a healthy pool: AdmitFast decides without a level (the gateway's common case)
	b.Run("fast/serial", func(b *testing.B) {
		c := New(DefaultParams(), s)
		b.ReportAllocs()
		for b.Loop() {
			if d, _, _ := c.AdmitFast(false); d.Forward() {
				c.Done(time.Millisecond, Answered, false)
			}
		}
	})
	b.Run("fast/parallel", func(b *testing.B) {
		c := New(DefaultParams(), s)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, _, _ := c.AdmitFast(false); d.Forward() {
					c.Done(time.Millisecond, Answered, false)
				}
			}
		})
	})
	b.Run("shed-by-level", func(b *testing.B) {
		s := s
		s.PinnedLevel = NumLevels
		c := New(DefaultParams(), s)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Admit(MakeLevel(2, 3, 4), false)
			}
		})
	})
}

func TestAdmitAllocatesNothing(t *testing.T) {
	c := New(DefaultParams(), Settings{Enabled: true, MinLimit: 4, MaxLimit: 100, PinnedLevel: -1})
	if n := testing.AllocsPerRun(1000, func() {
		if c.Admit(MakeLevel(2, 3, 4), false).Forward() {
			c.Done(time.Millisecond, Answered, false)
		}
	}); n != 0 {
		t.Errorf("%.1f allocations per admission, want 0", n)
	}
}
