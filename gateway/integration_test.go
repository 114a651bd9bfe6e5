package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

const itConfig = `
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools:
  query: {addrs: ["{{QUERY}}"], max_conns: 32, eject: {failures: 3, duration: 300ms}}
routes:
  lottery:
    path: /lottery
    pool: query
    core: true
    timeout: 1s
    fallback: {status: 503, body: '{"ok":false}'}
`

var client = itest.Client

type readyz struct {
	Generation uint64 `json:"generation"`
}

func generation(t testing.TB, g *itest.Gateway) uint64 {
	t.Helper()
	_, body, _ := itest.Get(t, g.AdminURL("/readyz"))
	var r readyz
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz: %v: %s", err, body)
	}
	return r.Generation
}

func lastEvent(t testing.TB, g *itest.Gateway) map[string]any {
	t.Helper()
	_, body, _ := itest.Get(t, g.AdminURL("/events"))
	var evs []map[string]any
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatalf("/events: %v", err)
	}
	if len(evs) == 0 {
		return nil
	}
	return evs[len(evs)-1]
}

func metricValue(t testing.TB, g *itest.Gateway, series string) string {
	t.Helper()
	_, body, _ := itest.Get(t, g.AdminURL("/metrics"))
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}

// TestSIGHUPReload: good -> bad -> good. The bad file changes nothing (same generation,
// still serving, counted and listed at /events); the good one applies.
func TestSIGHUPReload(t *testing.T) {
	itest.RequireIntegration(t)
	q, _ := itest.Backend(t, "query")
	cfg := strings.ReplaceAll(itConfig, "{{QUERY}}", q)
	g := itest.StartGateway(t, cfg)

	if code, body, _ := itest.Get(t, g.URL("/lottery")); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("before reload: %d %s", code, body)
	}
	gen := generation(t, g)

	// bad: unknown pool and a negative timeout
	g.WriteConfig(t, strings.Replace(strings.Replace(cfg, "pool: query", "pool: qeury", 1), "timeout: 1s", "timeout: -1s", 1))
	g.Proc.Signal(syscall.SIGHUP)
	itest.WaitFor(t, "the rejected event", 5*time.Second, func() bool {
		ev := lastEvent(t, g)
		return ev != nil && ev["result"] == "rejected"
	})
	ev := lastEvent(t, g)
	errs := fmt.Sprint(ev["errors"])
	for _, want := range []string{`routes.lottery.pool: no pool named "qeury"`, "routes.lottery.timeout: must not be negative"} {
		if !strings.Contains(errs, want) {
			t.Errorf("rejected event errors %s do not mention %q", errs, want)
		}
	}
	if got := generation(t, g); got != gen {
		t.Fatalf("generation %d after a rejected reload, want %d", got, gen)
	}
	if code, _, _ := itest.Get(t, g.URL("/lottery")); code != 200 {
		t.Fatalf("not serving the old configuration after a bad reload: %d", code)
	}
	if v := metricValue(t, g, `floodgate_config_updates_total{result="rejected"}`); v != "1" {
		t.Errorf("rejected updates counter = %q, want 1", v)
	}

	// good: the route's kill switch
	g.WriteConfig(t, strings.Replace(cfg, "core: true", "core: true\n    enabled: false", 1))
	g.Proc.Signal(syscall.SIGHUP)
	itest.WaitFor(t, "the new generation", 5*time.Second, func() bool { return generation(t, g) == gen+1 })
	code, body, hdr := itest.Get(t, g.URL("/lottery"))
	if code != 503 || hdr.Get("X-Floodgate-Verdict") != "route/disabled" || body != `{"ok":false}` {
		t.Fatalf("after good reload: %d %q verdict %q, want the fallback with route/disabled", code, body, hdr.Get("X-Floodgate-Verdict"))
	}
}

// TestBackendKilledMidRun: the backend dies under load and comes back. Every answer is
// either the backend's or a fallback with a verdict - never a bare 5xx, never a reset -
// and traffic recovers when the backend returns.
func TestBackendKilledMidRun(t *testing.T) {
	itest.RequireIntegration(t)
	q, qp := itest.Backend(t, "query")
	g := itest.StartGateway(t, strings.ReplaceAll(itConfig, "{{QUERY}}", q))

	var ok, fallback, bare, transport atomic.Int64
	verdicts := sync.Map{}
	stop := make(chan struct{})
	wait := itest.Load(8, []string{g.URL("/lottery")}, stop, func(_ string, resp *http.Response, err error) {
		if err != nil {
			transport.Add(1)
			return
		}
		v := resp.Header.Get("X-Floodgate-Verdict")
		switch {
		case resp.StatusCode == 200 && v == "":
			ok.Add(1)
		case v != "":
			fallback.Add(1)
			verdicts.Store(v, true)
		default:
			bare.Add(1)
		}
	})
	time.Sleep(500 * time.Millisecond)
	okBefore := ok.Load()
	qp.Kill()
	time.Sleep(1 * time.Second)
	fallbackDuring := fallback.Load()
	itest.BackendAt(t, "query", q)
	okAtRestart := ok.Load()
	itest.WaitFor(t, "traffic to recover", 5*time.Second, func() bool { return ok.Load() > okAtRestart+50 })
	close(stop)
	wait()

	if okBefore == 0 {
		t.Fatalf("no successful requests before the kill")
	}
	if fallbackDuring == 0 {
		t.Fatalf("no fallback answers while the backend was down")
	}
	if bare.Load() != 0 || transport.Load() != 0 {
		t.Fatalf("%d bare error answers and %d transport errors; every failure must be a fallback with a verdict", bare.Load(), transport.Load())
	}
	var seen []string
	verdicts.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
	sort.Strings(seen)
	for _, v := range seen {
		if !strings.HasPrefix(v, "upstream/") {
			t.Errorf("unexpected verdict %q while the backend was down", v)
		}
	}
	t.Logf("ok=%d fallback=%d verdicts=%v", ok.Load(), fallback.Load(), seen)
}

