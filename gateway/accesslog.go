package gateway

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/metrics"
)

var (
	accessDropped = metrics.NewCounterVec("access_log_dropped_total",
		"Access log entries dropped because the writer fell behind (the request path never waits for it).")
	accessWritten = metrics.NewCounterVec("access_log_written_total", "Access log entries written.")
)

// accessLog is the optional access log. The request path copies a fixed-size record into
// a preallocated ring (a bounded multi-producer queue: one atomic compare-and-swap to claim
// a slot, no lock, no allocation) and never waits: when the ring is full the record is
// dropped and counted. One goroutine drains the ring and writes JSON lines.
type accessLog struct {
	path  string
	slots []accessSlot
	mask  uint64
	head  atomic.Uint64 // next slot to claim
	tail  uint64        // next slot to read (the writer goroutine only)

	file   *os.File
	out    *bufio.Writer
	stop   chan struct{}
	done   chan struct{}
	reopen chan chan error
	// startID (the log's creation time) and a record's number make the request id of a
	// request without X-Request-Id.
	startID int64
	once    sync.Once
	dropped interface{ Inc() }
	written interface{ Add(float64) }
}

const (
	accessPathMax   = 120
	accessMethodMax = 8
	accessIDMax     = 64
)

var requestIDName = []byte("X-Request-Id")

type accessSlot struct {
	seq      atomic.Uint64
	pos      uint64 // the record's number in this log (the generated request id)
	up       *upstream
	upDur    int64 // ns
	bytesIn  int64
	bytesOut int64
	rid      [accessIDMax]byte
	ridLen   uint8
	at       int64 // unix ns
	dur      int64 // ns
	status   int32
	route    *route
	reason   *filters.Reason // nil: admitted (proxied)
	ip       netip.Addr
	method   [accessMethodMax]byte
	mlen     uint8
	path     [accessPathMax]byte
	plen     uint8
	trunced  bool
}

// newAccessLog opens path ("stderr" or a file, appended) with a ring of size entries.
func newAccessLog(path string, size int) (*accessLog, error) {
	l := newAccessRing(path, size)
	if path == "stderr" {
		l.out = bufio.NewWriterSize(os.Stderr, 64<<10)
	} else {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		l.file = f
		l.out = bufio.NewWriterSize(f, 64<<10)
	}
	go l.run()
	return l, nil
}

// newAccessRing makes the ring (size rounded up to a power of two) without a writer.
func newAccessRing(path string, size int) *accessLog {
	n := 1
	for n < size {
		n <<= 1
	}
	l := &accessLog{path: path, slots: make([]accessSlot, n), mask: uint64(n - 1),
		stop: make(chan struct{}), done: make(chan struct{}), reopen: make(chan chan error), startID: time.Now().UnixNano(),
		dropped: accessDropped.WithLabelValues(), written: accessWritten.WithLabelValues()}
	for i := range l.slots {
		l.slots[i].seq.Store(uint64(i))
	}
	return l
}

// record copies one request's facts into the ring; it never blocks or allocates. rt is
// nil for requests that matched no route.
func (l *accessLog) record(ctx *fasthttp.RequestCtx, rt *route, reason *filters.Reason, ip netip.Addr, at time.Time, dur time.Duration) {
	l.recordExchange(ctx, rt, reason, ip, at, dur, nil)
}

// recordExchange is record with what the upstream side saw (ex nil: no exchange).
func (l *accessLog) recordExchange(ctx *fasthttp.RequestCtx, rt *route, reason *filters.Reason, ip netip.Addr, at time.Time, dur time.Duration, ex *exchange) {
	for {
		pos := l.head.Load()
		s := &l.slots[pos&l.mask]
		seq := s.seq.Load()
		switch {
		case seq == pos:
			if !l.head.CompareAndSwap(pos, pos+1) {
				continue
			}
			s.at = at.UnixNano()
			s.dur = int64(dur)
			s.pos = pos
			s.up, s.upDur = nil, 0
			if ex != nil {
				s.up, s.upDur = ex.upstream, int64(ex.took)
			}
			s.bytesIn = int64(len(ctx.Request.Body()))
			s.bytesOut = int64(len(ctx.Response.Body()))
			rid := ctx.Request.Header.PeekBytes(requestIDName)
			if len(rid) > accessIDMax {
				rid = rid[:accessIDMax]
			}
			s.ridLen = uint8(copy(s.rid[:], rid))
			s.status = int32(ctx.Response.StatusCode())
			s.route, s.reason, s.ip = rt, reason, ip
			s.mlen = uint8(copy(s.method[:], ctx.Method()))
			p := ctx.Path()
			s.plen = uint8(copy(s.path[:], p))
			s.trunced = len(p) > accessPathMax
			s.seq.Store(pos + 1)
			return
		case seq < pos:
			l.dropped.Inc() // full: the writer is behind
			return
		}
		// another producer took this slot; try the next position
	}
}

