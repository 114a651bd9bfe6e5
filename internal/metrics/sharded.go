package metrics

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ShardedCounterVec is a counter vector for the request path's hottest counts. A
// prometheus counter is one atomic word: when two cores count at once, its cache line
// moves between them on every add, which costs more than the decision being counted
// (~100 ns against ~5 on the 2-core VM this was measured on). A ShardedCounter spreads
// each series over shards of a cache line each; the caller picks the shard with a value
// that differs between requests (a user number, a key hash), so that cores rarely write
// the same line. It is collected (and Forget deletes its series) like a CounterVec.
type ShardedCounterVec struct {
	desc   *prometheus.Desc
	labels []string

	mu sync.Mutex
	m  map[string]*ShardedCounter // by label values joined with \xff
}

// counterShards is the number of shards of a ShardedCounter (a power of two).
const counterShards = 16

// ShardedCounter is one series of a ShardedCounterVec.
type ShardedCounter struct {
	desc   *prometheus.Desc
	values []string
	shards [counterShards]struct {
		n atomic.Uint64
		_ [56]byte // one cache line per shard
	}
}

// NewShardedCounterVec declares and registers a sharded counter vector named
// floodgate_<name>.
func NewShardedCounterVec(name, help string, labels ...string) *ShardedCounterVec {
	v := &ShardedCounterVec{
		desc:   prometheus.NewDesc(prometheus.BuildFQName("floodgate", "", name), help, labels, nil),
		labels: labels,
		m:      map[string]*ShardedCounter{},
	}
	Registry.MustRegister(v)
	track(v, labels)
	return v
}

// WithLabelValues returns the series of these label values, creating it at zero. Call it
// when a configuration is built, not per request.
func (v *ShardedCounterVec) WithLabelValues(values ...string) *ShardedCounter {
	if len(values) != len(v.labels) {
		panic("metrics: " + v.desc.String() + ": wrong number of label values")
	}
	k := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.m[k]
	if c == nil {
		c = &ShardedCounter{desc: v.desc, values: append([]string(nil), values...)}
		v.m[k] = c
	}
	return c
}

// Describe implements prometheus.Collector.
func (v *ShardedCounterVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *ShardedCounterVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range v.m {
		ch <- c
	}
}

// DeletePartialMatch deletes the series whose labels include match and returns how many
// it deleted (see Forget).
func (v *ShardedCounterVec) DeletePartialMatch(match prometheus.Labels) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for k, c := range v.m {
		all := true
		for name, want := range match {
			i := indexOf(v.labels, name)
			if i < 0 || c.values[i] != want {
				all = false
				break
			}
		}
		if all {
			delete(v.m, k)
			n++
		}
	}
	return n
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

// Inc adds 1 to the shard that h picks (any value that differs between requests). It
// does not allocate.
func (c *ShardedCounter) Inc(h uint64) { c.shards[h%counterShards].n.Add(1) }

// Value is the sum of the shards.
func (c *ShardedCounter) Value() uint64 {
	var sum uint64
	for i := range c.shards {
		sum += c.shards[i].n.Load()
	}
	return sum
}

// Desc implements prometheus.Metric.
func (c *ShardedCounter) Desc() *prometheus.Desc { return c.desc }

// Write implements prometheus.Metric: the series as a counter.
func (c *ShardedCounter) Write(m *dto.Metric) error {
	pm, err := prometheus.NewConstMetric(c.desc, prometheus.CounterValue, float64(c.Value()), c.values...)
	if err != nil {
		return err
	}
	return pm.Write(m)
}
