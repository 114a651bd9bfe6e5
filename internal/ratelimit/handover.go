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

// KeyHandover carries the buckets of a Table's keys over a change of their limit, as
// Handover does for one bucket: the filter built with the new limit gets a new, empty
// table, and a key that is not in it yet (its first request after the change) starts
// from the tokens it held in the old table under the old limit - fractions included, at
// most the new burst - instead of from a full bucket. A key the old table does not hold
// (or holds full) starts full, as it would have.
//
// The old table is only read, never changed, so a configuration that is built and then
// not applied leaves it as it was. It is consulted until it can hold no live key: one
// window (the longest Tau + maxWait used with it, plus a second) after the first request
// under the new limit; then it is let go (the handover keeps no reference to it) and a
// miss costs nothing more than in a plain table. A change that comes while an earlier
// handover still runs chains to it: a key untouched since both changes is carried
// through both limits.
type KeyHandover struct {
	from  atomic.Pointer[Table]
	next  atomic.Pointer[KeyHandover] // from's own handover, while it runs
	rate  float64                     // the limit from's buckets were kept under (before Share)
	burst int64
	start atomic.Int64 // the first request's time under the new limit (0: none yet)
}

// maxChain bounds how many running handovers a new one chains to (limit changes less than
// one window apart); older ones are let go, their keys start full.
const maxChain = 4

// NewKeyHandover returns the handover from table from, whose buckets were kept under
// NewLimit(rate, burst) (or its Share), and which was itself carrying prev's keys (nil:
// none).
func NewKeyHandover(from *Table, rate float64, burst int64, prev *KeyHandover) *KeyHandover {
	h := &KeyHandover{rate: rate, burst: burst}
	h.from.Store(from)
	if prev != nil && prev.from.Load() != nil {
		h.next.Store(prev)
		// cut the chain after maxChain links
		p := prev
		for i := 1; p != nil; i++ {
			n := p.next.Load()
			if i >= maxChain-1 && n != nil {
				p.next.Store(nil)
				break
			}
			p = n
		}
	}
	return h
}

// Running reports whether the old table is still consulted (for tests and diagnostics).
func (h *KeyHandover) Running() bool { return h.from.Load() != nil }

// carry returns the state key would have under limit l at time now, carried from the old
// table(s), with n the instance count the limits are shared among; ok is false when the
// old tables do not hold key (it starts full).
func (h *KeyHandover) carry(key uint64, now int64, l Limit, n int64) (tat int64, ok bool) {
	from := h.from.Load()
	if from == nil {
		return 0, false
	}
	start := h.start.Load()
	if start == 0 {
		h.start.CompareAndSwap(0, now)
		start = h.start.Load()
	}
	if now-start > from.horizon.Load() {
		// every bucket of the old table is full again: let it go
		h.from.Store(nil)
		h.next.Store(nil)
		return 0, false
	}
	old := Share(h.rate, h.burst, n)
	tat, ok = from.peek(key, now)
	if !ok {
		if next := h.next.Load(); next != nil {
			tat, ok = next.carry(key, now, old, n)
		}
	}
	if !ok {
		return 0, false
	}
	return Carry(tat, now, old, l), true
}
