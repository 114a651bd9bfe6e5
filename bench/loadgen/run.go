// Package loadgen is the open-loop load generator behind `floodgate bench`.
//
// A pacer walks the profile's Schedule and hands each intended send (its offset from the
// start and its route) to a fixed pool of worker goroutines; each worker owns one
// fasthttp request/response pair and uses a shared HostClient whose connection budget is
// the pool size. The pacer never waits for answers, so the offered rate does not drop
// when the server slows down, and every latency is measured from the intended send time,
// so time spent waiting for a free worker counts (no coordinated omission). When the
// generator itself falls behind (no free worker at the intended time, or a send starting
// later than Options.LateThreshold) it counts it, and Result.Warnings says so.
//
//	res, err := loadgen.Run(ctx, prof, loadgen.Options{Target: "127.0.0.1:8080"})
//	n := res.Count("lottery", "token_bucket/limited")
//	p99 := res.Route("lottery").Latency(loadgen.ClassAdmitted).ValueAtQuantile(99)
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/bench/profile"
)

// Defaults for Options fields left zero.
const (
	DefaultTarget        = "127.0.0.1:8080"
	DefaultConns         = 256
	DefaultTimeout       = 2 * time.Second
	DefaultLateThreshold = 5 * time.Millisecond
	// LateWarnFraction is the share of late sends above which a result is reported as
	// limited by the generator.
	LateWarnFraction = 0.01
	// MaxConns bounds the connection budget (and the worker pool).
	MaxConns = 50_000
)

// Options tune a run; the zero value means defaults.
type Options struct {
	// Target is host:port or http(s)://host:port; it overrides the profile's target.
	// Empty: the profile's, else DefaultTarget.
	Target string
	// Rate, if positive, replaces the profile's plan rate (what "1x" means).
	Rate float64
	// Conns is the connection budget of the HostClient (default DefaultConns).
	Conns int
	// Workers is the size of the worker pool (default Conns). More workers than
	// connections makes workers wait for a connection (counted in the latency).
	Workers int
	// Timeout bounds each request (default: the profile's, else DefaultTimeout).
	Timeout time.Duration
	// LateThreshold: a send that starts later than this after its intended time is late.
	LateThreshold time.Duration
	// MaxRequests caps the number of sends (0: the schedule's count).
	MaxRequests int64
	// MaxTime is a hard stop for the whole run, including sends still overdue after the
	// schedule ends (0: the schedule's length + 2 x Timeout + 5 s).
	MaxTime time.Duration
	// Seed seeds the user and tag draws (0: from the clock).
	Seed int64
	// Progress, if set, is called about once a second from a separate goroutine, and once
	// more when the run is over.
	Progress func(Progress)
	// MaxResponseBody caps a response body (default 4 MiB); larger answers are
	// client/body_too_large.
	MaxResponseBody int
}

// Progress is the state of a run, reported once a second.
type Progress struct {
	Elapsed time.Duration
	Planned int64 // sends the schedule will make
	Sent    int64 // dispatched so far
	Rate    float64
	// Done counts completed answers by class, cumulative.
	Done [NumClasses]int64
	// Shed counts shed answers by verdict, cumulative, highest first.
	Shed []VerdictCount
	// Failed counts error, client and other answers by verdict, cumulative, highest first.
	Failed []VerdictCount
	// P99Admitted and P99Shed are over the last second's answers.
	P99Admitted, P99Shed time.Duration
	// LateFraction is the share of sends so far that started late.
	LateFraction float64
	// Final is set on the last report, made when the run is over (Rate and the P99s then
	// cover only the last partial second).
	Final bool
}

// VerdictCount is a verdict and how many answers had it.
type VerdictCount struct {
	Verdict string `json:"verdict"`
	Count   int64  `json:"count"`
}

