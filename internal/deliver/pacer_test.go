package deliver

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a clock that only moves when the pacer sleeps or the test advances it.
type fakeClock struct{ t time.Time }

func (c *fakeClock) pacer() *pacer {
	return &pacer{clock: func() time.Time { return c.t }, sleep: func(_ context.Context, d time.Duration) bool { c.t = c.t.Add(d); return true }}
}

// calls counts the calls the pacer lets through at rate until the clock passed d.
func calls(p *pacer, c *fakeClock, rate float64, d time.Duration) int {
	end := c.t.Add(d)
	n := 0
	for {
		p.wait(context.Background(), rate)
		if c.t.After(end) {
			return n
		}
		n++
	}
}

func TestPacer(t *testing.T) {
	for _, tc := range []struct {
		desc string
		// before runs first (e.g. a stall), then the pacer runs 1 s at 100/s
		before func(p *pacer, c *fakeClock)
		want   int
	}{
		{"steady", func(*pacer, *fakeClock) {}, 101},
		{"a 300 ms stall mid-work is caught up", func(p *pacer, c *fakeClock) {
			calls(p, c, 100, 500*time.Millisecond)
			c.t = c.t.Add(300 * time.Millisecond)
		}, 30 + 100}, // the 30 calls owed at once, then 100 in the rest of the second
		{"a 5 s stall is caught up by one second at most", func(p *pacer, c *fakeClock) {
			calls(p, c, 100, 500*time.Millisecond)
			c.t = c.t.Add(5 * time.Second)
		}, 101 + 100},
		{"after waiting for the queue no catching up", func(p *pacer, c *fakeClock) {
			calls(p, c, 100, 500*time.Millisecond)
			c.t = c.t.Add(5 * time.Second)
			p.idle()
		}, 101},
	} {
		c := &fakeClock{t: time.Unix(1000, 0)}
		p := c.pacer()
		tc.before(p, c)
		if got := calls(p, c, 100, time.Second); got != tc.want {
			t.Errorf("%s: %d calls in the next second at 100/s, want %d", tc.desc, got, tc.want)
		}
	}
	c := &fakeClock{t: time.Unix(1000, 0)}
	if c.pacer().wait(context.Background(), 0) {
		t.Error("rate 0 let a call through")
	}
}
