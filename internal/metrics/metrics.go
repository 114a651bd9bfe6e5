// Package metrics holds the process-wide Prometheus registry that every package registers
// its collectors with, and small helpers to declare them once at init time.
//
// On the request path only pre-resolved collectors are used (a Counter obtained from
// WithLabelValues when a configuration is built, never per request), so counting is an
// atomic add and allocates nothing.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry is the registry served at the admin listener's /metrics.
var Registry = prometheus.NewRegistry()

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// NewCounterVec declares and registers a counter vector named floodgate_<name>.
func NewCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "floodgate", Name: name, Help: help}, labels)
	Registry.MustRegister(v)
	return v
}

// NewGaugeVec declares and registers a gauge vector named floodgate_<name>.
func NewGaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "floodgate", Name: name, Help: help}, labels)
	Registry.MustRegister(v)
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
	return v
}

// LatencyBuckets are seconds from 100µs to 10s, dense where a gateway's answers live.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