// Run performs one drill and returns its result. It stops when the schedule is over (or
// MaxRequests were sent), at MaxTime, or when ctx is cancelled; the partial result is
// returned in every case, with an error only if the run could not start.
func Run(ctx context.Context, p *profile.Profile, opts Options) (*Result, error) {
	g, err := newGenerator(p, opts)
	if err != nil {
		return nil, err
	}
	return g.run(ctx), nil
}

type generator struct {
	prof      *profile.Profile
	opts      Options
	plan      float64
	sched     *Schedule
	planned   int64
	addr      string
	tls       bool
	hc        *fasthttp.HostClient
	routes    []routeTmpl
	users     *profile.Users
	tagCum    []float64 // cumulative shares
	tagNames  [][]byte
	tag       place
	shards    []*shard
	highest   int64 // µs
	routeSent []atomic.Int64
	stalled   atomic.Int64
	sent      atomic.Int64
	start     time.Time
	clk       realClock
	idPrefix  []byte // request ids are idPrefix + the send's number: unique per run

	// collector state
	prevSent   []int64
	prevTotal  int64
	timeline   []Second
	progressAt time.Duration
	scratch    [][NumClasses]*hdrhistogram.Histogram
}

type routeTmpl struct {
	name    string
	method  []byte
	uri     []byte // scheme://host/path
	sep     byte   // '?' or '&' before the next query parameter
	body    []byte
	headers [][2]string
	// places for the user number (users.param, then extra_user_param) and the request id
	user []place
	id   *place
}

type place struct {
	where profile.Where
	name  []byte
}

func placeOf(p profile.Param) place {
	w, n := p.Place()
	return place{w, []byte(n)}
}

