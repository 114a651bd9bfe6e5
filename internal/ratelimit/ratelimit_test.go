package ratelimit

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	ms = int64(time.Millisecond)
	s  = int64(time.Second)
)

// limiter is what the shared tables below run against: a Bucket, or one key of a Table.
type limiter interface {
	Reserve(now int64, l Limit, maxWait int64) Decision
}

type tableKey struct {
	t   *Table
	key uint64
}

func (k tableKey) Reserve(now int64, l Limit, maxWait int64) Decision {
	d, _ := k.t.Reserve(k.key, now, l, maxWait)
	return d
}

// impls runs a test against every limiter, uber-go/ratelimit style.
func impls(t *testing.T, fn func(t *testing.T, newLimiter func() limiter)) {
	t.Run("bucket", func(t *testing.T) { fn(t, func() limiter { return &Bucket{} }) })
	t.Run("table", func(t *testing.T) {
		tbl := NewTable(1024)
		var next uint64
		fn(t, func() limiter { next += 0x9e3779b97f4a7c15; return tableKey{tbl, next} })
	})
}

func TestNewLimit(t *testing.T) {
	for _, c := range []struct {
		desc        string
		rate        float64
		burst, n    int64
		wantIv      int64
		wantBurst   int64
		wantTauNear int64
	}{
		{desc: "10/s", rate: 10, burst: 1, n: 1, wantIv: 100 * ms, wantBurst: 1},
		{desc: "1000/s burst 100", rate: 1000, burst: 100, n: 1, wantIv: ms, wantBurst: 100},
		{desc: "20000/s", rate: 20000, burst: 2000, n: 1, wantIv: 50_000, wantBurst: 2000},
		{desc: "3/s rounds the interval up", rate: 3, burst: 1, n: 1, wantIv: 333_333_334, wantBurst: 1},
		{desc: "half a token per second", rate: 0.5, burst: 1, n: 1, wantIv: 2 * s, wantBurst: 1},
		{desc: "global 20000/s over 4 instances", rate: 20000, burst: 2000, n: 4, wantIv: 200_000, wantBurst: 500},
		{desc: "global burst rounds up", rate: 20000, burst: 2001, n: 4, wantIv: 200_000, wantBurst: 501},
		{desc: "burst never below 1", rate: 10, burst: 1, n: 8, wantIv: 800 * ms, wantBurst: 1},
		{desc: "n below 1 counts as 1", rate: 10, burst: 1, n: 0, wantIv: 100 * ms, wantBurst: 1},
	} {
		l := Share(c.rate, c.burst, c.n)
		if l.Interval != c.wantIv || l.Burst != c.wantBurst || l.Tau != l.Interval*l.Burst {
			t.Errorf("%s: got %+v, want interval %d burst %d", c.desc, l, c.wantIv, c.wantBurst)
		}
	}
	if NewLimit(1000, 100) != Share(1000, 100, 1) {
		t.Errorf("NewLimit != Share(.., 1)")
	}
}

