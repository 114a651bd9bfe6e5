package ratelimit

import (
	"math"
	"math/bits"
	"sync/atomic"

	"github.com/floodgate/floodgate/internal/hugepage"
)

const (
	// Ways is the number of slots in a set: 8 slots of 8 bytes fill one 64-byte cache
	// line. A key may live in any slot of two sets that its hash picks.
	Ways = 8
	// SlotBytes is the memory one slot takes.
	SlotBytes = 8
	// TimeUnit is the resolution, in ns, of the times a Table keeps.
	TimeUnit = 1 << unitShift

	unitShift = 4
	timeBits  = 44 // times in TimeUnits, modulo 2^44: a cycle of 2^48 ns (78 hours)
	timeMask  = 1<<timeBits - 1
	tagBits   = 64 - timeBits
	// cleanAge: a slot whose bucket has been full for longer than this is cleared when a
	// new key looks for room in its set, long before its time could wrap around.
	cleanAge = int64(3600e9)
)

// Table is a set of exact token buckets, one per key, for millions of keys in a fixed
// amount of memory, safe for concurrent use without locks.
//
// Each key (a 64-bit hash, e.g. filters.KeySpec.Hash of a user number) gets a GCRA bucket
// like Bucket: its state is the time at which the key's bucket is full again (TAT). The
// table is an array of atomic uint64 slots, each holding one key's state and 20 bits of
// its hash (the tag): tag << 44 | TAT in units of 16 ns, modulo 2^44. Every update is a
// compare-and-swap of the whole slot, so a slot changes owner and state in one step and
// a request can never update a slot that another key took meanwhile. Slots are grouped in
// sets of Ways (one 64-byte cache line); a key lives in any slot of two sets chosen by
// its hash ("two choices": a new key goes to the set with more free slots, which keeps
// the sets balanced up to a high load), so a lookup reads one cache line, two for a key
// in its second set or a new key, and never probes further. Memory is 8 bytes per slot,
// fixed when the table is made: NewTable(maxKeys) rounds maxKeys up to a power of two.
// A table of 2 MiB and more (256Ki slots) sits on 2 MiB transparent huge pages
// (internal/hugepage, one huge page of extra memory): a lookup at random in a large table
// otherwise misses the TLB nearly every time, and on a virtual machine that walk cost
// more than the rest of the filter (bench/RESULTS.md, "Huge pages").
//
// Keys expire by themselves: a key whose TAT has passed has a full bucket, which is the
// state of a key never seen, so its slot is free for another key and reusing it loses
// nothing. Only keys that hold less than a full bucket ("live" keys: seen within their
// last Burst/rate) need a slot. When both of a new key's sets are full of live keys, the
// live key whose bucket is nearest to full (the stalest) is evicted: that key forgets
// its debt and may get up to one more burst when it comes back. Reserve reports every
// such eviction so that the caller can count it. Measured (TestTableEvictionRate), the
// share of new keys that evict a live key when that many keys are live at once: none at
// 50% of the slots, 1 in 50,000 at 75%, 0.7% at 90%, 4% at 100%. Size the table for
// one and a half times the live keys expected at peak.
//
// Exactness. One key's requests are exact like Bucket's: n simultaneous requests of a
// new or known key against burst b admit exactly b, and 5x the rate for 5 s admits
// between 0.999 x ideal and ideal + 1. Times are kept to 16 ns, rounded up: a key gets at
// most 16 ns less per token than its rate (none when the interval is a multiple of 16 ns,
// as for 10, 1000 and 20000/s; 0.03% at most near 20,000/s per key). The approximations,
// all rare, and all but the last on the side of admitting less:
//   - A key is known by its sets and its 20-bit tag, so a new key whose tag equals that
//     of a live key in one of its two sets shares that key's bucket while both are live:
//     about 1 new key in 60,000 when the sets are full of live keys (the two are then
//     limited together; neither ever gets more than its rate).
//   - Times wrap around every 78 hours: a slot's time is read as the one nearest to now.
//     The table remembers the longest window (Tau + maxWait + 1s) any limit used with it
//     had; a time further ahead of now than that is a slot idle for days whose time
//     wrapped, read as a full bucket. A time ahead by more than the current window but
//     not the longest was left by a limit with a longer window (the limit was raised):
//     it is read as "empty under the current limit" (the next token one interval later).
//     A wrapped time can pass for a real one only within one window in 39 hours (for a
//     100 ms window, about 1 chance in 100,000 for a key away for 39 to 78 hours), and
//     then delays that key by one interval. Slots idle for over an hour are cleared
//     whenever a new key looks for room in their set.
//   - If, in the nanoseconds between the first two requests of a new key choosing a
//     slot, a third key changes the same sets, the two may take different slots: one
//     extra burst for that key, once (every later request finds the first slot).
type Table struct {
	slots   []atomic.Uint64
	mask    uint64 // number of sets - 1
	shift   uint   // 64 - log2(number of sets), for the second choice
	maxKeys int
	// horizon is the longest window (Tau + maxWait + clampSlack) of any limit used with
	// the table: no real time is further ahead of now.
	horizon atomic.Int64
}

