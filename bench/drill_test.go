// Package bench_test runs a short drill against the demo configuration and checks the
// shape the mission promises: core routes admitted near their limits, non-core routes
// kept near their ratios, and no failure without a verdict.
package bench_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/bench/profile"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
)

// drillProfile is seed-night's mix held at a constant rate, with uniformly drawn users
// (so that the kept share of a sampled route is a binomial proportion).
const drillProfile = `
name: drill-test
rate: 2500
timeout: 10s
users: {size: 1000000, first: 10001, distribution: uniform, param: {query: uin}}
tags: {param: {query: adtag}, shares: {wechat: 0.5, qzone: 0.3, banner: 0.2}}
routes:
  - {name: lottery, path: /lottery, weight: 40}
  - name: grant
    method: POST
    path: /grant
    weight: 10
    extra_user_param: {query: user}
    id_param: {header: Idempotency-Key}
    body: prize=red-envelope
    headers: {Content-Type: application/x-www-form-urlencoded}
  - {name: info, path: /info, weight: 35}
  - {name: report, path: /report, weight: 15}
stages:
  - hold: {rate: 1x, duration: 5s}
`

func TestDrillShapeOnDemoConfig(t *testing.T) {
	itest.RequireIntegration(t)
	root := itest.ModuleRoot()
	query, _ := itest.Backend(t, "query")
	delivery, _ := itest.Backend(t, "delivery", "-ledger", filepath.Join(t.TempDir(), "grants.jsonl"))
	packs, _ := itest.Backend(t, "packs", "-packs", filepath.Join(root, "testdata", "packs"))

	// the demo's grant route is async: a real queue node, and a journal of the test's own
	qaddr := itest.FreeAddr(t)
	node, err := queue.StartServer(queue.ServerOptions{Name: "drill", Listen: qaddr, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	journalDir := t.TempDir()

	b, err := os.ReadFile(filepath.Join(root, "configs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The demo configuration as it is, on free ports, with the two core limits scaled to
	// what this drill offers (so that they bind) and the pack file found from here.
	cfg := strings.NewReplacer(
		"listen: 127.0.0.1:8080", `listen: "{{LISTEN}}"`,
		"listen: 127.0.0.1:9901", `listen: "{{ADMIN}}"`,
		"127.0.0.1:8081", query,
		"127.0.0.1:8082", delivery,
		"127.0.0.1:8083", packs,
		"token_bucket: {rate: 1500, burst: 300}", "token_bucket: {rate: 600, burst: 60}",
		"token_bucket: {rate: 5000, burst: 1000}", "token_bucket: {rate: 150, burst: 15}",
		"url: nats://127.0.0.1:4222", "url: nats://"+qaddr+"\n  journal: {dir: "+journalDir+"}",
		"testdata/packs/", filepath.Join(root, "testdata", "packs")+"/",
	).Replace(string(b))
	for _, want := range []string{"{{LISTEN}}", "{{ADMIN}}", "rate: 600", "rate: 150", query, qaddr} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("configs/demo.yaml changed shape: %q not substituted; update this test", want)
		}
	}
	g := itest.StartGateway(t, cfg)

	p, err := profile.Parse("drill-test.yaml", []byte(drillProfile))
	if err != nil {
		t.Fatal(err)
	}
	qc, err := queue.Connect(queue.Options{URLs: "nats://" + qaddr, Stream: queue.StreamConfig{Name: "FLOODGATE_GRANTS"}})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	// storedGrants counts the distinct grants in the queue: a grant may be stored twice
	// (a batch whose acknowledgement came after the publish timeout is also journaled and
	// replayed) - by design, delivery is by grant id - so messages are not grants.
	storedGrants := func() int {
		ids := map[string]bool{}
		sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer scancel()
		if err := qc.Scan(sctx, queue.Subject("grant"), time.Time{}, func(m queue.Message) error {
			r, err := grant.Decode(m.Data)
			if err != nil {
				return err
			}
			ids[r.ID] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	const secs = 5.0
	core := []struct {
		route       string
		rate, burst float64
	}{{"lottery", 600, 60}, {"grant", 150, 15}}
	// The core routes' admitted counts are only a measurement if the generator offered
	// more than their limits all along; see itest.Measure. Request ids are unique per run,
	// so each attempt's grants are new ones in the queue.
	if !itest.Measure(t, "the drill's core limits", func(n int) string {
		time.Sleep(time.Second) // the buckets refill to their bursts between attempts
		before := storedGrants()
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		res, err := loadgen.Run(ctx, p, loadgen.Options{Target: g.Addr, Seed: int64(6 + n), Conns: 128})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range res.Warnings() {
			t.Logf("generator: %s", w)
		}
		lag := float64(res.Lag.Max()) / 1e6 // seconds

		// wrong however loaded the machine is: a failure without a verdict, more admitted
		// than a limit gives over the time the requests were sent, a 202 not in the queue
		if n := res.ClassCount("", loadgen.ClassError); n != 0 {
			t.Errorf("%d answers were 5xx without a verdict", n)
		}
		for _, c := range core {
			got := float64(res.ClassCount(c.route, loadgen.ClassAdmitted))
			if most := c.rate*(secs+lag) + c.burst + 1; got > most {
				t.Errorf("%s admitted %.0f, above its limit x (%gs + generator lag %.3fs) + burst = %.0f", c.route, got, secs, lag, most)
			}
		}
		// every 202 is stored; a grant stored whose 202 did not reach the generator in
		// time (client timeout on a loaded machine) is stored without a 202 - never more
		// than sent
		// A 202 is stored in the queue or, when the queue is slow, in the journal, which
		// replays it: wait for the queue to hold them all (at most 2 minutes).
		accepted := res.Count("grant", loadgen.VerdictAccepted)
		stored := storedGrants() - before
		for deadline := time.Now().Add(120 * time.Second); int64(stored) < accepted && time.Now().Before(deadline); {
			time.Sleep(500 * time.Millisecond)
			stored = storedGrants() - before
		}
		sent := int64(0)
		if rr := res.Route("grant"); rr != nil {
			for c := loadgen.Class(0); c < loadgen.NumClasses; c++ {
				sent += rr.ClassCount(c)
			}
		}
		if accepted == 0 || int64(stored) < accepted || int64(stored) > sent {
			t.Errorf("grant: %d accepted (202) of %d sent, %d in the queue", accepted, sent, stored)
		}

		// non-core routes: the share the sample filter kept near the ratio (a proportion:
		// valid at any speed). The sample runs first; what it kept may still be shed after
		// it (the pool's adaptive protection on a loaded machine), so kept = every answer
		// but sample/dropped; requests that got no answer are left out.
		for _, c := range []struct {
			route string
			ratio float64
		}{{"info", 0.5}, {"report", 0.2}} {
			answered := 0.0
			for cl := loadgen.Class(0); cl < loadgen.NumClasses; cl++ {
				if cl != loadgen.ClassClient {
					answered += float64(res.ClassCount(c.route, cl))
				}
			}
			dropped := float64(res.Count(c.route, "sample/dropped"))
			kept := answered - dropped
			n := answered
			share := kept / n
			tol := 4*math.Sqrt(c.ratio*(1-c.ratio)/n) + 0.01
			t.Logf("%s: kept %.0f of %.0f = %.3f (ratio %.2f, tolerance %.3f)", c.route, kept, n, share, c.ratio, tol)
			if n < 500 || math.Abs(share-c.ratio) > tol {
				t.Errorf("%s kept share %.3f over %.0f requests, want %.2f +- %.3f", c.route, share, n, c.ratio, tol)
			}
		}

		// valid only if the generator kept (about) its schedule
		switch {
		case res.Unsent > 0:
			return fmt.Sprintf("%d planned requests never sent", res.Unsent)
		case lag > 0.5:
			return fmt.Sprintf("the generator lagged up to %.2fs", lag)
		}
		prev := 0.0
		for i, s := range res.Timeline {
			length := s.At - prev
			prev = s.At
			if i == len(res.Timeline)-1 || length < 0.5 {
				continue
			}
			for _, c := range core {
				for ri, rr := range res.Routes {
					if rr.Name == c.route && float64(s.Routes[ri].Sent) < 1.2*c.rate*length {
						return fmt.Sprintf("%s: only %d sent in the interval ending at %.2fs (%.2fs long), under 1.2 x its limit", c.route, s.Routes[ri].Sent, s.At, length)
					}
				}
			}
		}
		if n := res.ClassCount("", loadgen.ClassClient); n != 0 {
			t.Errorf("%d requests got no answer", n)
		}
		// core routes: admitted near their limits (rate x time + burst)
		for _, c := range core {
			got := float64(res.ClassCount(c.route, loadgen.ClassAdmitted))
			ideal := c.rate*secs + c.burst
			t.Logf("%s: admitted %.0f, limit x time + burst = %.0f (%+.1f%%)", c.route, got, ideal, 100*(got-ideal)/ideal)
			if got < 0.9*(c.rate*(secs-lag)+c.burst) {
				t.Errorf("%s admitted %.0f, want near its limit %.0f (at least 90%% of it, less the generator's lag %.3fs)", c.route, got, ideal, lag)
			}
		}
		return ""
	}) {
		itest.Unmeasured(t, "the drill's core limits")
	}
}
