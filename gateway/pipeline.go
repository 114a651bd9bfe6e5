package gateway

// Upstream pipelining (pools.<name>.pipeline): the requests in flight to one server share
// a few connections. Each connection has a writer goroutine that coalesces the requests
// queued to it into one write, and a reader goroutine that parses the answers, in order,
// out of as few reads as they arrive in. It saves the per-request write, read and EAGAIN
// read the gateway makes with one connection per request in flight (fasthttp.HostClient),
// and the upstream saves the same.
//
// The pool's semantics stay:
//   - budget: the requests in flight to a server are bounded by its share of max_conns,
//     exactly as with a connection per request; beyond it a request waits queue_timeout,
//     then gets upstream/busy;
//   - only the requests the HostClient may send twice (GET, HEAD, PUT, QUERY) are
//     pipelined; the others (POST, ...) take a connection of their own, as without
//     pipelining, so they are never sent twice, never wait behind another answer and never
//     lose their connection to another request's failure;
//   - timeouts: every request waits at most its route's timeout. Answers come back in
//     order, so a slow answer holds the ones behind it (head-of-line blocking): a connection
//     whose oldest unanswered request has waited longer than pipeline.stall gets no new
//     requests (the next one is opened), and when the slow request's own timeout ends it the connection is
//     closed; the requests queued behind it are sent again once on another connection
//     while their time lasts (as the HostClient retries them once on a failed connection);
//   - ejection: connection failures and timeouts are reported like the HostClient's and
//     count toward ejection; a request that lost its connection behind someone else's slow
//     answer and got its answer on the next one does not.
//
// The request path allocates nothing in the steady state: a request is serialised into a
// pooled work item (its own buffer), the answer is parsed straight into the client's
// response, and the wait uses the work item's timer.

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/gateway/config"
)

// pipeEpoch is the origin of the pipeline's monotonic nanosecond clock.
var pipeEpoch = time.Now()

func pipeNow() int64 { return int64(time.Since(pipeEpoch)) }

var (
	// errPipeNotSent: the connection died before the request was written.
	errPipeNotSent = errors.New("pipelined upstream connection closed before the request was written")
	// errPipeLost: the connection died after the request was written.
	errPipeLost = errors.New("pipelined upstream connection closed before the answer")
)

const (
	pipeWriteBuf = 64 << 10 // a write is flushed at this size
	pipeReadBuf  = 64 << 10
	pipeKeepOut  = 64 << 10 // a work item keeps request buffers up to this size
)

// pipeClient is one upstream server's pipelined connections.
type pipeClient struct {
	addr  string
	dial  fasthttp.DialFunc
	slots []pipeSlot
	// depth is the most requests in flight on one connection; limit on the server.
	depth, limit int32
	inflight     atomic.Int32
	stall        int64 // ns
	queueTimeout time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	idleTimeout  time.Duration
	maxBody      int
	closed       atomic.Bool
	works        sync.Pool
}

type pipeSlot struct {
	conn atomic.Pointer[pipeConn]
	mu   sync.Mutex // held only to dial
}

type pipeState = int32

const (
	stQueued    pipeState = iota // in a connection's queue; the connection side owns it
	stReading                    // the reader is parsing the answer into resp
	stDone                       // err and resp are set; done was signalled; the requester owns it
	stAbandoned                  // the requester timed out; the connection side releases it
)

// pipeWork is one request in flight.
type pipeWork struct {
	out   sink
	bw    *bufio.Writer
	resp  *fasthttp.Response
	head  bool
	sent  int64 // when it was queued on its connection (pipeNow)
	state atomic.Int32
	err   error
	done  chan struct{}
	timer *time.Timer
}

// sink is an io.Writer appending to a byte slice.
type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

