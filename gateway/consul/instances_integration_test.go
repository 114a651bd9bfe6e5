package consul_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

const globalConfig = `
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools:
  query: {addrs: ["{{QUERY}}"], max_conns: 64}
routes:
  lottery:
    path: /lottery
    pool: query
    core: true
    filters:
      token_bucket: {rate: %d, burst: 60, global: true}
`

func instancesLive(t testing.TB, g *itest.Gateway) int64 {
	t.Helper()
	_, body, _ := itest.Get(t, g.AdminURL("/consul"))
	var s struct {
		Instances int64 `json:"instances_live"`
	}
	json.Unmarshal([]byte(body), &s)
	return s.Instances
}

const globalBurst = 60 // in globalConfig

// drive drives the gateways with closed-loop clients for d and returns, per gateway, how
// many requests were admitted (200 without a verdict), how many shed (a verdict), and
// the times of its answers.
func drive(t *testing.T, gws []*itest.Gateway, d time.Duration) (admitted, shed []int64, answers [][]time.Time) {
	var mu sync.Mutex
	admitted, shed, answers = make([]int64, len(gws)), make([]int64, len(gws)), make([][]time.Time, len(gws))
	var urls []string
	index := map[string]int{}
	for i, g := range gws {
		urls = append(urls, g.URL("/lottery"))
		index[g.URL("/lottery")] = i
	}
	stop := make(chan struct{})
	time.AfterFunc(d, func() { close(stop) })
	itest.Load(3*len(gws), urls, stop, func(url string, resp *http.Response, err error) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		i := index[url]
		switch {
		case err != nil:
			return
		case resp.StatusCode == 200 && resp.Header.Get("X-Floodgate-Verdict") == "":
			admitted[i]++
		case resp.Header.Get("X-Floodgate-Verdict") != "":
			shed[i]++
		}
		answers[i] = append(answers[i], now)
	})()
	return admitted, shed, answers
}

// lostTokens estimates the tokens a bucket of rate r and burst b dropped because no
// request came for longer than it takes to fill (b/r): the clients, not the gateway,
// left them unused.
func lostTokens(answers []time.Time, from, to time.Time, r, b float64) float64 {
	lost, prev := 0.0, from
	for _, at := range append(answers, to) {
		if gap := at.Sub(prev).Seconds() - b/r; gap > 0 {
			lost += gap * r
		}
		prev = at
	}
	return lost
}

// checkSplit measures what gateways that share a global limit L admit together over a
// window. Too many is wrong however loaded the machine is; too few is wrong only if every
// gateway was offered more than it gives all along: it shed at least as many requests as
// it admitted, and no pause between requests let its bucket overflow (a loaded machine
// stalls the clients). Otherwise the clients, not the gateways, set the count, and the
// measurement is taken again (itest.Measure).
func checkSplit(t *testing.T, what string, gws []*itest.Gateway, L int) bool {
	const window = 4 * time.Second
	ideal := float64(L) * window.Seconds()
	n := float64(len(gws))
	return itest.Measure(t, what, func(int) string {
		drive(t, gws, time.Second) // spend the bursts
		from := time.Now()
		admitted, shed, answers := drive(t, gws, window)
		to := from.Add(window)
		got, lost := int64(0), 0.0
		for i, a := range admitted {
			got += a
			lost += lostTokens(answers[i], from, to, float64(L)/n, globalBurst/n)
		}
		t.Logf("%s: %d instances, global %d/s: admitted %d in %v (ideal %.0f, %+.1f%%); per instance admitted %v shed %v; tokens left unused by pauses of the clients: %.0f",
			what, len(gws), L, got, window, ideal, 100*(float64(got)-ideal)/ideal, admitted, shed, lost)
		// the burst, and one answer in flight per client when the window closed
		if most := 1.05*ideal + globalBurst + float64(3*len(gws)); float64(got) > most {
			t.Errorf("%s: admitted %d, above the global limit: want at most %.0f", what, got, most)
		}
		for i := range gws {
			if shed[i] < admitted[i] {
				return fmt.Sprintf("instance %d shed %d while admitting %d: the clients did not offer twice its share", i, shed[i], admitted[i])
			}
		}
		if lost > 0.02*ideal {
			return fmt.Sprintf("the clients paused long enough for the buckets to drop %.0f tokens", lost)
		}
		if float64(got) < 0.95*ideal-lost {
			// fewer than the limit: the gateways (their own processes) may not have had a CPU
			// when tokens were there; measured again, and without a way out by make drill-timing
			return fmt.Sprintf("%s: admitted %d, want %.0f +-5%%", what, got, ideal)
		}
		return ""
	})
}

// TestGlobalLimitSplitAcrossInstances: three gateways, one Consul, a global limit L.
// Together they admit L/s; when one is killed, the other two re-split and still admit
// about L/s together.
func TestGlobalLimitSplitAcrossInstances(t *testing.T) {
	itest.RequireIntegration(t)
	const L = 300
	c := itest.StartConsul(t)
	q, _ := itest.Backend(t, "query")
	cfg := strings.ReplaceAll(fmt.Sprintf(globalConfig, L), "{{QUERY}}", q)
	var gws []*itest.Gateway
	for i := 0; i < 3; i++ {
		gws = append(gws, itest.StartGateway(t, cfg, "-consul", c.Addr, "-consul-prefix", "fg-global/",
			"-snapshot", filepath.Join(t.TempDir(), "lkg.json"), "-instance-id", fmt.Sprintf("gw%d", i)))
	}
	for _, g := range gws {
		itest.WaitFor(t, "three live instances", 60*time.Second, func() bool { return instancesLive(t, g) == 3 })
	}
	three := checkSplit(t, "three instances", gws, L)

	gws[2].Proc.Kill()
	rest := gws[:2]
	took := itest.WaitFor(t, "the survivors to re-split", 60*time.Second, func() bool {
		return instancesLive(t, rest[0]) == 2 && instancesLive(t, rest[1]) == 2
	})
	t.Logf("one instance killed: the others re-split after %v", took.Round(time.Millisecond))
	if two := checkSplit(t, "after the kill", rest, L); !three || !two {
		itest.Unmeasured(t, "the global limit split across instances")
	}
}