func (l *accessLog) run() {
	defer close(l.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	buf := make([]byte, 0, 512)
	for {
		n := 0
		for {
			s := &l.slots[l.tail&l.mask]
			if s.seq.Load() != l.tail+1 {
				break
			}
			buf = l.appendAccess(buf[:0], s)
			s.seq.Store(l.tail + l.mask + 1)
			l.tail++
			l.out.Write(buf)
			n++
		}
		if n > 0 {
			l.written.Add(float64(n))
			l.out.Flush()
		}
		select {
		case <-t.C:
		case errc := <-l.reopen:
			// what was recorded before the signal goes to the old file
			for {
				s := &l.slots[l.tail&l.mask]
				if s.seq.Load() != l.tail+1 {
					break
				}
				l.out.Write(l.appendAccess(buf[:0], s))
				s.seq.Store(l.tail + l.mask + 1)
				l.tail++
				l.written.Add(1)
			}
			errc <- l.reopenFile()
		case <-l.stop:
			// a last drain of what producers finished, then out
			for {
				s := &l.slots[l.tail&l.mask]
				if s.seq.Load() != l.tail+1 {
					break
				}
				l.out.Write(l.appendAccess(buf[:0], s))
				s.seq.Store(l.tail + l.mask + 1)
				l.tail++
			}
			l.out.Flush()
			return
		}
	}
}

// reopenFile closes and reopens the log file (after logrotate moved it); the writer
// goroutine only. On error the old file is kept.
func (l *accessLog) reopenFile() error {
	if l.file == nil {
		return nil // stderr
	}
	l.out.Flush()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.file.Close()
	l.file = f
	l.out.Reset(f)
	return nil
}

// Reopen asks the writer to reopen the file and waits for the result.
func (l *accessLog) Reopen() error {
	errc := make(chan error, 1)
	select {
	case l.reopen <- errc:
		return <-errc
	case <-l.done:
		return nil
	}
}

// ReopenAccessLog reopens the access log file, for logrotate (SIGUSR1). It returns the
// path, or "" when no access log is on.
func (g *Gateway) ReopenAccessLog() (string, error) {
	st := g.state.Load()
	if st == nil || st.access == nil {
		return "", nil
	}
	return st.access.path, st.access.Reopen()
}

// close stops the writer after a last drain.
func (l *accessLog) close() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		if l.file != nil {
			l.file.Close()
		}
	})
}

// appendAccess formats one record as a JSON line.
func (l *accessLog) appendAccess(b []byte, s *accessSlot) []byte {
	b = append(b, `{"time":"`...)
	b = time.Unix(0, s.at).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","route":`...)
	if s.route == nil {
		b = append(b, `"-"`...)
	} else {
		b = strconv.AppendQuote(b, s.route.name)
	}
	b = append(b, `,"method":`...)
	b = appendJSONString(b, s.method[:s.mlen])
	b = append(b, `,"path":`...)
	b = appendJSONString(b, s.path[:s.plen])
	if s.trunced {
		b = append(b, `,"path_truncated":true`...)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(s.status), 10)
	b = append(b, `,"verdict":`...)
	if s.reason == nil {
		b = append(b, `"admitted"`...)
	} else {
		b = strconv.AppendQuote(b, s.reason.Verdict)
	}
	b = append(b, `,"client":"`...)
	b = s.ip.AppendTo(b)
	b = append(b, `","duration_us":`...)
	b = strconv.AppendInt(b, s.dur/1000, 10)
	if s.up != nil {
		b = append(b, `,"upstream":`...)
		b = strconv.AppendQuote(b, s.up.addr)
		b = append(b, `,"upstream_us":`...)
		b = strconv.AppendInt(b, s.upDur/1000, 10)
	}
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, s.bytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, s.bytesOut, 10)
	b = append(b, `,"request_id":`...)
	if s.ridLen > 0 {
		b = appendJSONString(b, s.rid[:s.ridLen])
	} else {
		// none from the client: this log's start and the record's number, unique per log
		b = append(b, '"')
		b = strconv.AppendInt(b, l.startID, 36)
		b = append(b, '-')
		b = strconv.AppendUint(b, s.pos, 36)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// appendJSONString quotes request bytes for JSON: printable ASCII as is, everything else
// escaped (the path is the client's; invalid UTF-8 becomes \ufffd).
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for len(s) > 0 {
		c := s[0]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b = append(b, c)
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRune(s)
		s = s[size:]
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			b = append(b, `\u`...)
			if r == utf8.RuneError {
				b = append(b, "fffd"...)
			} else {
				b = append(b, "00"...)
				b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&0xf])
			}
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