// NewTable makes a table for maxKeys keys: max(maxKeys, 2 x Ways) rounded up to a power
// of two slots.
func NewTable(maxKeys int) *Table {
	n := 2 * Ways
	for n < maxKeys {
		n <<= 1
	}
	sets := n / Ways
	return &Table{
		slots:   hugepage.Slice[atomic.Uint64](n),
		mask:    uint64(sets - 1),
		shift:   uint(64 - bits.TrailingZeros(uint(sets))),
		maxKeys: maxKeys,
	}
}

// MaxKeys is the maxKeys the table was made for.
func (t *Table) MaxKeys() int { return t.maxKeys }

// Slots is the number of slots (keys it can hold at most).
func (t *Table) Slots() int { return len(t.slots) }

// Bytes is the memory the table takes: its slots, and the alignment of a large table to
// huge pages.
func (t *Table) Bytes() int { return len(t.slots)*SlotBytes + hugepage.Extra(len(t.slots)*SlotBytes) }

// Reserve takes one token of key's bucket at time now under limit l, like
// Bucket.Reserve. evicted reports that a live key lost its slot to make room for key.
func (t *Table) Reserve(key uint64, now int64, l Limit, maxWait int64) (d Decision, evicted bool) {
	return t.ReserveCarried(key, now, l, maxWait, nil, 1)
}

// ReserveCarried is Reserve for a table that took over from another one at a change of
// limit: a key the table does not hold yet starts from the tokens it held in the old
// table (h; nil: none), with n the number of instances the limits are shared among (1:
// not shared).
func (t *Table) ReserveCarried(key uint64, now int64, l Limit, maxWait int64, h *KeyHandover, n int64) (d Decision, evicted bool) {
	tag := tagOf(key)
	a, b := t.sets(key)
	// Touch both sets' cache lines at once, so that their misses overlap rather than
	// come one after the other.
	_ = a[0].Load() | b[0].Load()
	horizon := l.Tau + maxWait + clampSlack
	longest := t.horizon.Load()
	for horizon > longest && !t.horizon.CompareAndSwap(longest, horizon) {
		longest = t.horizon.Load()
	}
	longest = max(longest, horizon)
	for {
		s, v := find(a, tag)
		if s == nil {
			s, v = find(b, tag)
		}
		tat, live := now, false // a new key (or one evicted earlier): its bucket is full
		if s != nil {
			tat = tatOf(v, now, longest)
		} else {
			// claim looks for the key again as it scans the sets, so that two first
			// requests of a key take the same slot (see Table).
			var found bool
			if s, v, live, found = claim(a, b, tag, now, horizon, longest); found {
				tat = tatOf(v, now, longest)
			} else if h != nil {
				if c, ok := h.carry(key, now, l, n); ok {
					tat = c
				}
			}
		}
		next, write, dec := conform(tat, now, l, maxWait)
		if !write {
			return dec, false
		}
		if s.CompareAndSwap(v, encode(tag, next)) {
			return dec, live
		}
		// The slot changed under us (another request of our key, or another key took
		// it): look again.
	}
}

// tatOf reads the TAT held in slot value v at time now. A time beyond the current horizon
// but within the longest is left as it is (conform clamps it); beyond the longest it
// wrapped: the bucket is full (see Table).
func tatOf(v uint64, now, longest int64) int64 {
	if r := rel(v, now); r <= longest {
		return now + r
	}
	return now
}

// Tokens returns how many whole tokens key holds at time now under l (a full bucket if
// the table does not hold key).
func (t *Table) Tokens(key uint64, now int64, l Limit) int64 {
	tat, ok := t.peek(key, now)
	if !ok {
		return l.Burst
	}
	return tokens(tat, now, l) // an expired bucket's state is now: full
}

// peek returns the state of key at time now, if the table holds it (a live or an expired
// bucket), without changing anything.
func (t *Table) peek(key uint64, now int64) (tat int64, ok bool) {
	tag := tagOf(key)
	a, b := t.sets(key)
	s, v := find(a, tag)
	if s == nil {
		s, v = find(b, tag)
	}
	if s == nil {
		return 0, false
	}
	return tatOf(v, now, t.horizon.Load()), true
}

