package consul

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/gateway/config"

	_ "github.com/floodgate/floodgate/filters/all"
)

// scaleDoc is a file of routes routes, and scaleKVs n keys spread over them (five
// fields a route: enabled, timeout, fallback status, a token bucket's rate and burst).
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
		kvs = append(kvs, KV{Key: fmt.Sprintf("floodgate/routes/r%d/%s", i/len(fields), f.f), Value: []byte(f.v)})
	}
	return append(kvs, KV{Key: "floodgate/active_plan"})
}

// update is what a gateway does with one read: convert the keys and compose them with
// the file (the updater then diffs and builds; config.Load is the part that grows with
// the keys).
func update(t testing.TB, doc *config.Document, kvs []KV) {
	s, err := Convert(DefaultPrefix, kvs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(doc, s.Overrides, s.Plan()); err != nil {
		t.Fatal(err)
	}
}

// cpuTime is the process's user+system CPU time: on a shared machine it measures the
// work done where wall time measures the queue for the CPUs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestUpdateCostIsLinear: composing 4x the keys (12.5k -> 50k) costs at most 8x the CPU
// time (linear, with slack for GC; the quadratic cost it replaces grew about 16x: every
// key scanned the whole routes mapping). Ratios within one run.
func TestUpdateCostIsLinear(t *testing.T) {
	if os.Getenv("FLOODGATE_SCALE") == "" {
		t.Skip("about 20 s of CPU: make drill-consul-scale (FLOODGATE_SCALE=1)")
	}
	cost := func(n int) time.Duration {
		doc := scaleDoc(t, n/5+1)
		kvs := scaleKVs(n)
		best := time.Duration(1 << 62)
		for range 2 {
			start := cpuTime()
			update(t, doc, kvs)
			best = min(best, cpuTime()-start)
		}
		return best
	}
	small, large := cost(12500), cost(50000)
	t.Logf("12.5k keys: %v, 50k keys: %v CPU (x%.1f)", small, large, float64(large)/float64(small))
	if float64(large) > 8*float64(small) {
		t.Errorf("4x the keys cost %.1fx the time: not linear", float64(large)/float64(small))
	}
}

func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{10000, 25000, 50000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			doc := scaleDoc(b, n/5+1)
			kvs := scaleKVs(n)
			b.ResetTimer()
			start := cpuTime()
			for range b.N {
				update(b, doc, kvs)
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}