func newGenerator(p *profile.Profile, opts Options) (*generator, error) {
	if p == nil {
		return nil, errors.New("no profile")
	}
	prof := p.Clone()
	if opts.Rate < 0 {
		return nil, fmt.Errorf("rate must not be negative, got %v", opts.Rate)
	}
	if opts.Rate > 0 {
		prof.Rate = opts.Rate
	}
	if opts.Target != "" {
		prof.Target = opts.Target
	}
	if prof.Target == "" {
		prof.Target = DefaultTarget
	}
	if err := prof.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", prof.Name, err)
	}
	if opts.Conns == 0 {
		opts.Conns = DefaultConns
	}
	if opts.Conns < 1 || opts.Conns > MaxConns {
		return nil, fmt.Errorf("conns must be between 1 and %d, got %d", MaxConns, opts.Conns)
	}
	if opts.Workers == 0 {
		opts.Workers = opts.Conns
	}
	if opts.Workers < 1 || opts.Workers > MaxConns {
		return nil, fmt.Errorf("workers must be between 1 and %d, got %d", MaxConns, opts.Workers)
	}
	if opts.Timeout == 0 {
		opts.Timeout = prof.Timeout
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("timeout must be positive, got %v", opts.Timeout)
	}
	if opts.LateThreshold == 0 {
		opts.LateThreshold = DefaultLateThreshold
	}
	if opts.LateThreshold < 0 {
		return nil, fmt.Errorf("late threshold must be positive, got %v", opts.LateThreshold)
	}
	if opts.MaxRequests < 0 {
		return nil, fmt.Errorf("max requests must not be negative, got %d", opts.MaxRequests)
	}
	if opts.MaxResponseBody == 0 {
		opts.MaxResponseBody = 4 << 20
	}
	g := &generator{prof: prof, plan: prof.Rate}
	g.sched = NewSchedule(prof.Stages, prof.Rate)
	if opts.MaxTime == 0 {
		opts.MaxTime = g.sched.Duration() + 2*opts.Timeout + 5*time.Second
	}
	if opts.MaxTime < 0 {
		return nil, fmt.Errorf("max time must be positive, got %v", opts.MaxTime)
	}
	if opts.Seed == 0 {
		opts.Seed = time.Now().UnixNano()
	}
	g.opts = opts
	g.planned = g.sched.Count()
	if opts.MaxRequests > 0 && opts.MaxRequests < g.planned {
		g.planned = opts.MaxRequests
	}
	var err error
	g.addr, g.tls, err = profile.SplitTarget(prof.Target)
	if err != nil {
		return nil, err
	}
	scheme := "http://"
	if g.tls {
		scheme = "https://"
	}
	for _, r := range prof.Routes {
		m := r.Method
		if m == "" {
			m = fasthttp.MethodGet
		}
		t := routeTmpl{name: r.Name, method: []byte(m), uri: []byte(scheme + g.addr + r.Path), sep: '?'}
		for i := 0; i < len(r.Path); i++ {
			if r.Path[i] == '?' {
				t.sep = '&'
			}
		}
		if r.Body != "" {
			t.body = []byte(r.Body)
		}
		keys := make([]string, 0, len(r.Headers))
		for k := range r.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.headers = append(t.headers, [2]string{k, r.Headers[k]})
		}
		if prof.Users != nil {
			t.user = append(t.user, placeOf(prof.Users.Param))
			if r.ExtraUserParam != nil {
				t.user = append(t.user, placeOf(*r.ExtraUserParam))
			}
		}
		if r.IDParam != nil {
			pl := placeOf(*r.IDParam)
			t.id = &pl
		}
		g.routes = append(g.routes, t)
	}
	g.users = prof.Users
	if prof.Tags != nil {
		g.tag = placeOf(prof.Tags.Param)
		c := 0.0
		for _, s := range prof.Tags.Sorted() {
			c += s.Share
			g.tagCum = append(g.tagCum, c)
			g.tagNames = append(g.tagNames, []byte(s.Tag))
		}
	}
	// Latencies run from the intended time, so they can reach the whole run length.
	g.highest = (opts.MaxTime + opts.Timeout + time.Second).Microseconds()
	n := runtime.GOMAXPROCS(0)
	if n > 16 {
		n = 16
	}
	if n > opts.Workers {
		n = opts.Workers
	}
	for i := 0; i < n; i++ {
		g.shards = append(g.shards, newShard(len(g.routes), g.highest))
	}
	g.routeSent = make([]atomic.Int64, len(g.routes))
	g.prevSent = make([]int64, len(g.routes))
	g.scratch = make([][NumClasses]*hdrhistogram.Histogram, len(g.routes)+1)
	g.hc = &fasthttp.HostClient{
		Addr:                      g.addr,
		IsTLS:                     g.tls,
		Name:                      "floodgate-bench",
		MaxConns:                  opts.Conns,
		MaxConnWaitTimeout:        opts.Timeout,
		MaxIdleConnDuration:       10 * time.Second,
		ReadTimeout:               opts.Timeout,
		WriteTimeout:              opts.Timeout,
		MaxResponseBodySize:       opts.MaxResponseBody,
		MaxIdemponentCallAttempts: 1, // never retry: a retry would hide a failure and add load
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		DisablePathNormalizing:    true,
		DialDualStack:             true,
	}
	return g, nil
}

type job struct {
	at    time.Duration // intended offset from the start
	seq   int64         // the send's number in the run
	route int32
}

// pacer emits the schedule's sends at their intended times, whatever the workers do.
type pacer struct {
	sched *Schedule
	pick  *picker
	max   int64
}

// run dispatches sends until the schedule ends, max is reached or ctx is done, and
// returns how many it dispatched. dispatch returns false to stop.
func (p *pacer) run(ctx context.Context, c clock, dispatch func(job) bool) int64 {
	cur := p.sched.Cursor()
	var n int64
	for p.max <= 0 || n < p.max {
		t, ok := cur.Next()
		if !ok {
			break
		}
		if t > c.now() {
			c.sleepUntil(ctx, t)
		}
		if ctx.Err() != nil {
			break
		}
		if !dispatch(job{at: t, seq: n, route: int32(p.pick.next())}) {
			break
		}
		n++
	}
	return n
}

