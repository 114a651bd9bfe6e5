package loadgen

import (
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram precision: totals keep 3 significant digits (exact to the microsecond up to
// 2 ms, 0.1% above), per-second windows 2 (1%), which is plenty for a chart.
const (
	totalSigFigs    = 3
	intervalSigFigs = 2
	// maxVerdictsPerRoute bounds the distinct verdict headers kept per route; more are
	// counted under overflowVerdict.
	maxVerdictsPerRoute = 32
	overflowVerdict     = "other/too_many_verdicts"
)

// shard holds the statistics of a group of workers behind one mutex, so that workers
// rarely contend and the per-second collector takes each lock briefly.
type shard struct {
	mu      sync.Mutex
	highest int64 // µs, the histograms' highest trackable value
	routes  []shardRoute
	lag     *hdrhistogram.Histogram // generator lag (intended -> actual start), µs
	late    int64                   // cumulative
	ivLate  int64                   // since the last collection
	done    int64                   // completions, cumulative
}

type shardRoute struct {
	// bytes on the client->gateway link of the answered requests (headers included):
	// what the planner's bandwidth rows need (plan -drill)
	sized, reqBytes, respBytes int64

	cells   map[string]*cell
	nShed   int
	ivCount [NumClasses]int64
	ivHist  [NumClasses]*hdrhistogram.Histogram
}

// cell is one (route, verdict) pair.
type cell struct {
	verdict  string
	class    Class
	count    int64
	statuses map[int]int64
	hist     *hdrhistogram.Histogram
}

func newShard(routes int, highest int64) *shard {
	s := &shard{highest: highest, routes: make([]shardRoute, routes)}
	for i := range s.routes {
		s.routes[i].cells = make(map[string]*cell, 4)
	}
	s.lag = hdrhistogram.New(1, highest, totalSigFigs)
	return s
}

func (s *shard) clamp(us int64) int64 {
	if us < 1 {
		return 1
	}
	if us > s.highest {
		return s.highest
	}
	return us
}

// record adds one answer. lagUS and latUS are microseconds; verdictHdr is the response's
// verdict header (may be empty), read before the response is reused.
func (s *shard) record(route int, lagUS, latUS int64, late bool, status int, verdictHdr []byte, err error, reqBytes, respBytes int) {
	static, class := classifyStatic(status, err, verdictHdr)
	s.mu.Lock()
	rs := &s.routes[route]
	if err == nil {
		rs.sized++
		rs.reqBytes += int64(reqBytes)
		rs.respBytes += int64(respBytes)
	}
	var c *cell
	if class == ClassShed {
		c = rs.cells[string(verdictHdr)] // no allocation for the lookup
		if c == nil {
			v := cleanVerdict(verdictHdr)
			if c = rs.cells[v]; c == nil {
				if rs.nShed >= maxVerdictsPerRoute {
					v = overflowVerdict
					c = rs.cells[v]
				}
				if c == nil {
					c = s.newCell(rs, v, class)
					rs.nShed++
				}
			}
		}
	} else {
		c = rs.cells[static]
		if c == nil {
			c = s.newCell(rs, static, class)
		}
	}
	c.count++
	c.statuses[status]++
	lat := s.clamp(latUS)
	_ = c.hist.RecordValue(lat)
	rs.ivCount[class]++
	h := rs.ivHist[class]
	if h == nil {
		h = hdrhistogram.New(1, s.highest, intervalSigFigs)
		rs.ivHist[class] = h
	}
	_ = h.RecordValue(lat)
	_ = s.lag.RecordValue(s.clamp(lagUS))
	if late {
		s.late++
		s.ivLate++
	}
	s.done++
	s.mu.Unlock()
}

func (s *shard) newCell(rs *shardRoute, verdict string, class Class) *cell {
	c := &cell{verdict: verdict, class: class, statuses: make(map[int]int64, 2),
		hist: hdrhistogram.New(1, s.highest, totalSigFigs)}
	rs.cells[verdict] = c
	return c
}
