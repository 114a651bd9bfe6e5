package adaptive

import (
	"testing"
	"time"
)

func testSettings() Settings {
	return Settings{Enabled: true, MinLimit: 4, MaxLimit: 200, PinnedLevel: -1, CoreFloor: MakeLevel(6, 0, 0)}
}

// admit decides on a request as the gateway does (gateway/overload.go): AdmitFast first,
// and the request's level only when it asks for it.
func admit(c *Controller, lv Level, core bool) Decision {
	d, count, ok := c.AdmitFast(core)
	switch {
	case !ok:
		return c.Admit(lv, core)
	case count:
		c.Count(lv)
	}
	return d
}

// window feeds one window to c: `inflight` requests offered and held, then `answered` of
// the admitted ones answered after rtt and `timeouts` timed out (the rest stay in flight
// over Update and are released after it as failures). It returns how many were admitted.
func window(c *Controller, lv Level, core bool, inflight, answered int, rtt time.Duration, timeouts int) int {
	admitted := 0
	for i := 0; i < inflight; i++ {
		if admit(c, lv, core).Forward() {
			admitted++
		}
	}
	left := admitted
	for i := 0; i < answered && left > 0; i++ {
		c.Done(rtt, Answered, core)
		left--
	}
	for i := 0; i < timeouts && left > 0; i++ {
		c.Done(0, TimedOut, core)
		left--
	}
	c.Update()
	for ; left > 0; left-- {
		c.Done(0, Failed, core)
	}
	return admitted
}

// TestLimitRules checks the limit's rules one window at a time, from a known state: a
// limit of 40 after 50 windows at a 10 ms baseline with 30 in flight.
func TestLimitRules(t *testing.T) {
	lv := MakeLevel(2, 7, 10)
	for _, tc := range []struct {
		desc     string
		inflight int
		rtt      time.Duration
		timeouts int
		check    func(before, after int64) bool
		want     string
	}{
		{"fewer than half the limit in use, latency at baseline: no growth", 19, 10 * time.Millisecond, 0,
			func(b, a int64) bool { return a == b }, "unchanged"},
		{"fewer than half in use, latency 10x: unchanged (not limited by it)", 19, 100 * time.Millisecond, 0,
			func(b, a int64) bool { return a == b }, "unchanged"},
		{"fewer than half in use, a timeout: multiplicative decrease", 19, 10 * time.Millisecond, 1,
			func(b, a int64) bool { return a == b*8/10 }, "limit x 0.8"},
		{"at least half in use, latency at baseline: grows", 30, 10 * time.Millisecond, 0,
			func(b, a int64) bool { return a > b }, "higher"},
		{"latency within tolerance (1.4x): grows", 30, 14 * time.Millisecond, 0,
			func(b, a int64) bool { return a > b }, "higher"},
		{"latency 3x: decreases by the smoothed gradient floor (10%)", 30, 30 * time.Millisecond, 0,
			func(b, a int64) bool {
				return a == int64(float64(b)*0.9+0.2*6.3245553) || a == int64(float64(b)*0.9+0.2*6.3245553)-1
			}, "limit x 0.9 + 0.2 x sqrt(limit)"},
		{"a timeout: multiplicative decrease (x0.8), whatever the latency", 30, 10 * time.Millisecond, 1,
			func(b, a int64) bool { return a == b*8/10 }, "limit x 0.8"},
		{"several timeouts: one decrease per window", 30, 10 * time.Millisecond, 5,
			func(b, a int64) bool { return a == b*8/10 }, "limit x 0.8"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := New(DefaultParams(), testSettings())
			c.limitF = 40
			c.limit.Store(40)
			for i := 0; i < 50; i++ {
				window(c, lv, false, 19, 19, 10*time.Millisecond, 0)
			}
			before := c.limit.Load()
			if before != 40 {
				t.Fatalf("setup: limit %d, want 40 (fewer than half in use must not move it)", before)
			}
			window(c, lv, false, tc.inflight, tc.inflight-tc.timeouts, tc.rtt, tc.timeouts)
			if after := c.limit.Load(); !tc.check(before, after) {
				t.Errorf("limit %d -> %d, want %s", before, after, tc.want)
			}
		})
	}
}

