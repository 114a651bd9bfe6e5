package gateway_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestRecoveryAfterBackendRestart: two real query backends behind two pools - one probed
// with a TCP connect, one with GET /healthz - are killed under steady traffic, stay down
// for an outage, and are started again on the same addresses. Each route must answer
// again within about one probe interval of its backend answering (asserted only as a
// ceiling, far below the 5-minute ejection timer, which therefore cannot be what brought
// it back), and no request after the return may fail: the first request is not the probe,
// and nothing re-ejects the server.
//
// FLOODGATE_RECOVERY_DRILL=1 (make drill-recovery) also runs the outage of issue 11
// (10 s, eject.duration 10s, probes every 1s) with health checks on and off and logs both
// recovery times (bench/RESULTS.md).
func TestRecoveryAfterBackendRestart(t *testing.T) {
	itest.RequireIntegration(t)
	run := func(t *testing.T, hc string, interval, outage time.Duration, eject string, assert bool) {
		qa, procA := itest.Backend(t, "query")
		qb, procB := itest.Backend(t, "query")
		cfg := fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools:
  qtcp:  {addrs: ["%s"], max_conns: 32, eject: {failures: 3, duration: %s}, health_check: {%s interval: %v, timeout: %v}}
  qhttp: {addrs: ["%s"], max_conns: 32, eject: {failures: 3, duration: %s}, health_check: {%s path: /healthz, interval: %v, timeout: %v}}
routes:
  lottery: {path: /lottery, pool: qtcp, core: true, timeout: 10s}
  info:    {path: /info, pool: qhttp, core: true, timeout: 10s}
`, qa, eject, hc, interval, interval, qb, eject, hc, interval, interval)
		g := itest.StartGateway(t, cfg)
		routes := []struct {
			name, path, addr string
			proc             **itest.Proc
		}{{"lottery", "/lottery", qa, &procA}, {"info", "/info", qb, &procB}}

		// Steady traffic on both routes from start to end (4 workers each), each answer
		// recorded with the times the request was sent and answered.
		type answer struct {
			sent, at time.Time
			status   int
			verdict  string
		}
		var mu sync.Mutex
		answers := map[string][]answer{}
		stop := make(chan struct{})
		var workers sync.WaitGroup
		for w := 0; w < 8; w++ {
			r := routes[w%2]
			workers.Add(1)
			go func() {
				defer workers.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					a := answer{sent: time.Now()}
					resp, err := itest.Client.Get(g.URL(r.path))
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						a.status, a.verdict = resp.StatusCode, resp.Header.Get("X-Floodgate-Verdict")
					}
					a.at = time.Now()
					mu.Lock()
					answers[r.name] = append(answers[r.name], a)
					mu.Unlock()
				}
			}()
		}
		defer func() { close(stop); workers.Wait() }()
		healthy := func(addr, pool string) string {
			return metricValue(t, g, fmt.Sprintf(`floodgate_upstream_healthy{addr="%s",pool="%s"}`, addr, pool))
		}
		itest.WaitFor(t, "both routes answered by their backends", time.Minute, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(answers["lottery"]) > 0 && answers["lottery"][len(answers["lottery"])-1].status == 200 &&
				len(answers["info"]) > 0 && answers["info"][len(answers["info"])-1].status == 200
		})

		procA.Kill()
		procB.Kill()
		itest.WaitFor(t, "both servers ejected", time.Minute, func() bool {
			return healthy(qa, "qtcp") == "0" && healthy(qb, "qhttp") == "0"
		})
		time.Sleep(outage)

		// Restart both; each route's recovery is measured from the moment its backend
		// answers /healthz itself (BackendAt waits for that).
		var wg sync.WaitGroup
		back := map[string]time.Time{}
		for _, r := range routes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := itest.BackendAt(t, "query", r.addr)
				mu.Lock()
				*r.proc, back[r.name] = p, time.Now()
				mu.Unlock()
			}()
		}
		wg.Wait()
		recovered := map[string]time.Time{}
		itest.WaitFor(t, "both routes answered again", time.Minute, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range routes {
				if !recovered[r.name].IsZero() {
					continue
				}
				for _, a := range answers[r.name] {
					if a.status == 200 && a.at.After(back[r.name].Add(-time.Second)) {
						recovered[r.name] = a.at
						break
					}
				}
			}
			return len(recovered) == len(routes)
		})
		// Keep the traffic on for a while after the return: every answer must be the
		// backend's.
		settle := time.Now().Add(time.Second)
		itest.WaitFor(t, "a second of traffic after the return", time.Minute, func() bool { return time.Now().After(settle) })
		mu.Lock()
		defer mu.Unlock()
		for _, r := range routes {
			took := recovered[r.name].Sub(back[r.name])
			failedAfter, servedAfter := 0, 0
			for _, a := range answers[r.name] {
				if a.sent.After(recovered[r.name]) {
					servedAfter++
					if a.status != 200 {
						failedAfter++
						if failedAfter <= 3 {
							t.Logf("%s: after its return: status %d verdict %q at +%v", r.name, a.status, a.verdict, a.at.Sub(recovered[r.name]))
						}
					}
				}
			}
			t.Logf("health_check {%s interval %v}, eject %s, outage %v: route %s answered again %v after its backend was back; %d requests after that, %d failed",
				hc, interval, eject, outage, r.name, took.Round(time.Millisecond), servedAfter, failedAfter)
			if !assert {
				continue
			}
			if took > itest.MinWait {
				t.Errorf("%s: answered %v after its backend was back, want about one probe interval (%v)", r.name, took, interval)
			}
			if servedAfter == 0 || failedAfter > 0 {
				t.Errorf("%s: %d of %d requests failed after the route answered again, want none (a re-ejection or a stale connection)", r.name, failedAfter, servedAfter)
			}
		}
		for _, p := range []struct{ addr, pool string }{{qa, "qtcp"}, {qb, "qhttp"}} {
			n := metricValue(t, g, fmt.Sprintf(`floodgate_upstream_ejections_total{addr="%s",pool="%s"}`, p.addr, p.pool))
			t.Logf("pool %s: ejected %s times over the outage", p.pool, n)
			if assert && n != "1" {
				t.Errorf("%s ejected %s times, want once (nothing re-admitted it before it was back)", p.pool, n)
			}
		}
		if assert {
			for _, p := range []struct{ addr, pool string }{{qa, "qtcp"}, {qb, "qhttp"}} {
				if n := metricValue(t, g, fmt.Sprintf(`floodgate_upstream_health_checks_total{addr="%s",pool="%s",result="passed"}`, p.addr, p.pool)); n != "1" {
					t.Errorf("%s: %s passing probes, want 1", p.pool, n)
				}
			}
			resp, err := itest.Client.Get(g.AdminURL("/api/console"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf(`"GET /healthz every %v (timeout %v)"`, interval, interval); !strings.Contains(string(body), want) {
				t.Errorf("/api/console does not show the pool's health check: %.400s", body)
			}
		}
	}
	t.Run("probed", func(t *testing.T) { run(t, "", 200*time.Millisecond, time.Second, "5m", true) })
	if os.Getenv("FLOODGATE_RECOVERY_DRILL") == "" {
		return
	}
	t.Run("drill/probed", func(t *testing.T) { run(t, "", time.Second, 10*time.Second, "10s", true) })
	t.Run("drill/timer-only", func(t *testing.T) { run(t, "enabled: false,", time.Second, 10*time.Second, "10s", false) })
}