// TestReserve steps a fake clock through a table, as x/time/rate's tests do.
func TestReserve(t *testing.T) {
	type step struct {
		at        int64 // ns since start
		n         int   // requests at that instant
		maxWait   int64
		wantOK    int   // how many of them pass
		wantDelay int64 // Delay of the last decision
	}
	start := 10 * s
	lim := NewLimit(10, 3) // interval 100ms, burst 3
	cases := []struct {
		desc  string
		steps []step
	}{
		{desc: "burst then one per interval", steps: []step{
			{at: 0, n: 5, wantOK: 3, wantDelay: 100 * ms},
			{at: 50 * ms, n: 1, wantOK: 0, wantDelay: 50 * ms},
			{at: 100 * ms, n: 2, wantOK: 1, wantDelay: 100 * ms},
			{at: 199 * ms, n: 1, wantOK: 0, wantDelay: ms},
			{at: 200 * ms, n: 1, wantOK: 1},
		}},
		{desc: "a full bucket does not overfill", steps: []step{
			{at: 0, n: 1, wantOK: 1},
			{at: 10 * s, n: 4, wantOK: 3, wantDelay: 100 * ms},
		}},
		{desc: "refills one token per interval", steps: []step{
			{at: 0, n: 3, wantOK: 3},
			{at: 250 * ms, n: 3, wantOK: 2, wantDelay: 50 * ms},
		}},
		{desc: "queueing reserves a token due within maxWait", steps: []step{
			{at: 0, n: 3, wantOK: 3},
			{at: 0, n: 1, maxWait: 100 * ms, wantOK: 1, wantDelay: 100 * ms},
			{at: 0, n: 1, maxWait: 150 * ms, wantOK: 0, wantDelay: 200 * ms},
			{at: 0, n: 1, maxWait: 200 * ms, wantOK: 1, wantDelay: 200 * ms},
			{at: 150 * ms, n: 1, wantOK: 0, wantDelay: 150 * ms},
		}},
		{desc: "an older time is judged against the newer state", steps: []step{
			{at: 100 * ms, n: 3, wantOK: 3},
			{at: 90 * ms, n: 1, wantOK: 0, wantDelay: 110 * ms},
		}},
	}
	impls(t, func(t *testing.T, newLimiter func() limiter) {
		for _, c := range cases {
			lm := newLimiter()
			for i, st := range c.steps {
				ok := 0
				var last Decision
				for range st.n {
					last = lm.Reserve(start+st.at, lim, st.maxWait)
					if last.OK {
						ok++
					}
				}
				if ok != st.wantOK || last.Delay != st.wantDelay {
					t.Errorf("%s: step %d (at %v): %d passed (last delay %v), want %d (delay %v)",
						c.desc, i, time.Duration(st.at), ok, time.Duration(last.Delay), st.wantOK, time.Duration(st.wantDelay))
				}
			}
		}
	})
}

// TestLongRunning is x/time/rate's TestLongRunningQPS on a fake clock: 5x the rate
// offered evenly for 5 s admits at most ideal + 1 and at least 0.999 x ideal, where
// ideal = burst + rate x time.
func TestLongRunning(t *testing.T) {
	for _, rate := range []float64{10, 1000, 20000} {
		for _, burst := range []int64{1, int64(rate / 10), int64(rate)} {
			if burst < 1 {
				continue
			}
			impls(t, func(t *testing.T, newLimiter func() limiter) {
				lm := newLimiter()
				lim := NewLimit(rate, burst)
				const period = 5 * s
				offered := int64(5 * rate * 5)
				step := period / offered
				admitted := 0
				start := s
				for i := range offered + 1 { // from 0 to 5s, both included
					if lm.Reserve(start+i*step, lim, 0).OK {
						admitted++
					}
				}
				elapsed := float64(offered*step) / 1e9
				ideal := float64(burst) + rate*elapsed
				if float64(admitted) > ideal+1 || float64(admitted) < 0.999*ideal {
					t.Errorf("rate %v burst %d: admitted %d, ideal %.1f", rate, burst, admitted, ideal)
				}
			})
		}
	}
}

// TestSimultaneous: n goroutines taking tokens at the same instant from a bucket of
// burst b get exactly b, for a known key and for a key the table has never seen.
func TestSimultaneous(t *testing.T) {
	for _, c := range []struct{ burst, n int64 }{{1, 64}, {10, 100}, {100, 1000}, {1000, 1000}} {
		impls(t, func(t *testing.T, newLimiter func() limiter) {
			for round := 0; round < 20; round++ {
				lm := newLimiter()
				lim := NewLimit(1000, c.burst)
				now := 5 * s
				var admitted atomic.Int64
				var ready, wg sync.WaitGroup
				gate := make(chan struct{})
				workers := int64(8)
				for w := range workers {
					ready.Add(1)
					wg.Add(1)
					go func() {
						defer wg.Done()
						ready.Done()
						<-gate
						for i := w; i < c.n; i += workers {
							if lm.Reserve(now, lim, 0).OK {
								admitted.Add(1)
							}
						}
					}()
				}
				ready.Wait()
				close(gate)
				wg.Wait()
				want := min(c.burst, c.n)
				if got := admitted.Load(); got != want {
					t.Fatalf("burst %d, %d simultaneous requests: admitted %d, want %d", c.burst, c.n, got, want)
				}
			}
		})
	}
}

