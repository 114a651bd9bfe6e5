package consul_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestSwitchAtScale measures a kill switch with many keys against a real Consul agent:
// keys keys under the prefix (five a route: enabled, timeout, fallback status, a token
// bucket's rate and burst, over keys/5 routes), then toggles routes/r1/enabled and times
// each `consul kv put` until the gateway answers with the new verdict. make test runs it
// with 10,000 keys and 20 toggles and holds the median under 500 ms; `make
// drill-consul-scale` (FLOODGATE_SCALE=1) with 50,000 keys and 100 toggles, and holds p99
// under 500 ms (the target). Each toggle also
// times a control (a put of a key the gateway does not watch and a request) so that a
// machine too loaded to measure is told from a slow gateway (itest.Measure).
func TestSwitchAtScale(t *testing.T) {
	keys, toggles := 10000, 20
	drill := os.Getenv("FLOODGATE_SCALE") != ""
	if drill {
		keys, toggles = 50000, 100
	}
	itest.RequireIntegration(t)
	c := itest.StartConsul(t)
	query, _ := itest.Backend(t, "query")
	prefix := "fg-scale/"
	routes := keys / 5

	var cfg strings.Builder
	fmt.Fprintf(&cfg, "server: {listen: \"{{LISTEN}}\"}\nadmin: {listen: \"{{ADMIN}}\"}\npools:\n  query: {addrs: [%q], max_conns: 64}\nroutes:\n", query)
	for i := range routes {
		fmt.Fprintf(&cfg, "  r%d: {path: /r%d, pool: query, filters: {token_bucket: {rate: 100}}}\n", i, i)
	}
	fields := []struct{ f, v string }{{"enabled", "true"}, {"timeout", "2s"}, {"fallback/status", "503"}, {"token_bucket/rate", "100000"}, {"token_bucket/burst", "1000"}}
	start := time.Now()
	batch := map[string]string{}
	for i := range keys {
		f := fields[i%len(fields)]
		batch[fmt.Sprintf("%sroutes/r%d/%s", prefix, i/len(fields), f.f)] = f.v
		if len(batch) == 64 || i == keys-1 { // Consul's limit of operations in one transaction
			c.Txn(t, batch)
			clear(batch)
		}
	}
	c.Put(t, prefix+"active_plan", "")
	t.Logf("%d keys written in %v", keys, time.Since(start).Round(time.Millisecond))
	// the floor: what one read of the prefix costs the agent, with and without gzip
	for _, gz := range []bool{false, true} {
		hc := &http.Client{Transport: &http.Transport{DisableCompression: !gz}}
		best := time.Hour
		size := 0
		for range 3 {
			begin := time.Now()
			resp, err := hc.Get("http://" + c.Addr + "/v1/kv/" + prefix + "?recurse=true")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			best, size = min(best, time.Since(begin)), len(b)
		}
		t.Logf("one read of the prefix by HTTP (gzip %v): %v (best of 3), %d bytes", gz, best.Round(time.Millisecond), size)
	}

	start = time.Now()
	gw := itest.StartGateway(t, cfg.String(), "-consul", c.Addr, "-consul-prefix", prefix, "-instance-id", "gw-scale", "-register=false")
	itest.WaitFor(t, "the first consul read applied", 120*time.Second, func() bool {
		_, body, _ := itest.Get(t, gw.AdminURL("/events"))
		return strings.Contains(body, fmt.Sprintf(`"%d keys`, keys+1))
	})
	t.Logf("gateway started and applied %d keys over %d routes in %v", keys, routes, time.Since(start).Round(time.Millisecond))

	if !itest.Measure(t, "switch p99", func(int) string {
		cpu0 := procCPU(t, gw)
		var lat, ctl []time.Duration
		var begins []time.Time
		for i := range toggles {
			val, want := "false", "route/disabled"
			if i%2 == 1 {
				val, want = "true", ""
			}
			begin := time.Now()
			c.Put(t, "fg-control/k", val)
			verdict(t, gw, "/r2")
			ctl = append(ctl, time.Since(begin))

			begin = time.Now()
			begins = append(begins, begin)
			c.Put(t, prefix+"routes/r1/enabled", val)
			for verdict(t, gw, "/r1") != want {
				if time.Since(begin) > itest.MinWait {
					t.Fatalf("toggle %d not enforced within %v", i, itest.MinWait)
				}
				time.Sleep(2 * time.Millisecond)
			}
			lat = append(lat, time.Since(begin))
		}
		cpu := procCPU(t, gw) - cpu0
		slowest(t, gw, begins, lat)
		slices.Sort(lat)
		slices.Sort(ctl)
		p := func(d []time.Duration, q float64) time.Duration {
			return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Millisecond)
		}
		p99 := p(lat, 0.99)
		t.Logf("%d keys, %d toggles (consul kv put -> verdict changed): p50 %v, p99 %v, max %v; gateway CPU %v a toggle; control (put + request) p99 %v",
			keys, toggles, p(lat, 0.5), p99, lat[len(lat)-1].Round(time.Millisecond), (cpu / time.Duration(toggles)).Round(time.Millisecond), p(ctl, 0.99))
		// The drill holds p99 to the target; make test's few toggles hold the median
		// (a p99 of 20 samples is their maximum: one GC or scheduling hiccup).
		what, got := "p99", p99
		if !drill {
			what, got = "p50", p(lat, 0.5)
		}
		if got <= 500*time.Millisecond {
			return ""
		}
		if p(ctl, 0.99) > 100*time.Millisecond {
			return fmt.Sprintf("%s %v, but the control's p99 is %v", what, got, p(ctl, 0.99))
		}
		t.Errorf("%s %v above the 500ms target with %d keys", what, got, keys)
		return ""
	}) {
		itest.Unmeasured(t, "switch p99 at scale")
	}
}