func (g *generator) run(parent context.Context) *Result {
	ctx, cancel := context.WithTimeout(parent, g.opts.MaxTime)
	defer cancel()

	jobs := make(chan job) // unbuffered: a send succeeds at once only if a worker is free
	var wg sync.WaitGroup
	g.start = time.Now()
	g.clk = realClock{start: g.start}
	g.idPrefix = append(strconv.AppendInt([]byte("fg"), g.start.UnixNano(), 36), '-')
	for i := 0; i < g.opts.Workers; i++ {
		w := g.newWorker(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(jobs)
		}()
	}

	stopTicker := make(chan struct{})
	tickerDone := make(chan struct{})
	go g.tick(stopTicker, tickerDone)

	weights := make([]float64, len(g.prof.Routes))
	for i, r := range g.prof.Routes {
		weights[i] = r.Weight
		if weights[i] == 0 {
			weights[i] = 1
		}
	}
	pc := &pacer{sched: g.sched, pick: newPicker(weights), max: g.planned}
	dispatch := func(j job) bool {
		select {
		case jobs <- j:
		default:
			g.stalled.Add(1)
			select {
			case jobs <- j:
			case <-ctx.Done():
				return false
			}
		}
		g.routeSent[j.route].Add(1)
		g.sent.Add(1)
		return true
	}
	pacerDone := make(chan int64)
	go func() {
		lockPacerThread() // never unlocked: the thread ends with this goroutine
		pacerDone <- pc.run(ctx, g.clk, dispatch)
	}()
	sent := <-pacerDone
	close(jobs)
	wg.Wait()
	elapsed := g.clk.now()
	close(stopTicker)
	<-tickerDone
	last := g.collect(elapsed, true)
	if g.opts.Progress != nil {
		pr := g.progress(elapsed, last)
		pr.Final = true
		g.opts.Progress(pr)
	}

	reason := StopScheduleDone
	switch {
	case parent.Err() != nil:
		reason = StopCancelled
	case ctx.Err() != nil && sent < g.planned:
		reason = StopMaxTime
	case g.opts.MaxRequests > 0 && sent >= g.opts.MaxRequests:
		reason = StopMaxRequests
	}
	g.hc.CloseIdleConnections()
	return g.result(elapsed, sent, reason)
}

// tick collects the per-second timeline and reports progress until stop is closed.
func (g *generator) tick(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	next := time.Second
	for {
		t := time.NewTimer(time.Until(g.start.Add(next)))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		sec := g.collect(next, false)
		if g.opts.Progress != nil {
			g.opts.Progress(g.progress(next, sec))
		}
		next += time.Second
	}
}

// collect closes the current timeline interval at offset now. The final call (last)
// records a partial second only if something happened in it.
func (g *generator) collect(now time.Duration, last bool) Second {
	sec := Second{At: now.Seconds(), Routes: make([]RouteSecond, len(g.routes))}
	all := g.scratchFor(len(g.routes))
	for i := range g.routes {
		cur := g.routeSent[i].Load()
		sec.Routes[i].Sent = cur - g.prevSent[i]
		g.prevSent[i] = cur
		sec.Sent += sec.Routes[i].Sent
	}
	for _, s := range g.shards {
		s.mu.Lock()
		for r := range s.routes {
			rs := &s.routes[r]
			sr := g.scratchFor(r)
			for c := Class(0); c < NumClasses; c++ {
				sec.Routes[r].Done[c] += rs.ivCount[c]
				rs.ivCount[c] = 0
				if h := rs.ivHist[c]; h != nil && h.TotalCount() > 0 {
					sr[c].Merge(h)
					all[c].Merge(h)
					h.Reset()
				}
			}
		}
		sec.Late += s.ivLate
		s.ivLate = 0
		s.mu.Unlock()
	}
	for r := range g.routes {
		sr := g.scratchFor(r)
		sec.Routes[r].Admitted = latencyOf(sr[ClassAdmitted])
		sec.Routes[r].Shed = latencyOf(sr[ClassShed])
		for c := Class(0); c < NumClasses; c++ {
			sec.Done[c] += sec.Routes[r].Done[c]
			sr[c].Reset()
		}
	}
	sec.Admitted = latencyOf(all[ClassAdmitted])
	sec.Shed = latencyOf(all[ClassShed])
	for c := Class(0); c < NumClasses; c++ {
		all[c].Reset()
	}
	if last {
		prevAt := 0.0
		if n := len(g.timeline); n > 0 {
			prevAt = g.timeline[n-1].At
		}
		idle := sec.Sent == 0 && sec.Late == 0
		for _, d := range sec.Done {
			idle = idle && d == 0
		}
		if idle || sec.At-prevAt < 0.001 {
			return sec
		}
		// A short tail (answers drained after the schedule) joins the last whole second,
		// so a chart does not show a 5 ms sliver as a per-second spike. Percentiles of the
		// two cannot be merged exactly; the maximum can.
		if n := len(g.timeline); n > 0 && sec.At-prevAt < 0.5 {
			mergeSecond(&g.timeline[n-1], &sec)
			return g.timeline[n-1]
		}
	}
	g.timeline = append(g.timeline, sec)
	return sec
}

