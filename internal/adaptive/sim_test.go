package adaptive

import (
	"math"
	"time"
)

// The simulator drives a Controller with a fake clock (1 ms steps, Update every 100 ms)
// against a model backend: `workers` requests are served at once, each for the service
// time in force when it starts; the others wait in a FIFO queue. A request that is not
// answered within its route's timeout is a timeout for the gateway (Done(TimedOut)) but
// keeps its worker until the backend is done with it, as a real slow store does.

type simRoute struct {
	name     string
	core     bool
	business int
	tiers    int     // promotion tiers the users are spread over (0: none -> top tier)
	rate     float64 // requests per second
	timeout  time.Duration
}

type simPhase struct {
	at      time.Duration
	service time.Duration
	scale   float64 // offered load multiplier from here on (0: unchanged)
}

type simSpec struct {
	workers  int
	routes   []simRoute
	phases   []simPhase // sorted by at; the first at 0
	duration time.Duration
	settings Settings
	params   Params
	users    int // user population per route
}

type simReq struct {
	route    int
	arrival  int64 // ms
	deadline int64
	done     bool
}

// simWindow is what happened in one 100 ms window.
type simWindow struct {
	at        time.Duration // end of the window
	limit     int64
	level     int
	inflight  int64
	baseline  float64
	offered   []int // by route
	shed      []int
	succeeded []int // answered within the timeout (counted when answered)
	timedOut  []int
}

type simResult struct {
	windows []simWindow
	spec    *simSpec
}

func runSim(spec simSpec) *simResult {
	ctl := New(spec.params, spec.settings)
	nr := len(spec.routes)
	res := &simResult{spec: &spec}
	acc := make([]float64, nr)
	seq := make([]int, nr)
	var queue []*simReq
	byRoute := make([][]*simReq, nr) // outstanding, in deadline order
	type worker struct {
		req    *simReq
		finish int64
	}
	workers := make([]worker, spec.workers)
	free := spec.workers
	nextFinish := int64(math.MaxInt64)
	phase, scale := 0, 1.0
	service := spec.phases[0].service
	if spec.phases[0].scale > 0 {
		scale = spec.phases[0].scale
	}
	newWindow := func(at int64) simWindow {
		return simWindow{at: time.Duration(at) * time.Millisecond, offered: make([]int, nr), shed: make([]int, nr),
			succeeded: make([]int, nr), timedOut: make([]int, nr)}
	}
	win := newWindow(100)
	end := spec.duration.Milliseconds()
	users := spec.users
	if users == 0 {
		users = 10000
	}
	for t := int64(1); t <= end; t++ {
		for phase+1 < len(spec.phases) && spec.phases[phase+1].at.Milliseconds() <= t {
			phase++
			service = spec.phases[phase].service
			if spec.phases[phase].scale > 0 {
				scale = spec.phases[phase].scale
			}
		}
		// answers (the scan only when some worker is done: nextFinish is the earliest)
		for i := range workers {
			if t < nextFinish {
				break
			}
			w := &workers[i]
			if w.req != nil && w.finish <= t {
				r := w.req
				if !r.done {
					r.done = true
					rt := &spec.routes[r.route]
					ctl.Done(time.Duration(t-r.arrival)*time.Millisecond, Answered, rt.core)
					win.succeeded[r.route]++
				}
				w.req = nil
				free++
			}
		}
		if t >= nextFinish {
			nextFinish = math.MaxInt64
			for i := range workers {
				if workers[i].req != nil {
					nextFinish = min(nextFinish, workers[i].finish)
				}
			}
		}
		// timeouts
		for ri := range byRoute {
			q := byRoute[ri]
			for len(q) > 0 && (q[0].done || q[0].deadline <= t) {
				if !q[0].done {
					q[0].done = true
					ctl.Done(0, TimedOut, spec.routes[ri].core)
					win.timedOut[ri]++
				}
				q = q[1:]
			}
			byRoute[ri] = q
		}
		// arrivals
		wall := t * int64(time.Millisecond)
		for ri := range spec.routes {
			rt := &spec.routes[ri]
			acc[ri] += rt.rate * scale / 1000
			for acc[ri] >= 1 {
				acc[ri]--
				seq[ri]++
				uid := uint64((seq[ri] * 7919) % users)
				tier := TierLevels - 1
				if rt.tiers > 0 {
					tier = int(uid) % rt.tiers
				}
				lv := MakeLevel(rt.business, tier, UserPriority(mix(uid, uint64(ri)), wall, int64(10*time.Second)))
				win.offered[ri]++
				if !admit(ctl, lv, rt.core).Forward() {
					win.shed[ri]++
					continue
				}
				r := &simReq{route: ri, arrival: t, deadline: t + rt.timeout.Milliseconds()}
				queue = append(queue, r)
				byRoute[ri] = append(byRoute[ri], r)
			}
		}
		// the backend takes what it can
		for i := range workers {
			if len(queue) == 0 || free == 0 {
				break
			}
			if workers[i].req == nil {
				workers[i] = worker{req: queue[0], finish: t + service.Milliseconds()}
				nextFinish = min(nextFinish, workers[i].finish)
				queue = queue[1:]
				free--
			}
		}
		if t%100 == 0 {
			ctl.Update()
			s := ctl.Snapshot()
			win.limit, win.level, win.inflight, win.baseline = s.Limit, s.Level, s.InFlight, s.BaselineMs
			res.windows = append(res.windows, win)
			win = newWindow(t + 100)
		}
	}
	return res
}

// span returns the windows whose end lies in (from, to].
func (r *simResult) span(from, to time.Duration) []simWindow {
	var out []simWindow
	for _, w := range r.windows {
		if w.at > from && w.at <= to {
			out = append(out, w)
		}
	}
	return out
}

// totals sums a route's counters over windows: offered, shed, succeeded, timed out.
func totals(ws []simWindow, route int) (offered, shed, ok, timedOut int) {
	for _, w := range ws {
		offered += w.offered[route]
		shed += w.shed[route]
		ok += w.succeeded[route]
		timedOut += w.timedOut[route]
	}
	return
}

func meanStd(xs []float64) (mean, std float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)))
}

func limits(ws []simWindow) []float64 {
	out := make([]float64, len(ws))
	for i, w := range ws {
		out[i] = float64(w.limit)
	}
	return out
}
