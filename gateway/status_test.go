package gateway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/floodgate/floodgate/internal/metrics"
)

// series lists the label sets of every series of the process registry (and of extra)
// that carry label = value.
func series(t *testing.T, label, value string, extra ...prometheus.Collector) []string {
	t.Helper()
	g := prometheus.Gatherers{metrics.Registry}
	if len(extra) > 0 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(extra...)
		g = append(g, reg)
	}
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == label && l.GetValue() == value {
					out = append(out, f.GetName())
				}
			}
		}
	}
	return out
}

const forgetConfig = `
server: {listen: 127.0.0.1:0}
pools:
  fq: {addrs: [fq1:1, fq2:1], max_conns: 8}
routes:
  fg_keep: {path: /keep, pool: fq}
  fg_gone: {path: /gone, pool: fq, filters: {token_bucket: {rate: 1, burst: 1}}}
`

const forgetConfig2 = `
server: {listen: 127.0.0.1:0}
pools:
  fq: {addrs: [fq1:1], max_conns: 8}
routes:
  fg_keep: {path: /keep, pool: fq}
`

// TestReloadForgetsRemovedSeries: a reload that removes a route and a pool server
// deletes their series (the gateway's and the filters'); what stays keeps its series.
func TestReloadForgetsRemovedSeries(t *testing.T) {
	r := newRig(t, forgetConfig)
	r.upstream("fq1:1", echoUpstream)
	r.upstream("fq2:1", echoUpstream)
	for i := 0; i < 4; i++ {
		r.do("GET", "/keep", nil)
		r.do("GET", "/gone", nil)
	}
	col := r.gw.Collector()
	if s := series(t, "route", "fg_gone", col); len(s) < 3 {
		t.Fatalf("route fg_gone has series %v before the reload, want requests, durations and its filter's limit", s)
	}
	if s := series(t, "addr", "fq2:1", col); len(s) == 0 {
		t.Fatalf("server fq2:1 has no series before the reload")
	}
	if err := r.apply(forgetConfig2); err != nil {
		t.Fatal(err)
	}
	if s := series(t, "route", "fg_gone", col); len(s) != 0 {
		t.Errorf("route fg_gone removed by the reload still has series %v", s)
	}
	if s := series(t, "addr", "fq2:1", col); len(s) != 0 {
		t.Errorf("server fq2:1 removed by the reload still has series %v", s)
	}
	if s := series(t, "route", "fg_keep", col); len(s) == 0 {
		t.Errorf("route fg_keep lost its series in the reload")
	}
}

// TestEjectionLoggedAndHealthFollowsTheClock: with health checks off, an ejection is a
// WARN line (written by the sweep, off the request path) with pool, address, cause and
// duration; floodgate_upstream_healthy is 0 while it lasts and 1 again
// when it expires though no request came; the sweep logs the return.
func TestEjectionLoggedAndHealthFollowsTheClock(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	r := newRigOpts(t, Options{Logger: zap.New(core)}, `
server: {listen: 127.0.0.1:0}
pools: {ej: {addrs: [ej-dead:1], max_conns: 4, eject: {failures: 2, duration: 300ms}, health_check: {enabled: false}}}
routes: {ej_route: {path: /ej, pool: ej}}
`)
	for i := 0; i < 2; i++ {
		if resp := r.do("GET", "/ej", nil); resp.StatusCode() != fasthttp.StatusServiceUnavailable {
			t.Fatalf("request to a refused server: %d", resp.StatusCode())
		}
	}
	if n := len(logs.FilterMessage("upstream server ejected").All()); n != 0 {
		t.Fatalf("%d ejection lines logged on the request path; the sweep logs them", n)
	}
	r.gw.Sweep()
	r.gw.Sweep() // a second sweep logs nothing new
	warn := logs.FilterMessage("upstream server ejected").All()
	if len(warn) != 1 || warn[0].Level != zapcore.WarnLevel {
		t.Fatalf("ejection log lines: %v, want one WARN", warn)
	}
	f := warn[0].ContextMap()
	if f["pool"] != "ej" || f["addr"] != "ej-dead:1" || f["cause"] != "unavailable" || f["for"] != 300*time.Millisecond {
		t.Errorf("ejection line fields %v, want pool, addr, cause unavailable, for 300ms", f)
	}
	healthy := func() float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(r.gw.Collector())
		fams, _ := reg.Gather()
		for _, fam := range fams {
			if fam.GetName() == "floodgate_upstream_healthy" {
				return fam.Metric[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no floodgate_upstream_healthy")
		return -1
	}
	if h := healthy(); h != 0 {
		t.Fatalf("healthy = %v during the ejection, want 0", h)
	}
	deadline := time.Now().Add(30 * time.Second)
	for healthy() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("floodgate_upstream_healthy did not return to 1 after the ejection expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.gw.Sweep()
	if back := logs.FilterMessage("upstream server back in rotation").All(); len(back) != 1 || back[0].ContextMap()["addr"] != "ej-dead:1" {
		t.Errorf("return log lines %v, want one for ej-dead:1", back)
	}
}