func TestLimitStaysWithinMinMax(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		min, max int
		rtt      time.Duration
		timeouts int
		windows  int
		want     func(int64) bool
		wantDesc string
	}{
		{"timeouts forever stop at min", 7, 100, 10 * time.Millisecond, 3, 300, func(l int64) bool { return l == 7 }, "7"},
		{"latency 10x reaches min before the baseline horizon (50 windows)", 7, 100, 100 * time.Millisecond, 0, 45, func(l int64) bool { return l == 7 }, "7"},
		{"a lasting 10x latency becomes the baseline: the limit grows again", 7, 100, 100 * time.Millisecond, 0, 300, func(l int64) bool { return l > 50 }, "> 50"},
		{"full use at baseline forever stops at max", 7, 60, 10 * time.Millisecond, 0, 300, func(l int64) bool { return l == 60 }, "60"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := testSettings()
			s.MinLimit, s.MaxLimit = tc.min, tc.max
			c := New(DefaultParams(), s)
			for i := 0; i < 60; i++ { // baseline 10 ms
				window(c, 0, false, 10, 10, 10*time.Millisecond, 0)
			}
			for i := 0; i < tc.windows; i++ {
				n := int(c.limit.Load())
				window(c, MakeLevel(7, 7, 31), true, n, n-tc.timeouts, tc.rtt, tc.timeouts)
			}
			if got := c.limit.Load(); !tc.want(got) {
				t.Errorf("limit %d, want %s", got, tc.wantDesc)
			}
		})
	}
}

// TestShedRequestsAreNeverSampled: requests the controller sheds (by level or by the
// in-flight gate) do not change the in-flight count, the samples or the latency.
func TestShedRequestsAreNeverSampled(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		setup func(s *Settings)
		lv    Level
		core  bool
		fill  int // requests admitted and held first
		want  Decision
	}{
		{"below a pinned level", func(s *Settings) { s.PinnedLevel = int(MakeLevel(3, 0, 0)) }, MakeLevel(2, 7, 31), false, 0, ShedLevel},
		{"non-core over the limit", func(s *Settings) { s.MinLimit, s.MaxLimit = 10, 10 }, MakeLevel(2, 7, 31), false, 10, ShedLimit},
		{"core over the max limit", func(s *Settings) { s.MinLimit, s.MaxLimit = 10, 10 }, MakeLevel(6, 7, 31), true, 10, ShedLimit},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := testSettings()
			tc.setup(&s)
			c := New(DefaultParams(), s)
			for i := 0; i < tc.fill; i++ {
				if d := admit(c, MakeLevel(7, 7, 31), true); d != Admitted {
					t.Fatalf("fill %d: %v", i, d)
				}
			}
			before := c.Snapshot()
			for i := 0; i < 1000; i++ {
				if d := admit(c, tc.lv, tc.core); d != tc.want {
					t.Fatalf("decision %d, want %d", d, tc.want)
				}
			}
			after := c.Snapshot()
			if after.InFlight != before.InFlight || after.Samples != before.Samples || c.rttWindow.Load() != 0 {
				t.Errorf("shed requests changed the measurement: in flight %d -> %d, samples %d -> %d", before.InFlight, after.InFlight, before.Samples, after.Samples)
			}
			if got := after.ShedLevel + after.ShedLimit - before.ShedLevel - before.ShedLimit; got != 1000 {
				t.Errorf("shed counted %d, want 1000", got)
			}
		})
	}
}