// TestTableNewKeyRace: the first requests of a new key, racing, take one slot between
// them: exactly the burst passes, round after round, in a table that fills up.
func TestTableNewKeyRace(t *testing.T) {
	tbl := NewTable(4096)
	lim := NewLimit(1, 3)
	for round := range 2000 {
		key := hk(uint64(round) + 1e6)
		now := s + int64(round)*ms
		var admitted atomic.Int64
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				for range 4 {
					if d, _ := tbl.Reserve(key, now, lim, 0); d.OK {
						admitted.Add(1)
					}
				}
			}()
		}
		close(gate)
		wg.Wait()
		if got := admitted.Load(); got != 3 {
			t.Fatalf("round %d: %d admitted, want 3", round, got)
		}
	}
}

// TestLimitChange: the state is a time, so a changed limit applies at once and never
// refills a drained bucket.
func TestLimitChange(t *testing.T) {
	impls(t, func(t *testing.T, newLimiter func() limiter) {
		for _, c := range []struct {
			desc               string
			before, after      Limit
			wantAfterImmediate int
		}{
			{desc: "rate cut with the default burst (rate/10): still drained", before: NewLimit(20000, 2000), after: NewLimit(10000, 1000), wantAfterImmediate: 0},
			{desc: "rate raised with the default burst: still drained", before: NewLimit(1000, 100), after: NewLimit(4000, 400), wantAfterImmediate: 0},
			{desc: "global re-split 1 -> 4 instances: still drained", before: Share(20000, 2000, 1), after: Share(20000, 2000, 4), wantAfterImmediate: 0},
			{desc: "rate cut with a fixed burst: at most the burst", before: NewLimit(1000, 100), after: NewLimit(500, 100), wantAfterImmediate: 50},
		} {
			lm := newLimiter()
			now := 3 * s
			for lm.Reserve(now, c.before, 0).OK {
			}
			got := 0
			for lm.Reserve(now, c.after, 0).OK {
				got++
			}
			if got != c.wantAfterImmediate {
				t.Errorf("%s: %d admitted right after the change, want %d", c.desc, got, c.wantAfterImmediate)
			}
			// One second later the new rate holds: at most rate + what was left.
			later := now + s
			n := 0
			for i := int64(0); i < 3*int64(c.after.Rate()); i++ {
				if lm.Reserve(later, c.after, 0).OK {
					n++
				}
			}
			if max := c.after.Burst; int64(n) > max {
				t.Errorf("%s: %d admitted one second later, want at most the burst %d", c.desc, n, max)
			}
		}
	})
}

// TestLimitRaisedWithLongWindow: a drained key of "100 per hour" raised to "200 per hour"
// (burst kept) gets its next token one new interval (18s) later, not after the old
// hour-long window.
func TestLimitRaisedWithLongWindow(t *testing.T) {
	impls(t, func(t *testing.T, newLimiter func() limiter) {
		before, after := NewLimit(100.0/3600, 100), NewLimit(200.0/3600, 100)
		lm := newLimiter()
		now := 3 * s
		for lm.Reserve(now, before, 0).OK {
		}
		d := lm.Reserve(now, after, 0)
		if d.OK || d.Delay != after.Interval {
			t.Fatalf("right after the raise: %+v, want limited for one new interval (%v)", d, time.Duration(after.Interval))
		}
		if d := lm.Reserve(now+after.Interval, after, 0); !d.OK {
			t.Errorf("one new interval after the raise: %+v, want admitted", d)
		}
		if d := lm.Reserve(now+after.Interval, after, 0); d.OK {
			t.Errorf("a second token at once after the raise was admitted")
		}
	})
}

