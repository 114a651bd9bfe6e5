// Package sample is the sample filter: a non-core route admits only a share of its users,
// and the rest get the route's fallback answer (verdict sample/dropped).
//
// The draw is per user and per window, DAGOR-style: a user's key is hashed with a salt
// derived from the window number floor(wall clock / window), so within one window a user
// is consistently in or out (retrying does not help, and does not add load), every gateway
// instance draws the same (the salt needs only the wall clock), and at the next window
// every user draws again, so that different users get their turn. For the same window
// the users kept at a smaller ratio are a subset of those kept at a larger one, on every
// route: a user let into one degraded feature is let into the others.
//
// A request without the key is drawn on its own from a cheap per-request source (the
// request's monotonic time mixed with a per-filter atomic counter): no lock, no
// allocation.
//
// A dropped request carries Retry-After: the time left in the window, plus a per-user
// jitter of up to 1/8 of the window (at most 5s) so that the dropped users do not all
// return on the same second.
package sample

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/filters"
)

// maxJitter caps the Retry-After jitter added after the end of the window.
const maxJitter = 5 * time.Second

// windowSeed separates the window salt from other uses of filters.Mix.
const windowSeed = 0x5a3d_8c1f_0b7e_24a9

// Sampler is a built sample filter. It is immutable after Build except for the keyless
// draw counter and the metrics, both atomics.
type Sampler struct {
	key    filters.KeySpec
	window int64 // ns
	jitter int64 // ns, the span of the Retry-After jitter
	// threshold: a draw below it is kept (ratio * 2^64); all/none make 1 and 0 exact.
	threshold uint64
	all, none bool

	dropped *filters.Reason
	badKey  *filters.Reason // the key given twice or malformed

	keptUser, keptNone, droppedUser, droppedNone prometheus.Counter

	_   [64]byte // keep the counter off the read-mostly fields' cache line
	seq atomic.Uint64
}

// Decide implements filters.Filter.
func (s *Sampler) Decide(r *filters.Request) filters.Result {
	h, st := s.key.Hash(r)
	if st == filters.KeyBad {
		s.droppedUser.Inc()
		return filters.RejectWith(s.badKey)
	}
	keyed := st == filters.KeyFound
	var draw uint64
	if keyed {
		draw = filters.Mix(h, windowSalt(r.Wall, s.window))
	} else {
		draw = filters.Mix(uint64(r.Now), s.seq.Add(1))
	}
	if s.all || (!s.none && draw < s.threshold) {
		if keyed {
			s.keptUser.Inc()
		} else {
			s.keptNone.Inc()
		}
		return filters.Pass
	}
	if keyed {
		s.droppedUser.Inc()
	} else {
		s.droppedNone.Inc()
	}
	return filters.Result{Action: filters.Reject, Reason: s.dropped, RetryAfter: s.retryAfter(r.Wall, draw)}
}

// windowSalt is the salt shared by all instances for the window that wall (Unix ns) is in.
func windowSalt(wall, window int64) uint64 {
	return filters.Mix(uint64(floorDiv(wall, window)), windowSeed)
}

// retryAfter is the time left in the window plus a jitter taken from the draw's low bits
// (the decision used its high bits: draw < threshold).
func (s *Sampler) retryAfter(wall int64, draw uint64) time.Duration {
	left := s.window - floorMod(wall, s.window)
	if s.jitter > 0 {
		left += int64((draw & 0xffff_ffff) % uint64(s.jitter))
	}
	return time.Duration(left)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

var _ filters.Filter = (*Sampler)(nil)