// TestOnlyAnswersAreSampled: of the requests forwarded, only those the upstream answered
// are latency samples; a failure (refused connection, pool busy, 5xx) or a timeout is
// not (a timeout counts as a drop instead).
func TestOnlyAnswersAreSampled(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		outcome Outcome
		want    uint64
	}{
		{"answered: a sample each", Answered, 10},
		{"failed: no sample", Failed, 0},
		{"timed out: no sample", TimedOut, 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := New(DefaultParams(), testSettings())
			for i := 0; i < 10; i++ {
				if d := admit(c, MakeLevel(2, 7, 31), false); d != Admitted {
					t.Fatalf("request %d: %v", i, d)
				}
			}
			for i := 0; i < 10; i++ {
				c.Done(50*time.Millisecond, tc.outcome, false)
			}
			c.Update()
			if s := c.Snapshot(); s.Samples != tc.want || s.InFlight != 0 {
				t.Errorf("samples %d, in flight %d; want %d and 0", s.Samples, s.InFlight, tc.want)
			}
		})
	}
}

// TestBaselineMeasurementNeverRejectsCore: a fresh controller (no baseline, the initial
// limit) admits core requests up to the pool's maximum; it never lowers concurrency to
// probe the no-load latency. Non-core requests meet the initial limit.
func TestBaselineMeasurementNeverRejectsCore(t *testing.T) {
	s := testSettings()
	s.MaxLimit = 150
	c := New(DefaultParams(), s)
	for i := 0; i < 150; i++ {
		if d := admit(c, MakeLevel(6, 0, 0), true); d != Admitted {
			t.Fatalf("core request %d in flight: %v, want admitted", i+1, d)
		}
	}
	if d := admit(c, MakeLevel(2, 0, 0), false); d != ShedLimit {
		t.Errorf("non-core over the initial limit: %v, want ShedLimit", d)
	}
	// windows of measurement with everything in flight: still no core shed
	for w := 0; w < 100; w++ {
		for i := 0; i < 150; i++ {
			c.Done(10*time.Millisecond, Answered, true)
		}
		for i := 0; i < 150; i++ {
			if d := admit(c, MakeLevel(6, 0, 0), true); d != Admitted {
				t.Fatalf("window %d: core request %d: %v, want admitted", w, i+1, d)
			}
		}
		c.Update()
	}
	if snap := c.Snapshot(); snap.BaselineMs != 10 || snap.Level > int(s.CoreFloor) {
		t.Errorf("baseline %.1f ms (want 10), level %d (want at most the core floor %d)", snap.BaselineMs, snap.Level, s.CoreFloor)
	}
}

func TestOperatorSwitches(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		settings  func(s *Settings)
		wantLevel int
		wantShed  bool
	}{
		{"disabled: level 0, nothing shed", func(s *Settings) { s.Enabled = false }, 0, false},
		{"shadow: level moves, nothing shed", func(s *Settings) { s.Shadow = true }, -1, false},
		{"pinned level holds against overload", func(s *Settings) { s.PinnedLevel = 100 }, 100, true},
		{"automatic: level rises under overload", func(s *Settings) {}, -1, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := testSettings()
			s.MinLimit, s.MaxLimit = 10, 10
			tc.settings(&s)
			c := New(DefaultParams(), s)
			shed := 0
			for w := 0; w < 20; w++ {
				for i := 0; i < 40; i++ {
					d := Decision(Admitted)
					if s.Enabled {
						d = admit(c, MakeLevel(2, i%8, i%32), false)
					}
					if !d.Forward() {
						shed++
					}
				}
				for c.inflight.Load() > 0 {
					c.Done(10*time.Millisecond, Answered, false)
				}
				c.Update()
			}
			lvl := c.Snapshot().Level
			switch {
			case tc.wantLevel >= 0 && lvl != tc.wantLevel:
				t.Errorf("level %d, want %d", lvl, tc.wantLevel)
			case tc.wantLevel < 0 && lvl <= int(MakeLevel(2, 0, 0)):
				t.Errorf("level %d, want it raised into the offered levels (above %d)", lvl, MakeLevel(2, 0, 0))
			}
			if (shed > 0) != tc.wantShed {
				t.Errorf("shed %d requests, want shedding %v", shed, tc.wantShed)
			}
			if s.Shadow && c.Snapshot().ShadowShed == 0 {
				t.Errorf("shadow mode counted nothing it would have shed")
			}
		})
	}
}

