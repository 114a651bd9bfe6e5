package metrics

import (
	"slices"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

var readVecs = sync.OnceValues(func() (*struct{}, error) {
	c := NewCounterVec("readtest_total", "Read's test.", "route", "verdict")
	g := NewGaugeVec("readtest_level", "Read's test.", "pool")
	h := NewHistogramVec("readtest_seconds", "Read's test.", LatencyBuckets, "route", "outcome")
	c.WithLabelValues("a", "admitted").Add(3)
	c.WithLabelValues("b", "route/disabled").Inc()
	c.WithLabelValues("c", "admitted")
	g.WithLabelValues("q").Set(0.5)
	h.WithLabelValues("a", "admitted").Observe(0.003)
	h.WithLabelValues("a", "shed").Observe(2)
	return nil, nil
})

// TestReadMatchesGather: Read gives a family's series exactly as the registry's Gather
// does (labels, values, histogram buckets), and nothing for a name it does not know.
func TestReadMatchesGather(t *testing.T) {
	readVecs()
	fams, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"floodgate_readtest_total", "floodgate_readtest_level", "floodgate_readtest_seconds"} {
		var want []string
		for _, f := range fams {
			if f.GetName() == name {
				for _, m := range f.Metric {
					want = append(want, m.String())
				}
			}
		}
		var got []string
		if err := Read(name, func(m *dto.Metric) { got = append(got, m.String()) }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s: Read gives\n%q\nGather gives\n%q", name, got, want)
		}
	}
	n := 0
	Read("floodgate_no_such_family", func(*dto.Metric) { n++ })
	if n != 0 {
		t.Errorf("an unknown name read %d series", n)
	}
}