func TestTableKeysAreIndependent(t *testing.T) {
	tbl := NewTable(1 << 12)
	lim := NewLimit(10, 2)
	now := s
	for k := uint64(1); k <= 1000; k++ {
		for i := 0; i < 3; i++ {
			d, ev := tbl.Reserve(k*0x9e3779b97f4a7c15, now, lim, 0)
			if d.OK != (i < 2) || ev {
				t.Fatalf("key %d request %d: %+v evicted=%v", k, i, d, ev)
			}
		}
	}
	key7 := uint64(7)
	key7 *= 0x9e3779b97f4a7c15
	if got := tbl.Live(now); got != 1000 {
		t.Errorf("live keys %d, want 1000", got)
	}
	if got := tbl.Tokens(key7, now+100*ms, lim); got != 1 {
		t.Errorf("tokens after one interval %d, want 1", got)
	}
	if got := tbl.Live(now + 200*ms); got != 0 {
		t.Errorf("live keys after a full refill %d, want 0", got)
	}
}

func TestTableExpiredSlotsAreReused(t *testing.T) {
	tbl := NewTable(Ways) // a single set
	lim := NewLimit(10, 1)
	now := s
	for k := uint64(1); k <= 1000; k++ {
		// each key is drained, and full again 100ms later: one set serves them all
		if d, ev := tbl.Reserve(hk(k), now, lim, 0); !d.OK || ev {
			t.Fatalf("key %d: %+v evicted=%v", k, d, ev)
		}
		if d, _ := tbl.Reserve(hk(k), now, lim, 0); d.OK {
			t.Fatalf("key %d: second request admitted", k)
		}
		now += 100 * ms
	}
}

func TestTableEvictsTheStalest(t *testing.T) {
	tbl := NewTable(2 * Ways) // the smallest table: two sets
	lim := NewLimit(1, 1)     // a key stays live for 1s after its request
	now := s
	for k := uint64(1); k <= 2*Ways; k++ {
		tbl.Reserve(hk(k), now+int64(k)*ms, lim, 0)
	}
	if d, ev := tbl.Reserve(hk(100), now+30*ms, lim, 0); !d.OK || !ev {
		t.Fatalf("new key in a full set: %+v evicted=%v, want admitted and an eviction", d, ev)
	}
	// key 1 (the stalest) lost its state: it is admitted again; key 2 is still limited.
	if d, _ := tbl.Reserve(hk(2), now+31*ms, lim, 0); d.OK {
		t.Errorf("key 2 was evicted, want key 1")
	}
	if d, _ := tbl.Reserve(hk(1), now+32*ms, lim, 0); !d.OK {
		t.Errorf("key 1 (evicted) was limited")
	}
}

// TestTableTimes: a key coming back after hours or days finds a full bucket; slots idle
// for over an hour are cleared when a new key looks for room in their set.
func TestTableTimes(t *testing.T) {
	const h = int64(time.Hour)
	lim := NewLimit(10, 1)
	for _, away := range []int64{s, h, 10 * h, 38 * h, 80 * h, 100 * h, 200 * h} {
		tbl := NewTable(64)
		now := 5 * s
		if d, _ := tbl.Reserve(hk(1), now, lim, 0); !d.OK {
			t.Fatalf("first request limited")
		}
		if d, _ := tbl.Reserve(hk(1), now+away, lim, 0); !d.OK {
			t.Errorf("back after %v: limited (%+v)", time.Duration(away), d)
		}
	}
	// A single table of two sets: 16 keys, then 2 hours later a new key cleans them up.
	tbl := NewTable(2 * Ways)
	now := 5 * s
	for k := uint64(1); k <= 2*Ways; k++ {
		tbl.Reserve(hk(k), now, lim, 0)
	}
	used := func() (n int) {
		for i := range tbl.slots {
			if tbl.slots[i].Load() != 0 {
				n++
			}
		}
		return n
	}
	if n := used(); n != 2*Ways {
		t.Fatalf("%d slots used, want %d", n, 2*Ways)
	}
	tbl.Reserve(hk(100), now+2*h, lim, 0)
	if n := used(); n != 1 {
		t.Errorf("after a new key 2h later: %d slots used, want 1 (the idle ones cleared)", n)
	}
}