func newPipeClient(addr string, dial fasthttp.DialFunc, limit int, cfg pipeSettings) *pipeClient {
	c := &pipeClient{
		addr: addr, dial: dial, slots: make([]pipeSlot, cfg.conns),
		depth: int32((limit + cfg.conns - 1) / cfg.conns), limit: int32(limit),
		stall: int64(cfg.stall), queueTimeout: cfg.queueTimeout,
		readTimeout: cfg.readTimeout, writeTimeout: cfg.writeTimeout, idleTimeout: cfg.idleTimeout,
		maxBody: cfg.maxBody,
	}
	c.works.New = func() any {
		w := &pipeWork{done: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
		w.timer.Stop()
		w.bw = bufio.NewWriterSize(&w.out, 4096)
		return w
	}
	return c
}

type pipeSettings struct {
	conns                                                       int
	stall, queueTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	maxBody                                                     int
}

// PendingRequests is the number of requests in flight (status).
func (c *pipeClient) PendingRequests() int { return int(c.inflight.Load()) }

// ConnsCount is the number of open connections (status).
func (c *pipeClient) ConnsCount() int {
	n := 0
	for i := range c.slots {
		if pc := c.slots[i].conn.Load(); pc != nil && !pc.dead.Load() {
			n++
		}
	}
	return n
}

// close lets the connections go: each is closed once nothing is in flight on it.
func (c *pipeClient) close() {
	c.closed.Store(true)
	for i := range c.slots {
		if pc := c.slots[i].conn.Load(); pc != nil && pc.pending.Load() == 0 {
			pc.kill()
		}
	}
}

// idempotent is fasthttp's rule for the requests its clients may send twice.
func idempotent(h *fasthttp.RequestHeader) bool {
	return h.IsGet() || h.IsHead() || h.IsPut() || h.IsQuery()
}

// DoTimeout sends req and reads the answer into resp within timeout; start is the
// request's time (no clock read for it).
func (c *pipeClient) DoTimeout(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, start time.Time) error {
	var now int64
	if start.IsZero() {
		now = pipeNow()
	} else {
		now = int64(start.Sub(pipeEpoch))
	}
	deadline := now + int64(timeout)
	if !c.acquire(deadline) {
		return fasthttp.ErrNoFreeConns
	}
	defer c.inflight.Add(-1)

	w := c.works.Get().(*pipeWork)
	req.Header.ResetConnectionClose() // the gateway keeps its upstream connections itself
	w.out.b = w.out.b[:0]
	if err := req.Write(w.bw); err != nil {
		w.bw.Reset(&w.out)
		c.put(w)
		return err
	}
	if err := w.bw.Flush(); err != nil {
		c.put(w)
		return err
	}
	w.head = req.Header.IsHead()
	skip := resp.SkipBody
	resp.Reset()
	resp.SkipBody = skip || w.head
	w.resp = resp
	w.err = nil
	w.timer.Reset(timeout)

	retryWritten := true // only idempotent requests are pipelined (upstream.do)
	var err error
	for attempt := 0; ; attempt++ {
		pc, derr := c.pick(now)
		if derr != nil {
			err = derr
			break
		}
		if pc == nil {
			err = fasthttp.ErrNoFreeConns
			break
		}
		w.state.Store(stQueued)
		w.sent = now
		pc.chW <- w // never blocks: pick reserved a place (pending <= depth = cap)
		var timedOut bool
		select {
		case <-w.done:
		case <-w.timer.C:
			timedOut = true
		}
		if timedOut {
			if w.state.CompareAndSwap(stQueued, stAbandoned) {
				return fasthttp.ErrTimeout // the connection side releases w
			}
			if w.state.Load() == stReading {
				pc.kill() // the reader is filling resp: stop it, then take w back
			}
			<-w.done
			w.timer.Stop() // fired already; nothing to drain
			if w.err == nil {
				c.put(w) // the answer came just in time
				return nil
			}
			c.put(w)
			return fasthttp.ErrTimeout
		}
		err = w.err
		if err == nil {
			w.timer.Stop()
			c.put(w)
			return nil
		}
		// pick again for a request that was never written, or - once, like the HostClient
		// does - one that may be sent twice, while its time lasts
		again := err == errPipeNotSent || (retryWritten && err != fasthttp.ErrBodyTooLarge)
		if !again {
			break
		}
		if err != errPipeNotSent {
			retryWritten = false
		}
		now = pipeNow()
		if now >= deadline {
			err = fasthttp.ErrTimeout
			break
		}
		resp.Reset()
		resp.SkipBody = skip || w.head
	}
	w.timer.Stop()
	c.put(w)
	if err == errPipeLost {
		err = fasthttp.ErrConnectionClosed // a second connection lost: the server is unwell
	}
	return err
}

func (c *pipeClient) put(w *pipeWork) {
	w.resp = nil
	w.err = nil
	if cap(w.out.b) > pipeKeepOut {
		w.out.b = nil
	}
	c.works.Put(w)
}

// acquire takes a place in the server's budget, waiting up to queue_timeout (and never
// past the request's deadline) when it is used up.
func (c *pipeClient) acquire(deadline int64) bool {
	if c.inflight.Add(1) <= c.limit {
		return true
	}
	c.inflight.Add(-1)
	if c.queueTimeout <= 0 {
		return false
	}
	// The budget is full: wait in short sleeps (this is the overloaded path only).
	until := min(pipeNow()+int64(c.queueTimeout), deadline)
	for sleep := 50 * time.Microsecond; ; sleep = min(2*sleep, time.Millisecond) {
		time.Sleep(sleep)
		if c.inflight.Add(1) <= c.limit {
			return true
		}
		c.inflight.Add(-1)
		if pipeNow() >= until {
			return false
		}
	}
}

// pick reserves a place on a connection: the first open one that is neither full nor
// stalled; else it opens the first free slot; else the least loaded stalled one. A slot
// another request opened meanwhile may fill up before this one gets a place on it: then
// it looks again (at most once per slot).
func (c *pipeClient) pick(now int64) (*pipeConn, error) {
	for range len(c.slots) + 1 {
		free := -1
		var stalled *pipeConn
		for i := range c.slots {
			pc := c.slots[i].conn.Load()
			if pc == nil || pc.dead.Load() {
				if free < 0 {
					free = i
				}
				continue
			}
			p := pc.pending.Load()
			if p >= c.depth {
				continue
			}
			if p > 0 && now-pc.headSent.Load() > c.stall {
				if stalled == nil || p < stalled.pending.Load() {
					stalled = pc
				}
				continue
			}
			if pc.reserve(now) {
				return pc, nil
			}
		}
		if free < 0 {
			if stalled != nil && stalled.reserve(now) {
				return stalled, nil
			}
			return nil, nil
		}
		pc, err := c.open(free)
		if err != nil {
			return nil, err
		}
		if pc.reserve(now) {
			return pc, nil
		}
	}
	return nil, nil
}

// open dials slot i unless another request did meanwhile.
func (c *pipeClient) open(i int) (*pipeConn, error) {
	s := &c.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc := s.conn.Load(); pc != nil && !pc.dead.Load() {
		return pc, nil
	}
	conn, err := c.dial(c.addr)
	if err != nil {
		return nil, err
	}
	pc := &pipeConn{c: c, conn: conn,
		chW:  make(chan *pipeWork, c.depth),
		chR:  make(chan *pipeWork, c.depth),
		stop: make(chan struct{}),
	}
	pc.progress.Store(pipeNow())
	pc.headSent.Store(pc.progress.Load())
	s.conn.Store(pc)
	go pc.writeLoop()
	return pc, nil
}

// pipeConn is one pipelined connection.
type pipeConn struct {
	c    *pipeClient
	conn net.Conn
	chW  chan *pipeWork // to write
	chR  chan *pipeWork // written, to read the answer of (in order)
	// pending counts the requests on this connection: queued, written, being read.
	pending atomic.Int32
	// headSent is when the oldest request still unanswered on the connection was queued
	// (pipeNow): a connection with requests pending whose oldest one has waited longer
	// than stall is stalled - behind a slow answer, or with a queue the server takes longer
	// than stall to work through (it answers a connection's requests one after another).
	headSent atomic.Int64
	// progress is when the connection last answered (the last answer of a read) or, idle
	// until then, got a request: for the idle timeout.
	progress atomic.Int64
	dead     atomic.Bool
	stop     chan struct{}
	once     sync.Once
	scratch  fasthttp.Response // answers of abandoned requests are read into it
}

// reserve takes a place on pc; false when it is full or dead.
func (pc *pipeConn) reserve(now int64) bool {
	p := pc.pending.Add(1)
	if p > pc.c.depth || pc.dead.Load() {
		pc.pending.Add(-1)
		return false
	}
	if p == 1 {
		pc.progress.Store(now) // it was idle: the wait for an answer starts now
		pc.headSent.Store(now)
	}
	return true
}

// kill closes the connection; the writer's cleanup fails what is left on it.
func (pc *pipeConn) kill() {
	pc.once.Do(func() {
		pc.dead.Store(true)
		pc.conn.Close()
		close(pc.stop)
	})
}

// finish ends w on this connection with err (nil: answered).
func (pc *pipeConn) finish(w *pipeWork, err error) {
	pc.pending.Add(-1)
	for {
		switch w.state.Load() {
		case stAbandoned:
			pc.c.put(w)
			return
		case stQueued, stReading:
			st := w.state.Load()
			w.err = err
			if !w.state.CompareAndSwap(st, stDone) {
				continue // abandoned meanwhile
			}
			w.done <- struct{}{}
			return
		default:
			panic("pipeline: work finished twice")
		}
	}
}

func (pc *pipeConn) writeLoop() {
	readerDone := make(chan struct{})
	go func() { pc.readLoop(); close(readerDone) }()
	tick := min(max(pc.c.idleTimeout/4, 10*time.Millisecond), time.Second)
	ticker := time.NewTicker(tick)
	buf := make([]byte, 0, pipeWriteBuf)
	var err error
write:
	for {
		var w *pipeWork
		select {
		case w = <-pc.chW:
		case <-pc.stop:
			break write
		case <-ticker.C:
			idle := pc.c.idleTimeout
			if pc.c.closed.Load() {
				idle = 0
			}
			if pc.pending.Load() == 0 && pipeNow()-pc.progress.Load() >= int64(idle) {
				pc.kill()
				break write
			}
			continue
		}
		buf = pc.take(w, buf)
		// Coalesce: take what is queued, let the other runnable goroutines (requests
		// just read from clients) queue theirs once, take that too, then write it all.
		yielded := false
	drain:
		for len(buf) < pipeWriteBuf {
			select {
			case w = <-pc.chW:
				buf = pc.take(w, buf)
			default:
				if yielded {
					break drain
				}
				yielded = true
				runtime.Gosched()
			}
		}
		if len(buf) == 0 {
			continue
		}
		if pc.c.writeTimeout > 0 {
			pc.conn.SetWriteDeadline(time.Now().Add(pc.c.writeTimeout))
		}
		if _, err = pc.conn.Write(buf); err != nil {
			pc.kill()
			break
		}
		buf = buf[:0]
	}
	ticker.Stop()
	<-readerDone
	pc.cleanup()
}

// take appends w's request to buf and hands w to the reader; an abandoned w is dropped
// unsent.
func (pc *pipeConn) take(w *pipeWork, buf []byte) []byte {
	if w.state.Load() == stAbandoned {
		pc.pending.Add(-1)
		pc.c.put(w)
		return buf
	}
	buf = append(buf, w.out.b...)
	pc.chR <- w // never blocks: at most depth requests are on the connection
	return buf
}

func (pc *pipeConn) readLoop() {
	br := bufio.NewReaderSize(pc.conn, pipeReadBuf)
	for {
		var w *pipeWork
		select {
		case w = <-pc.chR:
		case <-pc.stop:
			return
		}
		pc.headSent.Store(w.sent) // w is the oldest unanswered request now
		if br.Buffered() == 0 && pc.c.readTimeout > 0 {
			// about to wait on the wire: w's answer is due read_timeout after it was
			// queued - no clock read here
			pc.conn.SetReadDeadline(pipeEpoch.Add(time.Duration(w.sent) + pc.c.readTimeout))
		}
		resp := &pc.scratch
		claimed := w.state.CompareAndSwap(stQueued, stReading)
		if claimed {
			resp = w.resp // reset by the requester, SkipBody set for HEAD
		} else {
			resp.Reset()
			resp.SkipBody = w.head
		}
		err := resp.ReadLimitBody(br, pc.c.maxBody)
		closing := err == nil && resp.ConnectionClose()
		if err != nil && !claimed {
			err = nil // nobody waits for it; the connection's end fails the rest
			closing = true
		}
		if err == nil && br.Buffered() == 0 {
			pc.progress.Store(pipeNow()) // answered what had arrived: the next wait starts
		}
		if claimed {
			pc.finish(w, err)
		} else {
			pc.pending.Add(-1)
			pc.c.put(w)
		}
		if err != nil || closing {
			pc.kill()
			return
		}
	}
}

// cleanup fails what is left on a dead connection once its reader and writer stopped:
// requests never written may go elsewhere, written ones are lost. It waits for requests
// that reserved a place just before the connection died.
func (pc *pipeConn) cleanup() {
	for {
		select {
		case w := <-pc.chR:
			pc.finish(w, errPipeLost)
		case w := <-pc.chW:
			pc.finish(w, errPipeNotSent)
		default:
			if pc.pending.Load() == 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func pipeSettingsOf(cfg config.Pool) pipeSettings {
	return pipeSettings{conns: cfg.Pipeline.Conns, stall: cfg.Pipeline.Stall.D(), queueTimeout: cfg.QueueTimeout.D(),
		readTimeout: cfg.ReadTimeout.D(), writeTimeout: cfg.WriteTimeout.D(), idleTimeout: cfg.IdleTimeout.D(),
		maxBody: int(cfg.MaxResponseBody)}
}

// do sends req to u within timeout: pipelined, or over a connection of its own.
// Only requests that may be sent twice are pipelined (RFC 9112 9.3.2: no pipelining after a
// non-idempotent request); the others take a connection of their own (u.hc) within the
// same budget, so that they never wait behind another answer nor lose their connection
// to another request's failure.
func (u *upstream) do(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, start time.Time) error {
	if u.pc == nil {
		return u.hc.DoTimeout(req, resp, timeout)
	}
	if idempotent(&req.Header) {
		return u.pc.DoTimeout(req, resp, timeout, start)
	}
	if !u.pc.acquire(int64(start.Sub(pipeEpoch)) + int64(timeout)) {
		return fasthttp.ErrNoFreeConns
	}
	defer u.pc.inflight.Add(-1)
	return u.hc.DoTimeout(req, resp, timeout)
}

func (u *upstream) inFlight() int {
	if u.pc != nil {
		return u.pc.PendingRequests()
	}
	return u.hc.PendingRequests()
}

func (u *upstream) maxConns() int {
	if u.pc != nil {
		return int(u.pc.limit)
	}
	return u.hc.MaxConns
}

func (u *upstream) conns() int {
	if u.pc != nil {
		return u.pc.ConnsCount() + u.hc.ConnsCount()
	}
	return u.hc.ConnsCount()
}
