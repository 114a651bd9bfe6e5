// Package adaptive is floodgate's adaptive overload protection for one upstream pool: an
// overload signal measured from live traffic, an adaptive concurrency limit, and a
// DAGOR-style admission level that sheds the least important requests first.
//
// # The signal and the limit (Gradient2 / Envoy adaptive concurrency)
//
// Every request the pool admits is counted in flight until it is Done. A request that the
// upstream answered gives one latency sample; a timeout gives no sample but counts as a
// drop; anything the gateway answered itself (a shed, upstream/busy, upstream/unavailable,
// a fallback) never enters the samples. Once per window (Update, 100 ms in the gateway) the
// controller takes the window's mean latency and compares it with the pool's no-load
// baseline, the smallest window mean of the last BaselineWindows windows. The baseline is
// measured from live traffic only: the limit is never pinned to a small value to probe it.
//
//	gradient = clamp(Tolerance x baseline / latency, 0.5, 1)
//	new      = limit x gradient + sqrt(limit)            (sqrt(limit): the queue allowance)
//	limit    = limit x (1 - Smoothing) + new x Smoothing  (clamped to [min, max])
//
// A window with a timeout instead multiplies the limit by Backoff (multiplicative
// decrease). While fewer than half of the limit was in use during the window (the peak in
// flight), the limit does not move: the pool was not limited by it, so the samples say
// nothing about it (Gradient2's rule; it also keeps latency noise at low load from
// ratcheting the limit down).
//
// # Admission levels (DAGOR, WeChat, SoCC 2018)
//
// Each request has a Level: the route's business priority (3 bits), then its promotion
// tier's rank (3 bits), then a user priority drawn from a hash of the user's key that
// changes every window of the user clock (5 bits): 2048 levels, higher is more important.
// The pool has an admission level: requests below it are shed. When the pool is over its
// limit (a non-core request was refused by the in-flight gate, or the peak in flight
// passed the limit) the level is raised so that about Raise of the window's requests fall
// below it; when it is comfortably under its limit the level is lowered so that about
// Lower of them come back (Lower < Raise: it comes back more slowly than it goes up).
// Requests are counted by level (shed ones too), so the steps follow the real traffic mix:
// every request while the pool sheds by level; while it sheds nothing by level, the
// requests that arrive with more than half the limit in flight (a raise can only follow
// a window in which the limit was reached, and those are the requests of its busy part).
//
// Core requests (routes marked core) are shed last: they pass the in-flight gate up to the
// pool's maximum limit, and the level rises above CoreFloor (the lowest level of the
// pool's core routes) only in a window where core requests themselves timed out or hit
// the maximum - when nothing else is left to give up.
//
// # Cost
//
// Admit, AdmitFast and Done are a handful of atomic operations on one cache line, no
// locks, no allocation. A healthy pool's request needs no level at all: AdmitFast decides
// with the in-flight gate (a load, an add, two loads) and the caller skips computing the
// level (a key read and hash). Update runs on one goroutine (the gateway's ticker, or a
// test with a fake clock).
package adaptive

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Level layout: business priority (high bits), promotion tier rank, user priority.
const (
	BusinessLevels = 8
	TierLevels     = 8
	UserLevels     = 32
	// NumLevels is the number of admission levels.
	NumLevels = BusinessLevels * TierLevels * UserLevels
)

// Level is a request's importance; higher levels are shed later.
type Level uint16

// MakeLevel packs a business priority (0..7), a tier rank (0..7) and a user priority
// (0..31) into a Level; out-of-range values are clamped.
func MakeLevel(business, tier, user int) Level {
	return Level(clampInt(business, 0, BusinessLevels-1)*TierLevels*UserLevels +
		clampInt(tier, 0, TierLevels-1)*UserLevels + clampInt(user, 0, UserLevels-1))
}

// Business, Tier and User unpack a Level.
func (l Level) Business() int { return int(l) / (TierLevels * UserLevels) }
func (l Level) Tier() int     { return int(l) / UserLevels % TierLevels }
func (l Level) User() int     { return int(l) % UserLevels }

