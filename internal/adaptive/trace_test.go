package adaptive

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// stepSpec: 40 workers; 10 ms per request (capacity 4000/s), then 100 ms (capacity 400/s)
// from 20 s to 50 s; 800 requests/s offered throughout (2x the slowed capacity): a core
// route (200/s, 3 s timeout) and two non-core routes (400/s and 200/s, 500 ms timeouts).
func stepSpec() simSpec {
	return simSpec{
		workers: 40,
		routes: []simRoute{
			{name: "lottery", core: true, business: 6, rate: 200, timeout: 3 * time.Second},
			{name: "info", business: 2, tiers: 3, rate: 400, timeout: 500 * time.Millisecond},
			{name: "report", business: 1, rate: 200, timeout: 500 * time.Millisecond},
		},
		phases: []simPhase{
			{at: 0, service: 10 * time.Millisecond},
			{at: 20 * time.Second, service: 100 * time.Millisecond},
			{at: 50 * time.Second, service: 10 * time.Millisecond},
		},
		duration: 80 * time.Second,
		settings: Settings{Enabled: true, MinLimit: 4, MaxLimit: 200, PinnedLevel: -1, CoreFloor: MakeLevel(6, 0, 0)},
		params:   DefaultParams(),
	}
}

func TestTrace(t *testing.T) {
	if os.Getenv("ADAPTIVE_TRACE") == "" {
		t.Skip("set ADAPTIVE_TRACE=1 to print a trace")
	}
	r := runSim(stepSpec())
	for i, w := range r.windows {
		if i%5 != 0 {
			continue
		}
		fmt.Printf("%6.1fs limit %4d level %4d inflight %4d base %6.1f off %v shed %v ok %v to %v\n",
			w.at.Seconds(), w.limit, w.level, w.inflight, w.baseline, w.offered, w.shed, w.succeeded, w.timedOut)
	}
}

func TestTraceSteady(t *testing.T) {
	if os.Getenv("ADAPTIVE_TRACE") == "" {
		t.Skip("set ADAPTIVE_TRACE=1 to print a trace")
	}
	spec := stepSpec()
	spec.phases = []simPhase{{at: 0, service: 100 * time.Millisecond}}
	spec.duration = 180 * time.Second
	r := runSim(spec)
	for i, w := range r.windows {
		if i%20 != 0 {
			continue
		}
		fmt.Printf("%6.1fs limit %4d level %4d inflight %4d base %6.1f off %v shed %v ok %v to %v\n",
			w.at.Seconds(), w.limit, w.level, w.inflight, w.baseline, w.offered, w.shed, w.succeeded, w.timedOut)
	}
}
