package loadgen

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/floodgate/floodgate/bench/profile"
)

// fakeClock jumps to whatever time the pacer sleeps until.
type fakeClock struct{ t time.Duration }

func (f *fakeClock) now() time.Duration { return f.t }
func (f *fakeClock) sleepUntil(_ context.Context, t time.Duration) {
	if t > f.t {
		f.t = t
	}
}

func ramp(from, to profile.Rate, d time.Duration) profile.Stage {
	return profile.Stage{Ramp: &profile.Ramp{From: from, To: to, Duration: d}}
}
func hold(r profile.Rate, d time.Duration) profile.Stage {
	return profile.Stage{Hold: &profile.Hold{Rate: r, Duration: d}}
}
func spike(r profile.Rate, rise, d time.Duration) profile.Stage {
	return profile.Stage{Spike: &profile.Spike{Rate: r, Rise: rise, Duration: d}}
}

// perSecond runs the pacer on a fake clock and counts dispatches per second of the clock.
func perSecond(t *testing.T, stages []profile.Stage, plan float64, max int64) []int {
	t.Helper()
	s := NewSchedule(stages, plan)
	clk := &fakeClock{}
	var counts []int
	var last time.Duration
	p := &pacer{sched: s, pick: newPicker([]float64{1}), max: max}
	n := p.run(context.Background(), clk, func(j job) bool {
		if j.at != clk.now() {
			t.Fatalf("dispatched at %v, intended %v", clk.now(), j.at)
		}
		if j.at < last {
			t.Fatalf("send at %v before the previous one at %v", j.at, last)
		}
		last = j.at
		sec := int(j.at / time.Second)
		for len(counts) <= sec {
			counts = append(counts, 0)
		}
		counts[sec]++
		return true
	})
	total := 0
	for _, c := range counts {
		total += c
	}
	if int64(total) != n {
		t.Fatalf("pacer says %d sends, counted %d", n, total)
	}
	return counts
}

func TestPacerSchedulePerSecond(t *testing.T) {
	tests := []struct {
		name   string
		plan   float64
		stages []profile.Stage
		want   []int
	}{
		{"hold", 0, []profile.Stage{hold(profile.Abs(1000), 3*time.Second)}, []int{1000, 1000, 1000}},
		{"hold fractional rate", 0, []profile.Stage{hold(profile.Abs(2.5), 4*time.Second)}, []int{3, 2, 3, 2}},
		// integral of a 0->1000/s ramp over [s, s+1) is 100s+50
		{"ramp up", 0, []profile.Stage{ramp(profile.Abs(0), profile.Abs(1000), 10*time.Second)},
			[]int{50, 150, 250, 350, 450, 550, 650, 750, 850, 950}},
		{"ramp down", 0, []profile.Stage{ramp(profile.Abs(1000), profile.Abs(0), 4*time.Second)},
			[]int{875, 625, 375, 125}},
		{"relative rates", 4000, []profile.Stage{hold(profile.Rel(0.5), time.Second), hold(profile.Rel(1), time.Second), hold(profile.Rel(1.6), time.Second)},
			[]int{2000, 4000, 6400}},
		// instant spike: 100/s, then 1000/s for 2 s, then back to 100/s
		{"spike", 0, []profile.Stage{hold(profile.Abs(100), 2*time.Second), spike(profile.Abs(1000), 0, 2*time.Second), hold(profile.Abs(100), time.Second)},
			[]int{100, 100, 1000, 1000, 100}},
		// spike with a 1 s rise from 200 to 1000 (600 in that second), then 1000 for 2 s
		{"spike with rise", 0, []profile.Stage{hold(profile.Abs(200), time.Second), spike(profile.Abs(1000), time.Second, 3*time.Second)},
			[]int{200, 600, 1000, 1000}},
		{"zero-rate gap", 0, []profile.Stage{hold(profile.Abs(10), time.Second), hold(profile.Abs(0), 2*time.Second), hold(profile.Abs(10), time.Second)},
			[]int{10, 0, 0, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := perSecond(t, tc.stages, tc.plan, 0)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d seconds %v, want %d %v", len(got), got, len(tc.want), tc.want)
			}
			for i := range got {
				if d := got[i] - tc.want[i]; d < -1 || d > 1 {
					t.Errorf("second %d: %d sends, want %d (+-1)\nall: %v", i, got[i], tc.want[i], got)
				}
			}
			s := NewSchedule(tc.stages, tc.plan)
			sum := 0
			for _, c := range tc.want {
				sum += c
			}
			if math.Abs(float64(s.Count()-int64(sum))) > 1 {
				t.Errorf("Count() = %d, want %d", s.Count(), sum)
			}
		})
	}
}

func TestPacerStopsAtMax(t *testing.T) {
	got := perSecond(t, []profile.Stage{hold(profile.Abs(1000), 10*time.Second)}, 0, 1500)
	if len(got) != 2 || got[0] != 1000 || got[1] != 500 {
		t.Fatalf("got %v, want [1000 500]", got)
	}
}

func TestPacerStopsOnCancel(t *testing.T) {
	s := NewSchedule([]profile.Stage{hold(profile.Abs(1000), 10*time.Second)}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	p := &pacer{sched: s, pick: newPicker([]float64{1})}
	n := p.run(ctx, &fakeClock{}, func(j job) bool {
		if j.at >= 2*time.Second {
			cancel()
		}
		return true
	})
	if n < 2000 || n > 2001 {
		t.Fatalf("sent %d after cancelling at 2 s, want 2000-2001", n)
	}
}

func TestScheduleCumAndRate(t *testing.T) {
	s := NewSchedule([]profile.Stage{ramp(profile.Abs(0), profile.Abs(100), 10*time.Second), hold(profile.Abs(100), 5*time.Second)}, 0)
	if s.Duration() != 15*time.Second {
		t.Fatalf("duration %v", s.Duration())
	}
	if got := s.Expected(); got != 1000 {
		t.Fatalf("expected %v sends, want 1000", got)
	}
	if got := s.CumAt(10 * time.Second); got != 500 {
		t.Fatalf("CumAt(10s) = %v, want 500", got)
	}
	if got := s.RateAt(5 * time.Second); got != 50 {
		t.Fatalf("RateAt(5s) = %v, want 50", got)
	}
	if got := s.PeakRate(); got != 100 {
		t.Fatalf("PeakRate = %v", got)
	}
}

func TestPickerExactShares(t *testing.T) {
	p := newPicker([]float64{40, 10, 35, 15})
	counts := make([]int, 4)
	for i := 0; i < 1000; i++ {
		counts[p.next()]++
	}
	want := []int{400, 100, 350, 150}
	for i := range want {
		if counts[i] != want[i] {
			t.Fatalf("route shares %v, want %v", counts, want)
		}
	}
}