// TestBulkhead: a flood on the heavy route (slow backend, small pool) cannot take the
// connections of the light route: the light route keeps answering from its backend,
// with its latency, while the heavy route's excess gets upstream/busy at once.
func TestBulkhead(t *testing.T) {
	itest.RequireIntegration(t)
	light, _ := itest.Backend(t, "query")
	heavy, _ := itest.Backend(t, "query", "-latency", "300ms")
	cfg := fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools:
  light: {addrs: ["%s"], max_conns: 16}
  heavy: {addrs: ["%s"], max_conns: 4}
routes:
  info:  {path: /info, pool: light, timeout: 1s}
  grant: {path: /grant, pool: heavy, core: true, timeout: 2s}
`, light, heavy)
	g := itest.StartGateway(t, cfg)

	measure := func(n int) []time.Duration {
		var lat []time.Duration
		for i := 0; i < n; i++ {
			start := time.Now()
			code, _, hdr := itest.Get(t, g.URL("/info"))
			lat = append(lat, time.Since(start))
			if code != 200 || hdr.Get("X-Floodgate-Verdict") != "" {
				t.Fatalf("light route answered %d %q", code, hdr.Get("X-Floodgate-Verdict"))
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat
	}
	// The heavy backend takes 300 ms per request; had the light route shared its
	// connections, most of its requests would wait that long. The median is compared, not
	// the tail. The measurement is only valid on a machine quiet enough to see 100 ms: if
	// the light route alone already has a p99 above that, it is taken again
	// (itest.Measure).
	p50 := func(l []time.Duration) time.Duration { return l[len(l)/2] }
	p99 := func(l []time.Duration) time.Duration { return l[len(l)*99/100] }
	if !itest.Measure(t, "the bulkhead", func(int) string {
		base := measure(200)

		// flood the heavy route with 48 concurrent clients for about 2 s
		var busy, admitted atomic.Int64
		stop := make(chan struct{})
		wait := itest.Load(48, []string{g.URL("/grant")}, stop, func(_ string, resp *http.Response, err error) {
			switch {
			case err != nil:
			case resp.Header.Get("X-Floodgate-Verdict") == "upstream/busy":
				busy.Add(1)
			case resp.StatusCode == 200:
				admitted.Add(1)
			}
		})
		time.Sleep(300 * time.Millisecond)
		flood := measure(200)
		close(stop)
		wait()

		t.Logf("light route p50/p99: alone %v/%v, during heavy flood %v/%v; heavy: admitted %d, busy %d",
			p50(base), p99(base), p50(flood), p99(flood), admitted.Load(), busy.Load())
		if busy.Load() == 0 {
			t.Fatalf("the heavy pool's budget was never exhausted; the test did not saturate it")
		}
		if limit := 100 * time.Millisecond; p50(flood) > limit && p50(flood) > 10*p50(base) {
			if p99(base) > limit {
				return fmt.Sprintf("the light route alone has a p99 of %v: the machine is too loaded to see %v", p99(base), limit)
			}
			t.Fatalf("light route p50 %v during the heavy flood (alone: %v): the bulkhead leaked", p50(flood), p50(base))
		}
		return ""
	}) {
		itest.Unmeasured(t, "the bulkhead")
	}
}

// TestSIGHUPAliasBomb: a configuration file of nested YAML aliases (a few hundred bytes
// that expand to gigabytes) reloaded with SIGHUP is refused before anything expands it;
// the gateway keeps serving with what it had.
func TestSIGHUPAliasBomb(t *testing.T) {
	itest.RequireIntegration(t)
	q, _ := itest.Backend(t, "query")
	cfg := strings.ReplaceAll(itConfig, "{{QUERY}}", q)
	g := itest.StartGateway(t, cfg)
	gen := generation(t, g)
	bomb, err := os.ReadFile(filepath.Join(itest.ModuleRoot(), "testdata/attacks/yaml/laughs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// the bomb's keys beside a valid configuration (its own routes/pools keys removed)
	var lines []string
	for _, l := range strings.Split(string(bomb), "\n") {
		if strings.HasPrefix(l, "a") {
			lines = append(lines, l)
		}
	}
	g.WriteConfig(t, strings.Join(lines, "\n")+"\n"+cfg)
	g.Proc.Signal(syscall.SIGHUP)
	itest.WaitFor(t, "the rejected event", 60*time.Second, func() bool {
		ev := lastEvent(t, g)
		return ev != nil && ev["result"] == "rejected"
	})
	if errs := fmt.Sprint(lastEvent(t, g)["errors"]); !strings.Contains(errs, "anchors and aliases are not accepted") {
		t.Errorf("rejected event errors %s do not say why", errs)
	}
	if g.Proc.Exited() {
		t.Fatalf("the gateway exited:\n%s", g.Proc.Output())
	}
	if got := generation(t, g); got != gen {
		t.Fatalf("generation %d after a rejected reload, want %d", got, gen)
	}
	if code, _, _ := itest.Get(t, g.URL("/lottery")); code != 200 {
		t.Fatalf("not serving after the refused reload: %d", code)
	}
}
