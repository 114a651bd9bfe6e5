package loadgen

import (
	"context"
	"time"
)

// clock is what the pacer needs from time; tests inject a fake one.
type clock interface {
	// now is the offset from the start of the drill.
	now() time.Duration
	// sleepUntil returns when the offset t is reached or ctx is done.
	sleepUntil(ctx context.Context, t time.Duration)
}

// realClock measures offsets on the monotonic clock from start.
type realClock struct{ start time.Time }

func (c realClock) now() time.Duration { return time.Since(c.start) }

// Go's timers wake up to about a millisecond late when nothing else is running; the pacer
// sleeps on a timer for the coarse part and finishes with a precise sleep (see
// sleep_linux.go) or, for the last few microseconds, a short spin. This keeps the
// generator's own lag (which counts in the measured latency) to tens of microseconds.
const (
	coarseMargin = 2 * time.Millisecond
	spinBelow    = 20 * time.Microsecond
)

func (c realClock) sleepUntil(ctx context.Context, t time.Duration) {
	d := t - c.now()
	if d > coarseMargin {
		tm := time.NewTimer(d - coarseMargin)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return
		}
		d = t - c.now()
	}
	if d > spinBelow {
		preciseSleep(d - spinBelow/2)
	}
	for c.now() < t {
		// spin for the last microseconds
	}
}