// UserPriority is a user's priority (0..31) for the window that wall (Unix ns) is in:
// stable within one window, so that one user is consistently in or out, and drawn again
// every window, so that different users get their turn. keyHash is a hash of the user's
// key; every gateway instance draws the same for the same key and window.
func UserPriority(keyHash uint64, wall, window int64) int {
	w := wall / window
	if wall%window < 0 {
		w--
	}
	return int(mix(keyHash, mix(uint64(w), 0x2c9f_4e1b_7a53_d806)) >> 59) // top 5 bits
}

// mix is splitmix64's finalizer over h ^ salt.
func mix(h, salt uint64) uint64 {
	z := h ^ (salt + 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Params are the controller's tuning constants. Defaults are Netflix Gradient2's where it
// has them.
type Params struct {
	// Tolerance is how much above the baseline the latency may be before the limit
	// shrinks (Gradient2's rttTolerance).
	Tolerance float64
	// Smoothing weighs a window's new limit against the current one.
	Smoothing float64
	// Backoff multiplies the limit in a window with a timeout.
	Backoff float64
	// BaselineWindows is how many windows the baseline (the smallest window mean) covers.
	BaselineWindows int
	// MinSamples is the fewest latency samples a window needs to move the limit.
	MinSamples int64
	// Raise and Lower are the shares of a window's requests the admission level sheds
	// more (overloaded) or lets back in (healthy) per window.
	Raise, Lower float64
	// Healthy is the share of the limit below which the peak in flight counts as healthy.
	Healthy float64
	// InitialLimit is the limit before any measurement (clamped to [min, max]).
	InitialLimit int
}

// DefaultParams are the gateway's constants (see the package comment).
func DefaultParams() Params {
	return Params{Tolerance: 1.5, Smoothing: 0.2, Backoff: 0.8, BaselineWindows: 50, MinSamples: 5,
		Raise: 0.05, Lower: 0.02, Healthy: 0.9, InitialLimit: 20}
}

// Settings are the operator's switches for one pool; they change live (config, Consul).
type Settings struct {
	// Enabled false: nothing is measured and nothing is shed.
	Enabled bool
	// Shadow: measure, move the limit and the level, count what would be shed, shed nothing.
	Shadow bool
	// MinLimit and MaxLimit bound the adaptive limit.
	MinLimit, MaxLimit int
	// PinnedLevel, when >= 0, fixes the admission level (the automatic one is not used).
	PinnedLevel int
	// CoreFloor is the lowest level of the pool's core routes: the automatic level rises
	// above it only when core requests themselves time out or hit MaxLimit.
	CoreFloor Level
}

// Decision is Admit's answer.
type Decision uint8

const (
	// Admitted: forward the request; call Done when it ends.
	Admitted Decision = iota
	// ShadowShed: would have been shed (shadow mode); forward it and call Done.
	ShadowShed
	// ShedLevel: shed, its level is below the pool's admission level. Do not call Done.
	ShedLevel
	// ShedLimit: shed by the in-flight gate (the pool is at its limit). Do not call Done.
	ShedLimit
)

// Forward reports whether the request goes upstream (and Done must be called).
func (d Decision) Forward() bool { return d <= ShadowShed }

// Outcome is how a forwarded request ended.
type Outcome uint8

const (
	// Answered: the upstream answered; its latency is a sample.
	Answered Outcome = iota
	// TimedOut: no answer within the route's timeout; a drop (multiplicative decrease).
	TimedOut
	// Failed: anything else (connection refused, busy, too large): no sample.
	Failed
)

// countBits is the width of the sample count in Controller.rttWindow.
const countBits = 20

// Controller is one pool's overload protection. Admit, AdmitFast, Count and Done are safe
// for concurrent use on the request path; Update (once a window) takes a mutex of its own.
type Controller struct {
	params   Params
	settings atomic.Pointer[Settings]
	_        [48]byte

	// The request path's cache line: every forwarded request reads threshold and the
	// limits and adds to inflight (Admit) and to inflight and rttWindow (Done). On one line
	// a request moves one line between CPUs, not one per field; limit, maxLimit and
	// threshold change only in Update.
	inflight  atomic.Int64
	rttWindow atomic.Uint64 // the window's latency samples: sum in us (high 44 bits), count (low 20)
	limit     atomic.Int64
	maxLimit  atomic.Int64 // Settings.MaxLimit: the in-flight gate of core requests
	threshold atomic.Int32 // the admission level
	// maxInflight is the window's peak in flight; written only when it rises.
	maxInflight atomic.Int64
	_           [16]byte

	// written when a request times out or is refused by the in-flight gate
	timeouts atomic.Int64
	coreHurt atomic.Int64 // core timeouts and core refusals
	refused  atomic.Int64 // non-core refusals by the in-flight gate
	_        [40]byte
	// hist counts the window's requests by level (see AdmitFast: while nothing is shed by
	// level, only the requests that arrive with more than half the limit in flight).
	hist [NumLevels]atomic.Uint32

	// totals (for metrics and the admin view)
	shedLevel, shedLimit, shadowShed atomic.Uint64
	totalSamples                     atomic.Uint64 // added up by Update

	// published by Update for the snapshot
	baselineNs, rttNs atomic.Int64

	// owned by Update (mu serialises Update calls; never taken on the request path)
	mu      sync.Mutex
	limitF  float64
	ring    []int64
	ringN   int
	ringPos int

	windows  atomic.Uint64
	lastPeak atomic.Int64
}

// New returns a controller with params and the operator's settings.
func New(p Params, s Settings) *Controller {
	c := &Controller{params: p, ring: make([]int64, max(1, p.BaselineWindows))}
	c.settings.Store(&s)
	c.limitF = float64(clampInt(p.InitialLimit, s.MinLimit, s.MaxLimit))
	c.limit.Store(int64(c.limitF))
	c.applySettings(&s)
	return c
}

// SetSettings changes the operator's settings; the limit is clamped to the new bounds at
// once, and a pinned level applies at once.
func (c *Controller) SetSettings(s Settings) {
	c.settings.Store(&s)
	c.applySettings(&s)
}

func (c *Controller) applySettings(s *Settings) {
	c.maxLimit.Store(int64(max(s.MaxLimit, s.MinLimit)))
	switch {
	case !s.Enabled:
		c.threshold.Store(0)
	case s.PinnedLevel >= 0:
		c.threshold.Store(int32(min(s.PinnedLevel, NumLevels)))
	}
	if l := c.limit.Load(); l < int64(s.MinLimit) || l > int64(s.MaxLimit) {
		c.limit.Store(int64(clampInt(int(l), s.MinLimit, s.MaxLimit)))
	}
}

// Settings returns the settings in force.
func (c *Controller) Settings() Settings { return *c.settings.Load() }

// Admit decides on one request of level lv; core says whether its route is core. When it
// returns a Decision with Forward() true the caller must call Done exactly once.
func (c *Controller) Admit(lv Level, core bool) Decision {
	c.hist[lv%NumLevels].Add(1)
	if int32(lv) < c.threshold.Load() {
		if !c.settings.Load().Shadow {
			c.shedLevel.Add(1)
			return ShedLevel
		}
		c.shadowShed.Add(1)
		c.admitted(c.inflight.Add(1))
		return ShadowShed
	}
	n := c.inflight.Add(1)
	lim := c.limit.Load()
	if core {
		lim = c.maxLimit.Load()
	}
	if n > lim {
		return c.over(n, core)
	}
	c.admitted(n)
	return Admitted
}

// AdmitFast is Admit for a request whose level has not been computed yet (computing it
// costs more than the decision: a key read and hash). While nothing is shed by level (the
// admission level is 0) the in-flight gate alone decides: ok is true and d is the
// decision, as Admit's. count is then true when the pool is busy - more than half of its
// limit in flight: the window's level counts, which the level's next raise steps
// through, need this request, so the caller computes its level and passes it to Count.
// (Under half the limit the window cannot end over its limit because of this request.)
// ok false: the pool sheds by level and nothing was done; call Admit with the level.
func (c *Controller) AdmitFast(core bool) (d Decision, count, ok bool) {
	if c.threshold.Load() != 0 {
		return 0, false, false
	}
	n := c.inflight.Add(1)
	lim := c.limit.Load()
	count = 2*n > lim
	if core {
		lim = c.maxLimit.Load()
	}
	if n > lim {
		return c.over(n, core), count, true
	}
	c.admitted(n)
	return Admitted, count, true
}

// Count counts a request admitted by AdmitFast with count true at its level lv.
func (c *Controller) Count(lv Level) { c.hist[lv%NumLevels].Add(1) }

// over handles a request beyond the in-flight gate (non-core requests pass it up to the
// limit, core ones up to the maximum limit); n is the number in flight with it.
func (c *Controller) over(n int64, core bool) Decision {
	if core {
		c.coreHurt.Add(1)
	} else {
		c.refused.Add(1)
	}
	if !c.settings.Load().Shadow {
		c.inflight.Add(-1)
		c.shedLimit.Add(1)
		return ShedLimit
	}
	c.shadowShed.Add(1)
	c.admitted(n)
	return ShadowShed
}

// admitted records the peak in flight.
func (c *Controller) admitted(n int64) {
	if n > c.maxInflight.Load() {
		c.raisePeak(n)
	}
}

func (c *Controller) raisePeak(n int64) {
	for {
		m := c.maxInflight.Load()
		if n <= m || c.maxInflight.CompareAndSwap(m, n) {
			return
		}
	}
}

// Done ends a forwarded request: rtt is its upstream latency (used only when the
// upstream answered), core whether its route is core.
func (c *Controller) Done(rtt time.Duration, o Outcome, core bool) {
	c.inflight.Add(-1)
	switch o {
	case Answered:
		c.rttWindow.Add(uint64(max(rtt, 0)/time.Microsecond)<<countBits | 1)
	case TimedOut:
		c.timeouts.Add(1)
		if core {
			c.coreHurt.Add(1)
		}
	}
}

// Update closes one window: it moves the limit and the admission level. Call it every
// window (the gateway: every 100 ms); concurrent calls are serialised.
func (c *Controller) Update() {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.settings.Load()
	p := &c.params
	inflight := c.inflight.Load()
	peak := c.maxInflight.Swap(inflight)
	if inflight > peak {
		peak = inflight
	}
	c.lastPeak.Store(peak)
	packed := c.rttWindow.Swap(0)
	sum, n := int64(packed>>countBits)*int64(time.Microsecond), int64(packed&(1<<countBits-1))
	c.totalSamples.Add(uint64(n))
	timeouts, coreHurt, refused := c.timeouts.Swap(0), c.coreHurt.Swap(0), c.refused.Swap(0)
	var hist [NumLevels]uint32
	var total uint64
	for i := range c.hist {
		v := c.hist[i].Swap(0)
		hist[i] = v
		total += uint64(v)
	}
	c.windows.Add(1)
	if !s.Enabled {
		c.threshold.Store(0)
		return
	}

	// the limit
	limit := c.limitF
	if n >= p.MinSamples {
		rtt := sum / n
		c.rttNs.Store(rtt)
		c.pushBaseline(rtt)
	}
	switch {
	case timeouts > 0:
		limit *= p.Backoff
	case n >= p.MinSamples && float64(peak) >= limit/2:
		// (under half in use the pool is not limited by its limit: the samples say
		// nothing about it, and the limit neither grows nor shrinks, as in Gradient2)
		base, rtt := float64(c.baselineNs.Load()), float64(sum/n)
		grad := math.Max(0.5, math.Min(1, p.Tolerance*base/rtt))
		next := limit*grad + math.Sqrt(limit)
		limit = limit*(1-p.Smoothing) + next*p.Smoothing
	}
	limit = math.Max(float64(s.MinLimit), math.Min(float64(s.MaxLimit), limit))
	c.limitF = limit
	c.limit.Store(int64(limit))

	// the admission level
	if s.PinnedLevel >= 0 {
		c.threshold.Store(int32(min(s.PinnedLevel, NumLevels)))
		return
	}
	if total == 0 {
		return
	}
	lvl := int(c.threshold.Load())
	switch {
	case refused > 0 || coreHurt > 0 || float64(peak) > limit:
		target := uint64(math.Ceil(p.Raise * float64(total)))
		var acc uint64
		for lvl < NumLevels && acc < target {
			acc += uint64(hist[lvl])
			lvl++
		}
		if coreHurt == 0 && lvl > int(s.CoreFloor) {
			lvl = max(int(c.threshold.Load()), int(s.CoreFloor))
		}
	case float64(peak) <= p.Healthy*limit:
		target := uint64(math.Ceil(p.Lower * float64(total)))
		var acc uint64
		for lvl > 0 && acc < target {
			lvl--
			acc += uint64(hist[lvl])
		}
	}
	c.threshold.Store(int32(lvl))
}

// pushBaseline adds a window's mean latency and recomputes the baseline: the smallest
// window mean of the last BaselineWindows windows with enough samples.
func (c *Controller) pushBaseline(rtt int64) {
	c.ring[c.ringPos] = rtt
	c.ringPos = (c.ringPos + 1) % len(c.ring)
	if c.ringN < len(c.ring) {
		c.ringN++
	}
	b := int64(math.MaxInt64)
	for i := 0; i < c.ringN; i++ {
		b = min(b, c.ring[i])
	}
	c.baselineNs.Store(b)
}

// Snapshot is the controller's state for metrics and the admin view.
type Snapshot struct {
	Enabled     bool    `json:"enabled"`
	Shadow      bool    `json:"shadow"`
	Limit       int64   `json:"limit"`
	MinLimit    int     `json:"min_limit"`
	MaxLimit    int     `json:"max_limit"`
	InFlight    int64   `json:"in_flight"`
	PeakWindow  int64   `json:"peak_in_flight_last_window"`
	Level       int     `json:"level"`
	LevelParts  [3]int  `json:"level_parts"` // business, tier, user of the level
	Pinned      bool    `json:"pinned"`
	CoreFloor   int     `json:"core_floor"`
	BaselineMs  float64 `json:"baseline_ms"`
	LatencyMs   float64 `json:"latency_ms"`
	ShedLevel   uint64  `json:"shed_level"`
	ShedLimit   uint64  `json:"shed_limit"`
	ShadowShed  uint64  `json:"shadow_shed"`
	Samples     uint64  `json:"samples"`
	WindowCount uint64  `json:"windows"`
}

// Snapshot returns the current state. It reads atomics only.
func (c *Controller) Snapshot() Snapshot {
	s := c.settings.Load()
	lvl := Level(min(c.threshold.Load(), NumLevels-1))
	th := int(c.threshold.Load())
	return Snapshot{
		Enabled: s.Enabled, Shadow: s.Shadow, Limit: c.limit.Load(), MinLimit: s.MinLimit, MaxLimit: s.MaxLimit,
		InFlight: c.inflight.Load(), PeakWindow: c.lastPeak.Load(), Level: th,
		LevelParts: [3]int{lvl.Business(), lvl.Tier(), lvl.User()}, Pinned: s.PinnedLevel >= 0,
		CoreFloor: int(s.CoreFloor), BaselineMs: float64(c.baselineNs.Load()) / 1e6, LatencyMs: float64(c.rttNs.Load()) / 1e6,
		ShedLevel: c.shedLevel.Load(), ShedLimit: c.shedLimit.Load(),
		ShadowShed: c.shadowShed.Load(), Samples: c.totalSamples.Load(), WindowCount: c.windows.Load(),
	}
}

func clampInt(v, lo, hi int) int {
	if hi < lo {
		hi = lo
	}
	return max(lo, min(hi, v))
}