func (g *generator) scratchFor(i int) *[NumClasses]*hdrhistogram.Histogram {
	s := &g.scratch[i]
	if s[0] == nil {
		for c := range s {
			s[c] = hdrhistogram.New(1, g.highest, intervalSigFigs)
		}
	}
	return s
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99), Max: h.Max()}
}

func (g *generator) progress(now time.Duration, sec Second) Progress {
	p := Progress{Elapsed: now, Planned: g.planned, Sent: g.sent.Load(),
		P99Admitted: time.Duration(sec.Admitted.P99) * time.Microsecond,
		P99Shed:     time.Duration(sec.Shed.P99) * time.Microsecond}
	if d := now - g.progressAt; d > 0 {
		p.Rate = float64(sec.Sent) / d.Seconds()
	}
	g.progressAt = now
	shed, failed := map[string]int64{}, map[string]int64{}
	var late int64
	for _, s := range g.shards {
		s.mu.Lock()
		for r := range s.routes {
			for _, c := range s.routes[r].cells {
				p.Done[c.class] += c.count
				switch c.class {
				case ClassShed:
					shed[c.verdict] += c.count
				case ClassError, ClassClient, ClassOther:
					failed[c.verdict] += c.count
				}
			}
		}
		late += s.late
		s.mu.Unlock()
	}
	p.Shed, p.Failed = sortedCounts(shed), sortedCounts(failed)
	if p.Sent > 0 {
		p.LateFraction = float64(late) / float64(p.Sent)
	}
	return p
}

func sortedCounts(m map[string]int64) []VerdictCount {
	out := make([]VerdictCount, 0, len(m))
	for k, v := range m {
		out = append(out, VerdictCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Verdict < out[j].Verdict
	})
	return out
}

// worker sends one request at a time with its own request, response and buffers.
type worker struct {
	g    *generator
	sh   *shard
	req  *fasthttp.Request
	resp *fasthttp.Response
	rng  *rand.Rand
	zipf *rand.Zipf
	uri  []byte
	sep  byte
	num  []byte
	id   []byte
	vbuf []byte
}

func (g *generator) newWorker(i int) *worker {
	w := &worker{g: g, sh: g.shards[i%len(g.shards)], req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(),
		rng: rand.New(rand.NewSource(g.opts.Seed + int64(i)*7919)), uri: make([]byte, 0, 256), num: make([]byte, 0, 24),
		id: make([]byte, 0, 48), vbuf: make([]byte, 0, maxVerdictLen)}
	if u := g.users; u != nil {
		if u.Distribution == "zipf" && u.Size > 1 {
			s := u.ZipfS
			if s == 0 {
				s = profile.DefaultZipfS
			}
			w.zipf = rand.NewZipf(w.rng, s, 1, uint64(u.Size-1))
		}
	}
	return w
}