// slowest logs where the slowest toggle's time went: until Consul's answer was read
// (the agent: the put, waking the blocking query, writing the whole prefix) and from
// there until the update was applied (the gateway: decode, convert, compose, build), from
// the applied event's time and its note ("consul answered 15:04:05.000").
func slowest(t *testing.T, gw *itest.Gateway, begins []time.Time, lat []time.Duration) {
	i := 0
	for j := range lat {
		if lat[j] > lat[i] {
			i = j
		}
	}
	_, body, _ := itest.Get(t, gw.AdminURL("/events"))
	var events []struct {
		Time   time.Time `json:"time"`
		Result string    `json:"result"`
		Note   string    `json:"note"`
	}
	if err := json.Unmarshal([]byte(body), &events); err != nil {
		t.Logf("slowest toggle %v: /events: %v", lat[i].Round(time.Millisecond), err)
		return
	}
	// the toggle's event is the first whose read Consul answered after the put (the
	// previous toggle's event may be recorded after the put: the test sees a verdict as
	// soon as the new state is in force, a moment before the updater records the event)
	for _, e := range events {
		_, at, ok := strings.Cut(e.Note, "consul answered ")
		if e.Result != "applied" || !ok {
			continue
		}
		clock, err := time.Parse("15:04:05.000", at)
		if err != nil {
			break
		}
		y, m, d := e.Time.UTC().Date()
		answered := time.Date(y, m, d, clock.Hour(), clock.Minute(), clock.Second(), clock.Nanosecond(), time.UTC)
		if answered.Before(begins[i].Add(-time.Millisecond)) { // the note has milliseconds
			continue
		}
		t.Logf("slowest toggle %v: consul answered after %v, the gateway applied it %v later",
			lat[i].Round(time.Millisecond), answered.Sub(begins[i]).Round(time.Millisecond), e.Time.Sub(answered).Round(time.Millisecond))
		return
	}
	t.Logf("slowest toggle %v: its event not found", lat[i].Round(time.Millisecond))
}

// procCPU is the gateway process's CPU time (user + system) from /proc.
func procCPU(t *testing.T, gw *itest.Gateway) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", gw.Proc.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