// TestTableTimeUnit: times are kept to 16 ns, rounded up - never a token early.
func TestTableTimeUnit(t *testing.T) {
	tbl := NewTable(64)
	lim := NewLimit(1e9/1001, 1) // interval 1001 ns: not a multiple of 16
	now := 5*s + 3
	if d, _ := tbl.Reserve(hk(9), now, lim, 0); !d.OK {
		t.Fatal("first request limited")
	}
	// The token comes back at now+1001, kept as the next multiple of 16: now+1005.
	if d, _ := tbl.Reserve(hk(9), now+1004, lim, 0); d.OK || d.Delay != 1 {
		t.Errorf("at +1004ns: %+v, want limited for 1ns more", d)
	}
	if d, _ := tbl.Reserve(hk(9), now+1005, lim, 0); !d.OK {
		t.Errorf("at +1005ns: limited")
	}
}

// TestTableEvictionRate measures how many requests evict a live key when that many
// distinct keys are live at once (the README quotes these figures).
func TestTableEvictionRate(t *testing.T) {
	const maxKeys = 1 << 16
	for _, c := range []struct {
		load    float64
		maxRate float64
	}{{0.5, 1e-5}, {0.75, 1e-4}, {0.9, 0.02}, {1.0, 0.08}} {
		tbl := NewTable(maxKeys)
		lim := NewLimit(1, 1) // every key stays live for 1s
		live := int(c.load * maxKeys)
		rng := rand.New(rand.NewPCG(1, 2))
		evictions := 0
		for range live {
			if _, ev := tbl.Reserve(rng.Uint64(), s, lim, 0); ev {
				evictions++
			}
		}
		rate := float64(evictions) / float64(live)
		t.Logf("live keys at %.0f%% of max_keys: %.4f%% of new keys evicted a live key", c.load*100, rate*100)
		if rate > c.maxRate {
			t.Errorf("load %.2f: eviction rate %.4f above %.4f", c.load, rate, c.maxRate)
		}
	}
}

func TestJitter(t *testing.T) {
	var sum int64
	seen := map[int64]bool{}
	for i := uint64(0); i < 1000; i++ {
		j := Jitter(i, s)
		if j < 0 || j >= s {
			t.Fatalf("jitter %d out of [0, 1s)", j)
		}
		sum += j
		seen[j/(100*ms)] = true
	}
	if len(seen) != 10 {
		t.Errorf("jitter covers %d of 10 deciles", len(seen))
	}
	if avg := sum / 1000; avg < 400*ms || avg > 600*ms {
		t.Errorf("jitter mean %v, want about 500ms", time.Duration(avg))
	}
	if Jitter(1, 0) != 0 {
		t.Errorf("Jitter with max 0 must be 0")
	}
}

// hk spreads small numbers over 64 bits, as a key hash does.
func hk(k uint64) uint64 {
	z := k*0x9e3779b97f4a7c15 + 1
	return z ^ z>>29
}

