package ratelimit

import "sync/atomic"

// Bucket is one exact token bucket, safe for concurrent use without locks.
//
// It implements GCRA ("generic cell rate algorithm", the virtual-scheduling form of a
// token bucket): the whole state is one int64, the theoretical arrival time (TAT) - the
// instant, in nanoseconds on the caller's monotonic clock, at which the bucket will be
// full again. A request at time now takes a token by moving the TAT one Interval forward
// (from now if the TAT is already past); it conforms if the new TAT is at most Tau
// (= Burst x Interval) ahead of now. The update is a compare-and-swap loop, so n
// goroutines taking tokens at the same instant from a bucket of burst b get exactly b
// tokens, and over any period t a bucket admits at most b + rate x t requests (ideal + 1
// at most, whatever the interleaving). A request that does not conform changes nothing
// (but see below for a state left by a limit with a longer window).
//
// Time is a parameter: the caller passes now (filters use Request.Now), so tests step a
// fake clock through a table and never sleep:
//
//	var b ratelimit.Bucket                       // the zero value is a full bucket
//	lim := ratelimit.NewLimit(1000, 100)         // 1000/s, burst 100
//	if d := b.Reserve(now, lim, 0); !d.OK {
//		retryIn := d.Delay                       // ns until the next token is due
//	}
//
// The limit is also a parameter, not part of the state, so one bucket can be enforced
// with a limit that changes while it runs (a live rate change, a global limit re-split
// across a different number of gateway instances): the state stays a time, so a bucket
// that was drained stays drained for as long as it would have, and the tokens it then
// holds follow the new limit. When burst x interval is the same before and after (the
// default burst is rate/10, a 100 ms window, and Share keeps it across instance counts)
// this keeps the exact share of the bucket. Otherwise: after a change to a shorter window
// (rate raised, burst kept) a drained bucket waits out its old debt, but never more than
// one second beyond the new window (a longer debt is clamped to "empty under the new
// limit", so a key of "100 an hour" raised to "200 an hour" gets its next token 18 s
// later, not an hour later); after a change to a longer window
// (rate cut, burst kept) a drained bucket holds burst x (1 - new rate / old rate) tokens
// at once - less than its burst - and the new rate from then on.
//
// now must not be negative (the zero value's TAT is 0, "full since the beginning").
// Calls may come with slightly older times than earlier calls (requests timed on arrival
// and decided a little later); such a request is judged against the newer state.
type Bucket struct {
	tat atomic.Int64
	_   [56]byte // keep hot buckets of one filter on separate cache lines
}

// Reserve takes one token at time now (ns) under limit l. If the token is due within
// maxWait (ns, 0 = no queueing) it is reserved and the decision says how long to wait;
// otherwise nothing changes and Decision.Delay says when the next token will be due.
func (b *Bucket) Reserve(now int64, l Limit, maxWait int64) Decision {
	for {
		old := b.tat.Load()
		tat, write, d := conform(old, now, l, maxWait)
		if !write || b.tat.CompareAndSwap(old, tat) {
			return d
		}
	}
}

// Allow reports whether a token can be taken at time now, and takes it.
func (b *Bucket) Allow(now int64, l Limit) bool { return b.Reserve(now, l, 0).OK }

// Tokens returns how many whole tokens the bucket holds at time now under l (for tests
// and diagnostics).
func (b *Bucket) Tokens(now int64, l Limit) int64 {
	return tokens(b.tat.Load(), now, l)
}

func tokens(tat, now int64, l Limit) int64 {
	if tat < now {
		tat = now
	}
	return max(0, (now+l.Tau-tat)/l.Interval)
}
