package loadgen

import (
	"math"
	"time"

	"github.com/floodgate/floodgate/bench/profile"
)

// Schedule is the offered load of a drill as a function of time: piecewise-linear rate
// segments (holds and ramps). The k-th send (k = 0, 1, ...) is intended at the moment the
// cumulative expected count reaches k + 0.5, so a hold of R/s for one second carries
// exactly R sends and a ramp carries the integral of its rate. The schedule depends only
// on the profile, never on how fast the server answers: that is what makes the load open.
type Schedule struct {
	segs  []segment
	total float64       // expected sends over the whole schedule
	dur   time.Duration // length of the schedule
}

type segment struct {
	start float64 // seconds from the start of the drill
	dur   float64 // seconds
	from  float64 // rate at start, requests/s
	to    float64 // rate at end
	cum0  float64 // expected sends before this segment
	count float64 // expected sends in this segment
}

// NewSchedule builds the schedule of a profile's stages; relative rates resolve against
// plan (requests/s).
func NewSchedule(stages []profile.Stage, plan float64) *Schedule {
	s := &Schedule{}
	at, prev := 0.0, 0.0
	add := func(d time.Duration, from, to float64) {
		sec := d.Seconds()
		if sec <= 0 {
			return
		}
		seg := segment{start: at, dur: sec, from: from, to: to, cum0: s.total, count: (from + to) / 2 * sec}
		s.segs = append(s.segs, seg)
		s.total += seg.count
		at += sec
		s.dur += d
		prev = to
	}
	for _, st := range stages {
		switch {
		case st.Ramp != nil:
			add(st.Ramp.Duration, st.Ramp.From.PerSecond(plan), st.Ramp.To.PerSecond(plan))
		case st.Hold != nil:
			r := st.Hold.Rate.PerSecond(plan)
			add(st.Hold.Duration, r, r)
		case st.Spike != nil:
			r := st.Spike.Rate.PerSecond(plan)
			if st.Spike.Rise > 0 {
				add(st.Spike.Rise, prev, r)
			}
			add(st.Spike.Duration-st.Spike.Rise, r, r)
		}
	}
	return s
}

// Duration is the length of the schedule.
func (s *Schedule) Duration() time.Duration { return s.dur }

// Expected is the expected number of sends (the integral of the rate).
func (s *Schedule) Expected() float64 { return s.total }

// Count is the number of sends the schedule makes: Expected rounded to the nearest integer.
func (s *Schedule) Count() int64 { return int64(math.Floor(s.total + 0.5)) }

// RateAt is the offered rate (requests/s) at offset t.
func (s *Schedule) RateAt(t time.Duration) float64 {
	x := t.Seconds()
	for _, g := range s.segs {
		if x >= g.start && x < g.start+g.dur {
			return g.from + (g.to-g.from)*(x-g.start)/g.dur
		}
	}
	return 0
}

// PeakRate is the highest rate of the schedule.
func (s *Schedule) PeakRate() float64 {
	m := 0.0
	for _, g := range s.segs {
		m = math.Max(m, math.Max(g.from, g.to))
	}
	return m
}

// CumAt is the expected number of sends intended before offset t.
func (s *Schedule) CumAt(t time.Duration) float64 {
	x := t.Seconds()
	c := 0.0
	for _, g := range s.segs {
		if x <= g.start {
			break
		}
		if x >= g.start+g.dur {
			c = g.cum0 + g.count
			continue
		}
		u := x - g.start
		return g.cum0 + g.from*u + (g.to-g.from)*u*u/(2*g.dur)
	}
	return c
}

// Cursor iterates the intended send times in order.
type Cursor struct {
	s   *Schedule
	seg int
	k   int64
}

// Cursor returns an iterator at the first send.
func (s *Schedule) Cursor() *Cursor { return &Cursor{s: s} }

// Next returns the intended offset of the next send, false when the schedule is over.
func (c *Cursor) Next() (time.Duration, bool) {
	target := float64(c.k) + 0.5
	for c.seg < len(c.s.segs) {
		g := &c.s.segs[c.seg]
		if target < g.cum0+g.count {
			c.k++
			return secondsToDuration(g.start + g.timeFor(target-g.cum0)), true
		}
		c.seg++
	}
	return 0, false
}

// timeFor solves from*u + (to-from)/(2 dur)*u^2 = n for u in [0, dur], in the form that is
// stable for flat, rising and falling segments alike.
func (g *segment) timeFor(n float64) float64 {
	if n <= 0 {
		return 0
	}
	q := (g.to - g.from) / (2 * g.dur)
	disc := g.from*g.from + 4*q*n
	if disc < 0 {
		disc = 0
	}
	den := g.from + math.Sqrt(disc)
	if den <= 0 {
		return g.dur
	}
	u := 2 * n / den
	if u > g.dur {
		u = g.dur
	}
	return u
}

func secondsToDuration(x float64) time.Duration {
	return time.Duration(math.Round(x * float64(time.Second)))
}

// picker spreads sends over routes in proportion to their weights with smooth weighted
// round robin: exact shares over any window, deterministic, no allocation.
type picker struct {
	w, cur []float64
	sum    float64
}

func newPicker(weights []float64) *picker {
	p := &picker{w: weights, cur: make([]float64, len(weights))}
	for _, w := range weights {
		p.sum += w
	}
	return p
}

func (p *picker) next() int {
	best := 0
	for i, w := range p.w {
		p.cur[i] += w
		if p.cur[i] > p.cur[best] {
			best = i
		}
	}
	p.cur[best] -= p.sum
	return best
}