// TestKeyHandover: a key's first request in the new table starts from the tokens it held
// in the old one under the old limit (at most the new burst), whichever way the limit
// moved; a key the old table does not hold starts full; the old table is only read.
func TestKeyHandover(t *testing.T) {
	for _, c := range []struct {
		desc          string
		before, after Limit
		// the key's state in the old table: drained at now, or holding this many tokens
		held int64
		want int // admitted at once by the new table
	}{
		// rates whose interval is a whole number of the table's 16 ns units (4 ms, 8 ms), so
		// that the counts are exact
		{desc: "burst cut 250 -> 25, drained: no blackout (the next token one interval on)", before: NewLimit(250, 250), after: NewLimit(250, 25), want: 0},
		{desc: "burst cut 250 -> 25, 200 held: the new burst", before: NewLimit(250, 250), after: NewLimit(250, 25), held: 200, want: 25},
		{desc: "burst raised 25 -> 250, drained: no free burst", before: NewLimit(250, 25), after: NewLimit(250, 250), want: 0},
		{desc: "burst raised 25 -> 250, 20 held: the 20", before: NewLimit(250, 25), after: NewLimit(250, 250), held: 20, want: 20},
		{desc: "rate cut 250 -> 125, 20 held", before: NewLimit(250, 25), after: NewLimit(125, 25), held: 20, want: 20},
		{desc: "rate raised 125 -> 250, 20 held", before: NewLimit(125, 25), after: NewLimit(250, 25), held: 20, want: 20},
	} {
		const key = 0x1234_5678_9abc_def0
		old := NewTable(1024)
		now := 3 * s
		for old.Tokens(key, now, c.before) > c.held {
			old.Reserve(key, now, c.before, 0)
		}
		before := old.Tokens(key, now, c.before)
		nt := NewTable(1024)
		h := NewKeyHandover(old, c.before.Rate(), c.before.Burst, nil)
		got := 0
		for {
			if d, _ := nt.ReserveCarried(key, now, c.after, 0, h, 1); !d.OK {
				if c.want == 0 && d.Delay > c.after.Interval {
					t.Errorf("%s: next token in %v, want at most one new interval (%v): a blackout", c.desc, time.Duration(d.Delay), time.Duration(c.after.Interval))
				}
				break
			}
			got++
		}
		if got != c.want {
			t.Errorf("%s: %d admitted at once after the change, want %d", c.desc, got, c.want)
		}
		if after := old.Tokens(key, now, c.before); after != before {
			t.Errorf("%s: the old table changed (%d tokens, then %d)", c.desc, before, after)
		}
		// a key the old table never saw starts full
		other := 0
		for {
			if d, _ := nt.ReserveCarried(key^0xffff_0000_0000, now, c.after, 0, h, 1); !d.OK {
				break
			}
			other++
		}
		if int64(other) != c.after.Burst {
			t.Errorf("%s: a key the old table did not hold got %d at once, want the full burst %d", c.desc, other, c.after.Burst)
		}
	}
}

// TestKeyHandoverEnds: one window after the first request under the new limit the old
// table can hold no live key: the handover lets it go, and keys start full.
func TestKeyHandoverEnds(t *testing.T) {
	const key = 42 << 50
	before, after := NewLimit(100, 10), NewLimit(100, 20)
	old := NewTable(64)
	now := 3 * s
	for old.Reserve(key, now, before, 0); old.Tokens(key, now, before) > 0; old.Reserve(key, now, before, 0) {
	}
	nt := NewTable(64)
	h := NewKeyHandover(old, before.Rate(), before.Burst, nil)
	nt.ReserveCarried(key+1<<44, now, after, 0, h, 1) // the first request under the new limit
	window := old.horizon.Load()
	if !h.Running() {
		t.Fatal("handover ended at its first request")
	}
	if d, _ := nt.ReserveCarried(key, now+window, after, 0, h, 1); !d.OK || !h.Running() {
		// the key refilled meanwhile (10 tokens in 100 ms): admitted, carried
		t.Fatalf("within the window: %+v, running %v", d, h.Running())
	}
	nt.ReserveCarried(key+2<<44, now+window+1, after, 0, h, 1)
	if h.Running() {
		t.Error("the handover still consults the old table after its window")
	}
}

// TestKeyHandoverChain: two changes less than a window apart; a key untouched since both
// is carried through both limits (drained under the first: drained under the third).
func TestKeyHandoverChain(t *testing.T) {
	const key = 7 << 50
	l0, l1, l2 := NewLimit(300, 300), NewLimit(300, 30), NewLimit(300, 3000)
	t0 := NewTable(64)
	now := 3 * s
	for t0.Reserve(key, now, l0, 0); t0.Tokens(key, now, l0) > 0; t0.Reserve(key, now, l0, 0) {
	}
	t1, t2 := NewTable(64), NewTable(64)
	h1 := NewKeyHandover(t0, l0.Rate(), l0.Burst, nil)
	t1.ReserveCarried(key+1<<44, now, l1, 0, h1, 1) // another key: h1 starts
	h2 := NewKeyHandover(t1, l1.Rate(), l1.Burst, h1)
	if d, _ := t2.ReserveCarried(key, now, l2, 0, h2, 1); d.OK {
		t.Fatal("a key drained before two raises got a token at once: a free burst")
	}
	if d, _ := t2.ReserveCarried(key, now+100*ms, l2, 0, h2, 1); !d.OK {
		t.Fatal("the key got no token 100 ms later (30 due at 300/s)")
	}
}