// Live counts the keys whose bucket is not full at time now (it reads every slot: for
// tests and diagnostics, not for the request path).
func (t *Table) Live(now int64) int {
	n, longest := 0, t.horizon.Load()
	for i := range t.slots {
		if v := t.slots[i].Load(); v != 0 {
			if r := rel(v, now); r > 0 && r <= longest {
				n++
			}
		}
	}
	return n
}

// sets returns the two sets key may live in.
func (t *Table) sets(key uint64) (a, b *[Ways]atomic.Uint64) {
	ia := key & t.mask
	ib := (key * 0x9e3779b97f4a7c15) >> t.shift
	if ib == ia {
		ib ^= 1
	}
	return (*[Ways]atomic.Uint64)(t.slots[ia*Ways : ia*Ways+Ways]), (*[Ways]atomic.Uint64)(t.slots[ib*Ways : ib*Ways+Ways])
}

// tagOf is the part of key a slot keeps: its top 20 bits, never 0 (0 is a free slot).
func tagOf(key uint64) uint64 {
	tag := key >> timeBits
	if tag == 0 {
		tag = 1
	}
	return tag
}

func find(set *[Ways]atomic.Uint64, tag uint64) (*atomic.Uint64, uint64) {
	for i := range set {
		if v := set[i].Load(); v>>timeBits == tag {
			return &set[i], v
		}
	}
	return nil, 0
}

func encode(tag uint64, tat int64) uint64 {
	// Round up to a whole unit: a key never gets a token early.
	return tag<<timeBits | uint64((tat+TimeUnit-1)>>unitShift)&timeMask
}

// rel returns slot value v's time minus now, in ns: the time is kept modulo 2^44 units,
// and read as the one nearest to now.
func rel(v uint64, now int64) int64 {
	nowU := now >> unitShift
	d := int64((v-uint64(nowU))<<tagBits) >> tagBits // sign-extend the 44-bit difference
	return (nowU+d)<<unitShift - now
}

// claim picks the slot to give to a new key: of its two sets, the one with more free
// slots (never used, or holding a bucket that is full again: expired, free to reuse), its
// first free slot; when both sets are full of live keys, the live slot whose bucket is
// nearest to full (the stalest). It returns the slot, its value (for the CAS) and whether
// taking it evicts a live key - or, with found, the slot that holds tag after all (taken
// by another request of the same key since find looked). On the way it clears slots idle
// for over cleanAge.
func claim(a, b *[Ways]atomic.Uint64, tag uint64, now, horizon, longest int64) (s *atomic.Uint64, v uint64, live, found bool) {
	fa, va, na, ok := scan(a, tag, now, longest)
	if ok {
		return fa, va, false, true
	}
	fb, vb, nb, ok := scan(b, tag, now, longest)
	switch {
	case ok:
		return fb, vb, false, true
	case fa != nil && na >= nb:
		return fa, va, false, false
	case fb != nil:
		return fb, vb, false, false
	}
	// Both sets are full of live keys (rare when the table is sized for its keys).
	sa, sva, ra := stalest(a, now, horizon)
	sb, svb, rb := stalest(b, now, horizon)
	if ra <= rb {
		return sa, sva, true, false
	}
	return sb, svb, true, false
}

// scan reads set: the slot holding tag, if any (ok); else its first free slot and its
// value, and the number of free slots.
func scan(set *[Ways]atomic.Uint64, tag uint64, now, longest int64) (s *atomic.Uint64, v uint64, nfree int, ok bool) {
	for i := range set {
		x := set[i].Load()
		if x>>timeBits == tag {
			return &set[i], x, 0, true
		}
		if x != 0 {
			r := rel(x, now)
			if r > 0 && r <= longest {
				continue // live
			}
			if r < -cleanAge || r > longest { // idle for long, or wrapped: clear it
				if set[i].CompareAndSwap(x, 0) {
					x = 0
				}
			}
		}
		if s == nil {
			s, v = &set[i], x
		}
		nfree++
	}
	return s, v, nfree, false
}

// stalest returns set's live slot whose bucket is nearest to full, its value and its
// time relative to now.
func stalest(set *[Ways]atomic.Uint64, now, horizon int64) (s *atomic.Uint64, v uint64, r int64) {
	r = math.MaxInt64
	for i := range set {
		x := set[i].Load()
		// A time beyond the horizon was left by a longer window: an empty bucket.
		if xr := min(rel(x, now), horizon); xr < r {
			s, v, r = &set[i], x, xr
		}
	}
	return s, v, r
}
