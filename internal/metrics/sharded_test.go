package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A sharded counter counts exactly however its adds are spread over shards and cores,
// is exported like a counter vector, and Forget deletes its series.
func TestShardedCounterVec(t *testing.T) {
	v := NewShardedCounterVec("test_sharded_total", "A test counter.", "route", "result")
	// the registry is the process's: let the name go, so that -count=N declares it again
	t.Cleanup(func() { untrackForTest(v); Registry.Unregister(v) })
	a := v.WithLabelValues("r1", "member")
	if v.WithLabelValues("r1", "member") != a {
		t.Fatal("the same label values gave two series")
	}
	b := v.WithLabelValues("r2", "member")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); i < 1000; i++ {
				a.Inc(i * uint64(g+1)) // every shard, from several goroutines at once
			}
		}()
	}
	wg.Wait()
	b.Inc(7)
	if a.Value() != 4000 || b.Value() != 1 {
		t.Fatalf("values %d, %d; want 4000, 1", a.Value(), b.Value())
	}
	if got, want := gather(t), "counter help=A test counter.; result=member route=r1 4000; result=member route=r2 1; "; got != want {
		t.Fatalf("exported:\n%s\nwant:\n%s", got, want)
	}
	if n := Forget(prometheus.Labels{"route": "r1"}); n < 1 {
		t.Fatalf("Forget deleted %d series, want the sharded one", n)
	}
	if got, want := gather(t), "counter help=A test counter.; result=member route=r2 1; "; got != want {
		t.Fatalf("exported after Forget:\n%s\nwant:\n%s", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { b.Inc(3) }); allocs != 0 {
		t.Fatalf("Inc allocates %v times", allocs)
	}
}

// gather renders floodgate_test_sharded_total as the registry exports it.
func gather(t *testing.T) string {
	t.Helper()
	mfs, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_test_sharded_total" {
			continue
		}
		fmt.Fprintf(&b, "%s help=%s; ", strings.ToLower(mf.GetType().String()), mf.GetHelp())
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&b, "%s=%s ", l.GetName(), l.GetValue())
			}
			fmt.Fprintf(&b, "%v; ", m.GetCounter().GetValue())
		}
	}
	return b.String()
}
