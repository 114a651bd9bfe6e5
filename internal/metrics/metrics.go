// Package metrics holds the process-wide Prometheus registry that every package registers
// its collectors with, and small helpers to declare them once at init time.
//
// On the request path only pre-resolved collectors are used (a Counter obtained from
// WithLabelValues when a configuration is built, never per request), so counting is an
// atomic add and allocates nothing.
package metrics

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/floodgate/floodgate/internal/version"
)

// Registry is the registry served at the admin listener's /metrics.
var Registry = prometheus.NewRegistry()

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := NewGaugeVec("build_info", "Always 1: the version and Go version this binary was built with.", "version", "goversion")
	bi.WithLabelValues(version.String(), version.Go()).Set(1)
}

// NewCounterVec declares and registers a counter vector named floodgate_<name>.
func NewCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "floodgate", Name: name, Help: help}, labels)
	Registry.MustRegister(v)
	named("floodgate_"+name, v)
	track(v.MetricVec, labels)
	return v
}

// NewGaugeVec declares and registers a gauge vector named floodgate_<name>.
func NewGaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "floodgate", Name: name, Help: help}, labels)
	Registry.MustRegister(v)
	named("floodgate_"+name, v)
	track(v.MetricVec, labels)
	return v
}

// NewGauge declares and registers a gauge named floodgate_<name>.
func NewGauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "floodgate", Name: name, Help: help})
	Registry.MustRegister(g)
	return g
}

// NewHistogramVec declares and registers a histogram vector named floodgate_<name>.
func NewHistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "floodgate", Name: name, Help: help, Buckets: buckets}, labels)
	Registry.MustRegister(v)
	named("floodgate_"+name, v)
	track(v.MetricVec, labels)
	return v
}

// LatencyBuckets are seconds from 100µs to 10s, dense where a gateway's answers live.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// vecs are the vectors declared here, with their label names, for Forget; byName the
// vectors registered with Registry by their full name, for Read.
var (
	vecsMu sync.Mutex
	vecs   []trackedVec
	byName = map[string]prometheus.Collector{}
)

func named(full string, c prometheus.Collector) {
	vecsMu.Lock()
	byName[full] = c
	vecsMu.Unlock()
}

// Read calls fn with every series of the vector declared here (NewCounterVec,
// NewGaugeVec, NewHistogramVec) under the full name (floodgate_<name>), as Gather would
// give it but in no particular order, without gathering the whole registry: with 10,000
// routes one Gather (every family of hundreds of thousands of series, sorted and checked)
// cost about 0.7 s of CPU, and the console's once-a-second sampler needs four families.
// An unknown name reads nothing. The first error a series gives is returned after the
// others were read.
func Read(name string, fn func(*dto.Metric)) error {
	vecsMu.Lock()
	c := byName[name]
	vecsMu.Unlock()
	if c == nil {
		return nil
	}
	ch := make(chan prometheus.Metric, 256)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var err error
	for m := range ch {
		d := &dto.Metric{}
		if e := m.Write(d); e != nil {
			if err == nil {
				err = e
			}
			continue
		}
		fn(d)
	}
	return err
}

type trackedVec struct {
	v      interface{ DeletePartialMatch(prometheus.Labels) int }
	labels []string
}

func track(v interface{ DeletePartialMatch(prometheus.Labels) int }, labels []string) {
	vecsMu.Lock()
	vecs = append(vecs, trackedVec{v, labels})
	vecsMu.Unlock()
}

// Forget deletes, from every vector declared with this package that has all of match's
// label names, the series whose labels match: a route or pool removed by a reload stops
// being exported instead of showing its last values forever. It returns how many series
// were deleted. Call it after the new configuration is in force (never on the request
// path); a series that is still in use would be re-created at zero by its next WithLabelValues,
// not by a pre-resolved counter, so only forget names the configuration no longer has.
func Forget(match prometheus.Labels) int {
	vecsMu.Lock()
	defer vecsMu.Unlock()
	n := 0
	for _, tv := range vecs {
		all := true
		for k := range match {
			if !slices.Contains(tv.labels, k) {
				all = false
				break
			}
		}
		if all {
			n += tv.v.DeletePartialMatch(match)
		}
	}
	return n
}

// Group declares the metrics of an optional feature (e.g. Consul): they are registered
// only when Enable is called, so that a process without the feature exports none of them
// (and alerts on them cannot fire where the feature is not configured).
type Group struct {
	once sync.Once
	cs   []prometheus.Collector
}

// Enable registers the group's metrics (once; later calls do nothing).
func (g *Group) Enable() {
	g.once.Do(func() { Registry.MustRegister(g.cs...) })
}

// NewCounterVec declares a counter vector named floodgate_<name> in the group.
func (g *Group) NewCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "floodgate", Name: name, Help: help}, labels)
	g.cs = append(g.cs, v)
	track(v.MetricVec, labels)
	return v
}

// NewGauge declares a gauge named floodgate_<name> in the group.
func (g *Group) NewGauge(name, help string) prometheus.Gauge {
	v := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "floodgate", Name: name, Help: help})
	g.cs = append(g.cs, v)
	return v
}
