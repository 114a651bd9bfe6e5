package ratelimit

import "sync/atomic"

// Handover carries a bucket's tokens over a change of its limit: a live burst cut is not
// a blackout and a burst or rate raise is not a free burst.
//
// A Bucket's state is a time (see Bucket), whose meaning in tokens depends on the limit:
// kept as it is, a bucket drained under rate 300/s, burst 300 (full again 1 s ahead)
// read under burst 30 (a 100 ms window) admits nothing for 0.9 s, and a bucket drained
// under burst 30 read under burst 300 holds 270 tokens at once. A Handover converts the
// old bucket's state once, at the first request after the change, into the new bucket:
// the tokens it held under the old limit (fractions included), at most the new burst;
// from then on the new bucket refills at the new rate. Until the conversion is done
// (the one request doing it), requests keep using the old bucket under the old limit.
type Handover struct {
	state atomic.Uint32 // 0: pending, 1: converting, 2: done
	from  *Bucket
	to    *Bucket
}

// NewHandover returns the handover from the bucket from to a new, empty bucket.
func NewHandover(from *Bucket) *Handover { return &Handover{from: from, to: new(Bucket)} }

// Pick returns the bucket and the limit to use at time now: the new bucket under l once
// the tokens of the old bucket (under old) have been carried into it.
func (h *Handover) Pick(now int64, old, l Limit) (*Bucket, Limit) {
	if h.state.Load() == 2 {
		return h.to, l
	}
	if !h.state.CompareAndSwap(0, 1) {
		return h.from, old // another request is converting
	}
	h.to.tat.Store(Carry(h.from.tat.Load(), now, old, l))
	h.state.Store(2)
	return h.to, l
}

// Source returns the bucket still holding the state when the handover has not happened
// yet, else nil (a handover of a handover starts from it).
func (h *Handover) Source() *Bucket {
	if h.state.Load() == 2 {
		return nil
	}
	return h.from
}

// Bucket returns the new bucket (for tests and diagnostics).
func (h *Handover) Bucket() *Bucket { return h.to }

// Carry converts the state tat of a bucket under limit old, at time now, into the state
// under limit l that holds the same tokens (fractions included), at most l's burst.
func Carry(tat, now int64, old, l Limit) int64 {
	if tat < now {
		tat = now
	}
	credit := now + old.Tau - tat // time worth of tokens held under old
	if credit <= 0 {
		return now + l.Tau // empty: the next token one new interval on
	}
	newCredit := float64(credit) * float64(l.Interval) / float64(old.Interval)
	if newCredit >= float64(l.Tau) {
		return now // full under the new limit
	}
	return now + l.Tau - int64(newCredit)
}
