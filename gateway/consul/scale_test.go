package consul

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/cputime"

	_ "github.com/floodgate/floodgate/filters/all"
)

// scaleDoc is a file of routes routes, and scaleKVs n keys spread over them (five
// fields a route: enabled, timeout, fallback status, a token bucket's rate and burst), in
// key order as Consul lists them.
func scaleDoc(t testing.TB, routes int) *config.Document {
	var b strings.Builder
	b.WriteString("pools:\n  q: {addrs: [127.0.0.1:8081]}\nroutes:\n")
	for i := range routes {
		fmt.Fprintf(&b, "  r%d: {path: /r%d, pool: q, filters: {token_bucket: {rate: 100}}}\n", i, i)
	}
	doc, err := config.Parse("scale.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func scaleKVs(n int) []KV {
	fields := []struct{ f, v string }{{"enabled", "true"}, {"timeout", "2s"}, {"fallback/status", "503"}, {"token_bucket/rate", "200"}, {"token_bucket/burst", "20"}}
	kvs := make([]KV, 0, n+1)
	for i := 0; i < n; i++ {
		f := fields[i%len(fields)]
		kvs = append(kvs, KV{Key: fmt.Sprintf("floodgate/routes/r%d/%s", i/len(fields), f.f), Value: []byte(f.v), ModifyIndex: uint64(i + 1)})
	}
	kvs = append(kvs, KV{Key: "floodgate/active_plan", ModifyIndex: uint64(n + 1)})
	slices.SortFunc(kvs, func(a, b KV) int { return strings.Compare(a.Key, b.Key) }) // as Consul lists them
	return kvs
}

// update is what a gateway without a Loader did with one read: convert the keys and
// compose all of them with the file.
func update(t testing.TB, doc *config.Document, kvs []KV) {
	s, err := Convert(DefaultPrefix, kvs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(doc, s.Overrides, s.Plan()); err != nil {
		t.Fatal(err)
	}
}

// toggler is a gateway (no listener) serving the file and n keys through an Updater; a
// toggle flips routes/r1/enabled and does what the watcher does with the read: convert
// (the keys that changed), compose, build, swap.
type toggler struct {
	t    testing.TB
	conv Converter
	kvs  []KV
	u    *gateway.Updater
	gw   *gateway.Gateway
	n    int
}

func newToggler(t testing.TB, n int) *toggler {
	tg := &toggler{t: t, kvs: scaleKVs(n), gw: gateway.New(gateway.Options{})}
	tg.u = gateway.NewUpdater(tg.gw, nil)
	if _, err := tg.u.Apply(gateway.Update{Source: "file", Doc: scaleDoc(t, n/5+1)}); err != nil {
		t.Fatal(err)
	}
	tg.toggle()
	return tg
}

func (tg *toggler) toggle() {
	tg.n++
	k := slices.IndexFunc(tg.kvs, func(kv KV) bool { return kv.Key == "floodgate/routes/r1/enabled" })
	tg.kvs[k].Value = []byte(strconv.FormatBool(tg.n%2 == 1))
	tg.kvs[k].ModifyIndex = uint64(tg.n)
	s, err := tg.conv.Convert(DefaultPrefix, tg.kvs)
	if err != nil {
		tg.t.Fatal(err)
	}
	ov := s.Overrides
	if _, err := tg.u.Apply(gateway.Update{Source: "consul", Overrides: &ov, Plan: &gateway.Plan{}}); err != nil {
		tg.t.Fatal(err)
	}
	if tg.gw.Config().Routes["r1"].Enabled != (tg.n%2 == 1) {
		tg.t.Fatalf("toggle %d not in force", tg.n)
	}
}

// TestUpdateCostIsLinear: 4x the keys (12.5k -> 50k) costs at most 8x the CPU time
// (linear, with slack for GC; the quadratic cost it replaced grew about 16x), both for
// composing every key (config.Load, what ctl and a new file do) and for a kill switch
// through the updater (convert, compose the changed route, rebuild it, swap). Ratios
// within one run.
func TestUpdateCostIsLinear(t *testing.T) {
	if os.Getenv("FLOODGATE_SCALE") == "" {
		t.Skip("about a minute of CPU: make drill-consul-scale (FLOODGATE_SCALE=1)")
	}
	// the best of 3 batches of 10 (each batch's garbage collection included), after a
	// collection of the setup's garbage
	best := func(f func()) time.Duration {
		runtime.GC()
		b := time.Duration(1 << 62)
		for range 3 {
			start := cputime.Process()
			for range 10 {
				f()
			}
			b = min(b, (cputime.Process()-start)/10)
		}
		return b
	}
	compose := func(n int) time.Duration {
		doc, kvs := scaleDoc(t, n/5+1), scaleKVs(n)
		return best(func() { update(t, doc, kvs) })
	}
	toggle := func(n int) time.Duration {
		tg := newToggler(t, n)
		return best(tg.toggle)
	}
	for _, c := range []struct {
		what string
		cost func(int) time.Duration
	}{{"compose every key", compose}, {"kill switch", toggle}} {
		small, large := c.cost(12500), c.cost(50000)
		t.Logf("%s: 12.5k keys %v, 50k keys %v CPU (x%.1f)", c.what, small.Round(time.Millisecond), large.Round(time.Millisecond), float64(large)/float64(small))
		if float64(large) > 8*float64(small) {
			t.Errorf("%s: 4x the keys cost %.1fx the time: not linear", c.what, float64(large)/float64(small))
		}
	}
}

// BenchmarkUpdate: a kill switch through the updater (toggle) and the composition of
// every key (compose) at 10k, 25k and 50k keys, in CPU ms per update.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{10000, 25000, 50000} {
		b.Run(fmt.Sprintf("toggle/%d", n), func(b *testing.B) {
			tg := newToggler(b, n)
			b.ResetTimer()
			start := cputime.Process()
			for range b.N {
				tg.toggle()
			}
			b.ReportMetric(float64(cputime.Process()-start)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
	for _, n := range []int{10000, 25000, 50000} {
		b.Run(fmt.Sprintf("compose/%d", n), func(b *testing.B) {
			doc := scaleDoc(b, n/5+1)
			kvs := scaleKVs(n)
			b.ResetTimer()
			start := cputime.Process()
			for range b.N {
				update(b, doc, kvs)
			}
			b.ReportMetric(float64(cputime.Process()-start)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}
