// Package ratelimit holds floodgate's exact rate limiters: Bucket (one limit, e.g. a
// route or a promotion tier) and Table (one limit per key, for millions of keys in
// bounded memory). Both implement GCRA, the "generic cell rate algorithm", in integer
// nanoseconds (a Table keeps its times to 16 ns), updated with compare-and-swap: no
// locks, no allocations, no clock reads.
// Time is always a parameter, as in golang.org/x/time/rate's AllowN(now, n).
package ratelimit

import (
	"math"
	"time"
)

// Limit is a rate and a burst, in the form the limiters use: the interval between two
// tokens and the tolerance (how far ahead of now the bucket's "theoretical arrival time"
// may run, Burst x Interval). Make one with NewLimit or Share.
type Limit struct {
	// Interval is the time one token takes to come back, in ns (1e9 / rate, rounded up).
	Interval int64
	// Burst is the bucket's capacity in tokens (>= 1).
	Burst int64
	// Tau is Burst x Interval: a full bucket's worth of time.
	Tau int64
}

// Bounds of what NewLimit accepts; configurations should validate against them.
const (
	// MaxRate is one token per nanosecond.
	MaxRate = 1e9
	// MaxWindow bounds Burst / rate (the time a full bucket takes to refill), so that
	// every sum in the limiters stays far from overflowing int64.
	MaxWindow = 24 * time.Hour
)

// NewLimit returns the limit of rate tokens per second with a bucket of burst tokens.
// rate must be in (0, MaxRate] and burst >= 1; burst/rate must not exceed MaxWindow.
//
// The interval is rounded up to a whole nanosecond, so a limiter never admits more than
// the rate: rates that divide 1e9 (10, 1000, 20000/s) are exact, others run slow by at
// most rate/1e9 (0.002% at 20,000/s, 0.1% at 1,000,000/s).
func NewLimit(rate float64, burst int64) Limit { return Share(rate, burst, 1) }

// Share returns one of n equal shares of a limit that n instances enforce together: the
// rate rate/n and the burst ceil(burst/n) (at least 1). The time a full bucket takes to
// refill stays the same for every n (up to the rounding of the burst), so a bucket's
// state (a time) means the same share of its burst before and after n changes.
func Share(rate float64, burst, n int64) Limit {
	if n < 1 {
		n = 1
	}
	if rate <= 0 || math.IsNaN(rate) {
		rate = 1e-9
	}
	iv := math.Ceil(1e9 * float64(n) / rate)
	if iv < 1 {
		iv = 1
	}
	if iv > float64(MaxWindow) {
		iv = float64(MaxWindow)
	}
	b := (burst + n - 1) / n
	if b < 1 {
		b = 1
	}
	l := Limit{Interval: int64(iv), Burst: b}
	l.Tau = l.Interval * l.Burst
	if l.Tau/l.Burst != l.Interval || l.Tau > int64(MaxWindow)*2 {
		// Out of the validated range: clamp rather than overflow.
		l.Burst = int64(MaxWindow) * 2 / l.Interval
		if l.Burst < 1 {
			l.Burst = 1
		}
		l.Tau = l.Interval * l.Burst
	}
	return l
}

// Rate returns the limit's rate in tokens per second.
func (l Limit) Rate() float64 { return 1e9 / float64(l.Interval) }

// Decision is what a limiter decided for one request.
type Decision struct {
	// OK is true when the request conforms: it took a token, at once (Delay == 0) or
	// reserved for later (Delay > 0: the caller must wait Delay before going on).
	OK bool
	// Delay, when OK, is how long the caller must wait for its reserved token. When not
	// OK, it is how long until the next token is due: the earliest a retry could pass.
	Delay int64
}

// clampSlack is how far beyond its largest valid value a state must be before conform
// treats it as left over from a larger limit (rather than from a request timed a little
// later than this one).
const clampSlack = int64(time.Second)

// conform is GCRA. tat is the bucket's theoretical arrival time (the time at which the
// bucket is full again); a request at now takes one token and moves it one interval on,
// and conforms if the new tat is no more than Tau ahead of now (plus maxWait when the
// caller can queue). It returns the tat to store, whether to store it, and the decision.
//
// Under an unchanged limit tat never runs more than Tau + maxWait ahead of now. A state
// further ahead (by more than clampSlack) was left by a limit with a longer window (the
// limit was raised, or its burst cut): the bucket is empty, and it is clamped to "empty
// under the new limit", so that raising a limit never keeps a drained key waiting for
// the old, longer window.
func conform(tat, now int64, l Limit, maxWait int64) (int64, bool, Decision) {
	clamped := false
	if top := now + l.Tau + maxWait; tat > top+clampSlack {
		tat, clamped = top, true
	}
	if tat < now {
		tat = now // a bucket that is full is full: unused tokens do not pile up
	}
	next := tat + l.Interval
	delay := next - now - l.Tau
	switch {
	case delay <= 0:
		return next, true, Decision{OK: true}
	case delay <= maxWait:
		return next, true, Decision{OK: true, Delay: delay}
	}
	return tat, clamped, Decision{Delay: delay}
}

// Jitter returns a well-spread value in [0, max) derived from seed (e.g. the request time
// mixed with a key hash), for Retry-After spreading without a shared random source.
func Jitter(seed uint64, max int64) int64 {
	if max <= 0 {
		return 0
	}
	z := seed + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int64(z % uint64(max))
}
