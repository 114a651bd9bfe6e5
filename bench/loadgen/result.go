package loadgen

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Why a run stopped.
const (
	StopScheduleDone = "schedule done"
	StopMaxRequests  = "max requests reached"
	StopMaxTime      = "hard time limit reached"
	StopCancelled    = "cancelled"
)

// Result is what a run measured. Histograms are in microseconds, measured from each
// request's intended send time.
type Result struct {
	Profile     string
	Description string
	Target      string
	PlanRate    float64 // requests/s that "1x" meant
	PeakRate    float64 // highest offered rate of the schedule
	Started     time.Time
	// Elapsed is the wall time of the run; ScheduleLength the length of the schedule.
	Elapsed, ScheduleLength time.Duration
	// Planned sends (the schedule's count, or MaxRequests), Sent (dispatched to a worker),
	// Unsent (planned but never dispatched: the run was stopped), Completed (answered or
	// failed: every sent request completes).
	Planned, Sent, Unsent, Completed int64
	// Late sends started more than LateThreshold after their intended time; Stalled ones
	// found no free worker at their intended time.
	Late, Stalled int64
	LateThreshold time.Duration
	Workers       int
	Conns         int
	Timeout       time.Duration
	Seed          int64
	StopReason    string
	// Lag is the generator's own delay: intended time -> the worker starting the request.
	Lag      *hdrhistogram.Histogram
	Routes   []*RouteResult
	Timeline []Second
}

// RouteResult is one route's outcome.
type RouteResult struct {
	Name   string
	Method string
	Path   string
	Weight float64
	Sent   int64
	// RequestBytes and ResponseBytes are the mean size of an answered request and of its
	// answer on the client->gateway link, headers included (0: nothing answered).
	RequestBytes, ResponseBytes float64
	// Verdicts in report order: by class, then most frequent first.
	Verdicts []*VerdictResult
}

// VerdictResult is one (route, verdict) pair.
type VerdictResult struct {
	Verdict  string
	Class    Class
	Count    int64
	Statuses map[int]int64
	// Latency is in microseconds from the intended send time.
	Latency *hdrhistogram.Histogram
}

// Second is one second of the timeline (At is its end, in seconds from the start; the last
// one may be partial). Latencies are of the answers completed in that second.
type Second struct {
	At       float64           `json:"t"`
	Sent     int64             `json:"sent"`
	Late     int64             `json:"late"`
	Done     [NumClasses]int64 `json:"done"` // by Class
	Admitted Latency           `json:"admitted_us"`
	Shed     Latency           `json:"shed_us"`
	Routes   []RouteSecond     `json:"routes"`
}

// RouteSecond is one route's part of a Second.
type RouteSecond struct {
	Sent     int64             `json:"sent"`
	Done     [NumClasses]int64 `json:"done"`
	Admitted Latency           `json:"admitted_us"`
	Shed     Latency           `json:"shed_us"`
}

