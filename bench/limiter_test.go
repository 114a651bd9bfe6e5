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
// (real gateway, real backend, loopback) at 10x its rate for 20 s with an open-loop
// generator: admitted within +-2% of the ideal (burst + rate x time), and no one-second
// interval above rate + burst.
func TestLimiterAccuracyWholeProcess(t *testing.T) {
	itest.RequireIntegration(t)
	const rate, burst, secs = 200.0, 20.0, 20.0
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, p, loadgen.Options{Target: g.Addr, Seed: 1, Conns: 64})
	if err != nil {
		t.Fatal(err)
	}
	if res.GeneratorLimited() {
		t.Fatalf("the generator could not keep 10x the rate: %v", res.Warnings())
	}
	admitted := float64(res.ClassCount("", loadgen.ClassAdmitted))
	ideal := burst + rate*secs
	t.Logf("10x load (%g/s offered) for %gs against %g/s burst %g: admitted %.0f, ideal %.0f (%+.2f%%); sent %d",
		10*rate, secs, rate, burst, admitted, ideal, 100*(admitted-ideal)/ideal, res.Sent)
	if admitted < 0.98*ideal || admitted > 1.02*ideal {
		t.Errorf("admitted %.0f, want %.0f +-2%%", admitted, ideal)
	}
	if n := res.ClassCount("", loadgen.ClassError) + res.ClassCount("", loadgen.ClassClient); n != 0 {
		t.Errorf("%d requests failed without a verdict", n)
	}
	// per-interval: the generator closes an interval about once a second
	prev, worst := 0.0, 0.0
	for _, s := range res.Timeline {
		length := s.At - prev
		prev = s.At
		n := float64(s.Done[loadgen.ClassAdmitted])
		// an interval may hold a request sent at its very start that the previous one
		// counted as in flight: 2 requests of slack for the boundaries
		if limit := rate*length + burst + 2; n > limit {
			t.Errorf("interval ending at %.2fs (%.2fs long): %.0f admitted, above rate x length + burst = %.0f", s.At, length, n, limit)
		}
		if length > 0.5 && n/length > worst {
			worst = n / length
		}
	}
	t.Logf("highest admitted rate over an interval: %.1f/s (rate %g, burst %g)", worst, rate, burst)
}
