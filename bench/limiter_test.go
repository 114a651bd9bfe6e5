package bench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/bench/profile"
	"github.com/floodgate/floodgate/internal/itest"
)

// TestLimiterAccuracyWholeProcess drives a token_bucket route through the whole process
// (real gateway, real backend, loopback) at 10x its rate for 10 s with an open-loop
// generator: admitted within +-2% of the ideal (burst + rate x time), and no interval
// above rate x (its length + the longest answer in it) + burst.
//
// The count is compared with the time the requests were really sent over: the ideal is
// widened by the generator's worst lag (zero on a quiet machine, so the check is exact
// there). The measurement is valid only if the generator offered at least twice the rate
// in every second and lagged at most half a second; otherwise it is taken again (see
// itest.Measure). The upper bounds hold however loaded the machine is and are checked on
// every attempt.
func TestLimiterAccuracyWholeProcess(t *testing.T) {
	itest.RequireIntegration(t)
	const rate, burst, secs = 200.0, 20.0, 10.0
	q, _ := itest.Backend(t, "query")
	g := itest.StartGateway(t, fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools: {query: {addrs: ["%s"], max_conns: 64}}
routes:
  lottery:
    path: /lottery
    pool: query
    core: true
    filters: {token_bucket: {rate: %g, burst: %g}}
`, q, rate, burst))
	p, err := profile.Parse("limiter.yaml", []byte(fmt.Sprintf(`
name: limiter-10x
rate: %g
routes: [{name: lottery, path: /lottery, weight: 1}]
stages: [{hold: {rate: 1x, duration: %gs}}]
`, 10*rate, secs)))
	if err != nil {
		t.Fatal(err)
	}
	if !itest.Measure(t, "the limiter's accuracy at 10x its rate", func(n int) string {
		time.Sleep(time.Second) // the bucket refills to its burst between attempts
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		res, err := loadgen.Run(ctx, p, loadgen.Options{Target: g.Addr, Seed: int64(n), Conns: 64})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range res.Warnings() {
			t.Logf("generator: %s", w)
		}
		admitted := float64(res.ClassCount("", loadgen.ClassAdmitted))
		lag := float64(res.Lag.Max()) / 1e6 // seconds
		// Wrong however loaded the machine is: more than the bucket can give over the
		// whole run, or over any interval of the timeline.
		if most := burst + rate*res.Elapsed.Seconds() + 2; admitted > most {
			t.Errorf("admitted %.0f in a run of %v: above burst + rate x run = %.0f", admitted, res.Elapsed, most)
		}
		prev, worst, thin := 0.0, 0.0, ""
		for i, s := range res.Timeline {
			length := s.At - prev
			prev = s.At
			done := float64(s.Done[loadgen.ClassAdmitted])
			// the answers completed in an interval were admitted in it or at most their
			// latency (measured from the intended send time) before it; 2 requests of
			// slack for the boundaries
			if limit := rate*(length+float64(s.Admitted.Max)/1e6) + burst + 2; done > limit {
				t.Errorf("interval ending at %.2fs (%.2fs long, slowest answer %dus): %.0f admitted, above rate x (length + slowest) + burst = %.0f",
					s.At, length, s.Admitted.Max, done, limit)
			}
			if length > 0.5 && done/length > worst {
				worst = done / length
			}
			if i < len(res.Timeline)-1 && length > 0.5 && float64(s.Sent) < 2*rate*length && thin == "" {
				thin = fmt.Sprintf("only %d sent in the interval ending at %.2fs (%.2fs long)", s.Sent, s.At, length)
			}
		}
		t.Logf("attempt %d: 10x load (%g/s offered) for %gs against %g/s burst %g: admitted %.0f, ideal %.0f (%+.2f%%); sent %d, generator lag max %.3fs; highest admitted rate over an interval %.1f/s",
			n, 10*rate, secs, rate, burst, admitted, burst+rate*secs, 100*(admitted-burst-rate*secs)/(burst+rate*secs), res.Sent, lag, worst)
		// Valid only if the bucket was offered more than it gives all along.
		switch {
		case res.Unsent > 0:
			return fmt.Sprintf("%d planned requests never sent", res.Unsent)
		case lag > 0.5:
			return fmt.Sprintf("the generator lagged up to %.2fs", lag)
		case thin != "":
			return "the generator fell below twice the rate: " + thin
		}
		// The requests were sent over secs, shifted by at most lag at either end.
		low, high := burst+rate*(secs-lag), burst+rate*(secs+lag)
		if admitted < 0.98*low || admitted > 1.02*high {
			t.Errorf("admitted %.0f, want %.0f..%.0f (burst + rate x (%gs -+ lag %.3fs)) +-2%%", admitted, low, high, secs, lag)
		}
		if n := res.ClassCount("", loadgen.ClassError) + res.ClassCount("", loadgen.ClassClient); n != 0 {
			t.Errorf("%d requests failed without a verdict", n)
		}
		return ""
	}) {
		itest.Unmeasured(t, "the limiter's accuracy at 10x its rate")
	}
}