// Latency holds percentiles in microseconds (all zero when there were no samples).
type Latency struct {
	P50 int64 `json:"p50"`
	P90 int64 `json:"p90"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

func (g *generator) result(elapsed time.Duration, sent int64, reason string) *Result {
	r := &Result{Profile: g.prof.Name, Description: g.prof.Description, Target: g.prof.Target, PlanRate: g.plan,
		PeakRate: g.sched.PeakRate(), Started: g.start, Elapsed: elapsed, ScheduleLength: g.sched.Duration(),
		Planned: g.planned, Sent: sent, Unsent: g.planned - sent, Stalled: g.stalled.Load(),
		LateThreshold: g.opts.LateThreshold, Workers: g.opts.Workers, Conns: g.opts.Conns, Timeout: g.opts.Timeout,
		Seed: g.opts.Seed, StopReason: reason, Timeline: g.timeline,
		Lag: hdrhistogram.New(1, g.highest, totalSigFigs)}
	for i, rt := range g.prof.Routes {
		m := rt.Method
		if m == "" {
			m = "GET"
		}
		w := rt.Weight
		if w == 0 {
			w = 1
		}
		rr := &RouteResult{Name: rt.Name, Method: m, Path: rt.Path, Weight: w, Sent: g.routeSent[i].Load()}
		byV := map[string]*VerdictResult{}
		var sized, reqBytes, respBytes int64
		for _, s := range g.shards {
			sized += s.routes[i].sized
			reqBytes += s.routes[i].reqBytes
			respBytes += s.routes[i].respBytes
			for _, c := range s.routes[i].cells {
				v := byV[c.verdict]
				if v == nil {
					v = &VerdictResult{Verdict: c.verdict, Class: c.class, Statuses: map[int]int64{},
						Latency: hdrhistogram.New(1, g.highest, totalSigFigs)}
					byV[c.verdict] = v
					rr.Verdicts = append(rr.Verdicts, v)
				}
				v.Count += c.count
				for st, n := range c.statuses {
					v.Statuses[st] += n
				}
				v.Latency.Merge(c.hist)
			}
		}
		if sized > 0 {
			rr.RequestBytes, rr.ResponseBytes = float64(reqBytes)/float64(sized), float64(respBytes)/float64(sized)
		}
		sortVerdicts(rr.Verdicts)
		for _, v := range rr.Verdicts {
			r.Completed += v.Count
		}
		r.Routes = append(r.Routes, rr)
	}
	for _, s := range g.shards {
		r.Lag.Merge(s.lag)
		r.Late += s.late
	}
	return r
}

func sortVerdicts(vs []*VerdictResult) {
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].Class != vs[j].Class {
			return vs[i].Class < vs[j].Class
		}
		if vs[i].Count != vs[j].Count {
			return vs[i].Count > vs[j].Count
		}
		return vs[i].Verdict < vs[j].Verdict
	})
}

// Route returns the named route's result, or nil.
func (r *Result) Route(name string) *RouteResult {
	for _, rr := range r.Routes {
		if rr.Name == name {
			return rr
		}
	}
	return nil
}

// Count is the number of answers of a route with a verdict ("admitted", "error",
// "token_bucket/limited", "client/timeout"...). Route "" means all routes.
func (r *Result) Count(route, verdict string) int64 {
	var n int64
	for _, rr := range r.Routes {
		if route == "" || rr.Name == route {
			if v := rr.Verdict(verdict); v != nil {
				n += v.Count
			}
		}
	}
	return n
}

// ClassCount is the number of answers of a route in a class. Route "" means all routes.
func (r *Result) ClassCount(route string, c Class) int64 {
	var n int64
	for _, rr := range r.Routes {
		if route == "" || rr.Name == route {
			n += rr.ClassCount(c)
		}
	}
	return n
}

// Latency merges the latency histograms of a class over all routes.
func (r *Result) Latency(c Class) *hdrhistogram.Histogram {
	var h *hdrhistogram.Histogram
	for _, rr := range r.Routes {
		x := rr.Latency(c)
		if h == nil {
			h = x
		} else {
			h.Merge(x)
		}
	}
	if h == nil {
		h = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), totalSigFigs)
	}
	return h
}

// Verdict returns the route's result for one verdict, or nil.
func (rr *RouteResult) Verdict(verdict string) *VerdictResult {
	for _, v := range rr.Verdicts {
		if v.Verdict == verdict {
			return v
		}
	}
	return nil
}

// ClassCount is the number of the route's answers in a class.
func (rr *RouteResult) ClassCount(c Class) int64 {
	var n int64
	for _, v := range rr.Verdicts {
		if v.Class == c {
			n += v.Count
		}
	}
	return n
}

// Latency merges the route's histograms of a class into a new histogram (µs).
func (rr *RouteResult) Latency(c Class) *hdrhistogram.Histogram {
	var h *hdrhistogram.Histogram
	for _, v := range rr.Verdicts {
		if h == nil {
			h = hdrhistogram.New(v.Latency.LowestTrackableValue(), v.Latency.HighestTrackableValue(), int(v.Latency.SignificantFigures()))
		}
		if v.Class == c {
			h.Merge(v.Latency)
		}
	}
	if h == nil {
		h = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), totalSigFigs)
	}
	return h
}

// LateFraction is the share of sent requests that started late.
func (r *Result) LateFraction() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Late) / float64(r.Sent)
}

// GeneratorLimited tells whether the generator, not the server, may have limited the
// offered load: too many late sends, or planned sends never sent before the hard stop.
func (r *Result) GeneratorLimited() bool {
	return r.LateFraction() > LateWarnFraction || (r.Unsent > 0 && r.StopReason == StopMaxTime)
}

// Warnings lists what a reader must not miss, loudest first.
func (r *Result) Warnings() []string {
	var w []string
	if r.GeneratorLimited() {
		msg := fmt.Sprintf("generator could not keep the target rate: %.1f%% late (started more than %v after the intended time)",
			100*r.LateFraction(), r.LateThreshold)
		if r.Sent > 0 && r.Stalled > 0 {
			msg += fmt.Sprintf("; %.1f%% found no free worker - raise -conns/-workers (now %d/%d)",
				100*float64(r.Stalled)/float64(r.Sent), r.Conns, r.Workers)
		} else {
			msg += "; the generator's machine is short of CPU (see floodgate bench -self-test)"
		}
		if r.Unsent > 0 && r.StopReason == StopMaxTime {
			msg += fmt.Sprintf("; %d planned requests were never sent before the hard stop", r.Unsent)
		}
		w = append(w, msg)
	}
	if r.Unsent > 0 && r.StopReason == StopCancelled {
		w = append(w, fmt.Sprintf("run cancelled: %d of %d planned requests were not sent", r.Unsent, r.Planned))
	}
	if n := r.ClassCount("", ClassError); n > 0 {
		w = append(w, fmt.Sprintf("%d unexplained errors: 5xx answers without an %s header (%s)", n, VerdictHeader, r.byRoute(ClassError)))
	}
	if n := r.ClassCount("", ClassClient); n > 0 {
		w = append(w, fmt.Sprintf("%d requests got no answer (%s)", n, r.verdictList(ClassClient)))
	}
	if n := r.ClassCount("", ClassOther); n > 0 {
		w = append(w, fmt.Sprintf("%d answers were 1xx/4xx without an %s header (%s)", n, VerdictHeader, r.verdictList(ClassOther)))
	}
	return w
}

func (r *Result) byRoute(c Class) string {
	var parts []string
	for _, rr := range r.Routes {
		if n := rr.ClassCount(c); n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", rr.Name, n))
		}
	}
	return strings.Join(parts, ", ")
}

func (r *Result) verdictList(c Class) string {
	m := map[string]int64{}
	for _, rr := range r.Routes {
		for _, v := range rr.Verdicts {
			if v.Class == c {
				m[v.Verdict] += v.Count
			}
		}
	}
	var parts []string
	for _, vc := range sortedCounts(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", vc.Verdict, vc.Count))
	}
	return strings.Join(parts, ", ")
}