func (w *worker) loop(jobs <-chan job) {
	defer fasthttp.ReleaseRequest(w.req)
	defer fasthttp.ReleaseResponse(w.resp)
	g := w.g
	late := g.opts.LateThreshold
	for j := range jobs {
		started := g.clk.now()
		w.build(int(j.route), j.seq)
		err := g.hc.DoTimeout(w.req, w.resp, g.opts.Timeout)
		end := g.clk.now()
		status, reqBytes, respBytes := 0, 0, 0
		w.vbuf = w.vbuf[:0]
		if err == nil {
			status = w.resp.StatusCode()
			w.vbuf = append(w.vbuf, w.resp.Header.Peek(VerdictHeader)...)
			reqBytes, respBytes = wireSize(w.req, w.resp)
		}
		lag := started - j.at
		w.sh.record(int(j.route), lag.Microseconds(), (end - j.at).Microseconds(), lag > late, status, w.vbuf, err, reqBytes, respBytes)
	}
}

// wireSize is a request's and its answer's size in HTTP/1.1 bytes: head (request or
// status line and headers, as sent and received) and body. It allocates nothing once the
// header buffers are warm.
func wireSize(req *fasthttp.Request, resp *fasthttp.Response) (int, int) {
	return len(req.Header.Header()) + len(req.Body()), len(resp.Header.Header()) + len(resp.Body())
}

// build fills the worker's request for a route: method, URI with the user, tag and id
// query parameters, headers, cookies and body. It allocates nothing once the buffers are
// warm.
func (w *worker) build(route int, seq int64) {
	g := w.g
	rt := &g.routes[route]
	req := w.req
	req.Reset()
	req.Header.SetMethodBytes(rt.method)
	w.uri = append(w.uri[:0], rt.uri...)
	w.sep = rt.sep
	if u := g.users; u != nil {
		var id int64
		if w.zipf != nil {
			id = int64(w.zipf.Uint64())
		} else {
			id = w.rng.Int63n(u.Size)
		}
		first := u.First
		if first == 0 {
			first = profile.DefaultFirstID
		}
		w.num = strconv.AppendInt(w.num[:0], first+id, 10)
		for i := range rt.user {
			w.put(&rt.user[i], w.num)
		}
	}
	if len(g.tagCum) > 0 {
		x := w.rng.Float64()
		for i, c := range g.tagCum {
			if x < c {
				w.put(&g.tag, g.tagNames[i])
				break
			}
		}
	}
	if rt.id != nil {
		w.id = strconv.AppendInt(append(w.id[:0], g.idPrefix...), seq, 10)
		w.put(rt.id, w.id)
	}
	req.SetRequestURIBytes(w.uri)
	for _, h := range rt.headers {
		req.Header.Set(h[0], h[1])
	}
	if rt.body != nil {
		req.SetBodyRaw(rt.body)
	}
}

// put places a value as a query parameter (on w.uri), a header or a cookie.
func (w *worker) put(p *place, v []byte) {
	switch p.where {
	case profile.InQuery:
		w.uri = append(w.uri, w.sep)
		w.uri = append(w.uri, p.name...)
		w.uri = append(w.uri, '=')
		w.uri = append(w.uri, v...)
		w.sep = '&'
	case profile.InHeader:
		w.req.Header.SetBytesKV(p.name, v)
	case profile.InCookie:
		w.req.Header.SetCookieBytesKV(p.name, v)
	}
}

func mergeSecond(into, from *Second) {
	into.Sent += from.Sent
	into.Late += from.Late
	for c := range into.Done {
		into.Done[c] += from.Done[c]
	}
	into.Admitted.Max = max(into.Admitted.Max, from.Admitted.Max)
	into.Shed.Max = max(into.Shed.Max, from.Shed.Max)
	for r := range into.Routes {
		a, b := &into.Routes[r], &from.Routes[r]
		a.Sent += b.Sent
		for c := range a.Done {
			a.Done[c] += b.Done[c]
		}
		a.Admitted.Max = max(a.Admitted.Max, b.Admitted.Max)
		a.Shed.Max = max(a.Shed.Max, b.Shed.Max)
	}
}