func TestLevelOrder(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		low, high Level
	}{
		{"business dominates tier and user", MakeLevel(2, 7, 31), MakeLevel(3, 0, 0)},
		{"tier dominates user", MakeLevel(2, 1, 31), MakeLevel(2, 2, 0)},
		{"user orders within a tier", MakeLevel(2, 1, 3), MakeLevel(2, 1, 4)},
		{"out of range is clamped", MakeLevel(-1, -1, -1), MakeLevel(0, 0, 1)},
		{"top clamps to the last level", MakeLevel(6, 7, 31), MakeLevel(99, 99, 99)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.low >= tc.high {
				t.Errorf("%d not below %d", tc.low, tc.high)
			}
		})
	}
	if l := MakeLevel(5, 3, 17); l.Business() != 5 || l.Tier() != 3 || l.User() != 17 {
		t.Errorf("unpack %d: %d %d %d", l, l.Business(), l.Tier(), l.User())
	}
	if MakeLevel(99, 99, 99) != NumLevels-1 {
		t.Errorf("top level %d, want %d", MakeLevel(99, 99, 99), NumLevels-1)
	}
}

// TestUserPriorityRotates: a user keeps its priority within a window and draws again at
// the next; priorities are spread evenly over the users.
func TestUserPriorityRotates(t *testing.T) {
	const window = int64(10 * time.Second)
	const users = 32000
	var counts [UserLevels]int
	changed := 0
	for u := uint64(0); u < users; u++ {
		h := mix(u, 1)
		p := UserPriority(h, 5*window+1, window)
		if q := UserPriority(h, 6*window-1, window); q != p {
			t.Fatalf("user %d: priority %d then %d within one window", u, p, q)
		}
		if UserPriority(h, 6*window, window) != p {
			changed++
		}
		counts[p]++
	}
	// each of 32 priorities expects 1000 users; 4 standard deviations is about 125
	for p, n := range counts {
		if n < 875 || n > 1125 {
			t.Errorf("priority %d has %d users, want 1000 +- 125", p, n)
		}
	}
	// a new draw keeps the same priority with probability 1/32
	if changed < users*29/32 {
		t.Errorf("only %d of %d users drew another priority in the next window", changed, users)
	}
	if UserPriority(7, -1, window) != UserPriority(7, -window, window) {
		t.Errorf("negative wall clock: floor division broken")
	}
}

// TestAdmitFast: while nothing is shed by level the in-flight gate decides without the
// request's level, asking for it (count) only past half the limit; once the pool sheds
// by level AdmitFast does nothing and leaves the decision to Admit.
func TestAdmitFast(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		pin       int // pinned level (-1: automatic, 0 at start)
		fill      int // non-core requests admitted and held first (limit 10)
		core      bool
		wantOK    bool
		wantD     Decision
		wantCount bool
	}{
		{"idle pool: admitted, level not needed", -1, 0, false, true, Admitted, false},
		{"half the limit in flight with it: not needed", -1, 4, false, true, Admitted, false},
		{"more than half: admitted and counted", -1, 5, false, true, Admitted, true},
		{"non-core at the limit: refused and counted", -1, 10, false, true, ShedLimit, true},
		{"core at the limit: admitted up to the max", -1, 10, true, true, Admitted, true},
		{"shedding by level: nothing done", 5, 0, false, false, 0, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := testSettings()
			s.MinLimit, s.MaxLimit, s.PinnedLevel = 10, 20, tc.pin
			c := New(DefaultParams(), s)
			c.limit.Store(10)
			for i := 0; i < tc.fill; i++ {
				c.inflight.Add(1)
			}
			d, count, ok := c.AdmitFast(tc.core)
			if ok != tc.wantOK || d != tc.wantD || count != tc.wantCount {
				t.Fatalf("AdmitFast = %v, count %v, ok %v; want %v, %v, %v", d, count, ok, tc.wantD, tc.wantCount, tc.wantOK)
			}
			wantIn := int64(tc.fill)
			if ok && d.Forward() {
				wantIn++
			}
			if got := c.inflight.Load(); got != wantIn {
				t.Errorf("in flight %d, want %d", got, wantIn)
			}
		})
	}
}
