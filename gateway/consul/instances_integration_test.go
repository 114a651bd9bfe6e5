package consul_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
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
      token_bucket: {rate: %d, burst: 5, global: true}
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

// admitted drives the gateways with closed-loop clients (far above the limit) for d and
// returns how many requests were admitted (200 without a verdict).
func admitted(t *testing.T, gws []*itest.Gateway, d time.Duration) int64 {
	var n atomic.Int64
	var urls []string
	for _, g := range gws {
		urls = append(urls, g.URL("/lottery"))
	}
	stop := make(chan struct{})
	time.AfterFunc(d, func() { close(stop) })
	itest.Load(3*len(gws), urls, stop, func(_ string, resp *http.Response, err error) {
		if err == nil && resp.StatusCode == 200 && resp.Header.Get("X-Floodgate-Verdict") == "" {
			n.Add(1)
		}
	})()
	return n.Load()
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
		itest.WaitFor(t, "three live instances", 10*time.Second, func() bool { return instancesLive(t, g) == 3 })
	}

	admitted(t, gws, time.Second) // spend the initial bursts
	const window = 4 * time.Second
	got := admitted(t, gws, window)
	ideal := float64(L) * window.Seconds()
	t.Logf("3 instances, global %d/s: admitted %d in %v (ideal %.0f, %+.1f%%)", L, got, window, ideal, 100*(float64(got)-ideal)/ideal)
	if math.Abs(float64(got)-ideal) > 0.05*ideal+15 { // +15: the three bursts of 5
		t.Errorf("admitted %d, want %.0f +-5%%", got, ideal)
	}

	gws[2].Proc.Kill()
	rest := gws[:2]
	took := itest.WaitFor(t, "the survivors to re-split", 15*time.Second, func() bool {
		return instancesLive(t, rest[0]) == 2 && instancesLive(t, rest[1]) == 2
	})
	t.Logf("one instance killed: the others re-split after %v", took.Round(time.Millisecond))
	admitted(t, rest, time.Second)
	got = admitted(t, rest, window)
	t.Logf("2 instances, global %d/s: admitted %d in %v (ideal %.0f, %+.1f%%)", L, got, window, ideal, 100*(float64(got)-ideal)/ideal)
	if math.Abs(float64(got)-ideal) > 0.05*ideal+10 {
		t.Errorf("after the kill: admitted %d, want %.0f +-5%%", got, ideal)
	}
}
