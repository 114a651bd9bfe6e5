package gateway

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// Strict framing. fasthttp reads a chunked body leniently: whitespace after a chunk size
// ("28 ", "28\t", "0 "), any byte (NUL included) in a chunk extension, and obs-fold or a
// bare LF in the trailer section ("0\r\n\n"). The gateway re-frames every body it
// forwards (Content-Length), so the upstream cannot be desynchronised by them, but a hop
// in front of the gateway that reads the same bytes strictly would see a different
// message boundary than the gateway does. fasthttp keeps no copy of the raw body, so the
// gateway follows each client connection's message framing itself, as the bytes are
// read: strictConn feeds every byte fasthttp reads into a framer that knows where each
// message's head and body end and notes the first message whose framing is not strict
// RFC 9112. The guard answers that message 400 and closes the connection.

// strictListener wraps the traffic listener's connections in strictConn, and refuses a
// connection from an address that already has perIP.max open (perIP nil: no cap). The
// cap is kept here, not by fasthttp's MaxConnsPerIP: fasthttp would wrap the connection
// in a type of its own, and the guard must see every connection as the strictConn that
// follows its framing.
type strictListener struct {
	net.Listener
	perIP *connCap
}

func (l strictListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sc := &strictConn{Conn: c}
		if l.perIP != nil {
			if !l.perIP.take(c, sc) {
				continue // answered 429 and closed
			}
		}
		return sc, nil
	}
}

// strictConn is a client connection whose bytes are followed by a framer. fasthttp reads
// a connection and runs its handler on one goroutine, so the framer needs no lock.
type strictConn struct {
	net.Conn
	f framer
	// release gives the connection's place back to its address's cap (nil: no cap);
	// called once, by Close
	release func()
	closed  atomic.Bool
}

func (c *strictConn) Close() error {
	if c.closed.CompareAndSwap(false, true) && c.release != nil {
		c.release()
	}
	return c.Conn.Close()
}

// errBadFraming ends reading a connection whose framing is not strict: fasthttp answers
// it through the gateway's edge error handler (400) and closes the connection, without
// waiting for bytes a lenient reader would still expect.
var errBadFraming = errors.New("chunked framing or trailer section not strict RFC 9112")

func (c *strictConn) Read(p []byte) (int, error) {
	if c.f.bad != 0 {
		return 0, errBadFraming
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.f.feed(p[:n])
		if c.f.bad != 0 && err == nil {
			err = errBadFraming
		}
	}
	return n, err
}

type keepAliver interface {
	SetKeepAlive(bool) error
	SetKeepAlivePeriod(time.Duration) error
}

// SetKeepAlive and SetKeepAlivePeriod let fasthttp's TCPKeepalive reach the TCP
// connection through the wrapper.
func (c *strictConn) SetKeepAlive(on bool) error {
	if k, ok := c.Conn.(keepAliver); ok {
		return k.SetKeepAlive(on)
	}
	return nil
}

func (c *strictConn) SetKeepAlivePeriod(d time.Duration) error {
	if k, ok := c.Conn.(keepAliver); ok {
		return k.SetKeepAlivePeriod(d)
	}
	return nil
}

// badFraming reports whether message number n (1-based, fasthttp's ConnRequestNum) of
// the connection, or one before it, was framed in a way a strict reader would not accept.
func (c *strictConn) badFraming(n uint64) bool { return c.f.bad != 0 && c.f.bad <= n }

const (
	fHeadLine     = iota // reading a head line (request line or field line)
	fBody                // Content-Length body: remain bytes left
	fChunkSize           // chunk size digits
	fChunkExt            // chunk extension, up to CR
	fChunkSizeLF         // LF after a chunk-size line's CR
	fChunkData           // chunk data: remain bytes left
	fChunkCR             // CR after chunk data
	fChunkLF             // LF after chunk data
	fTrailerStart        // start of a trailer line (or of the final CRLF)
	fTrailerLine         // inside a trailer field line
	fTrailerLF           // LF ending a trailer field line
	fTrailerEndLF        // LF of the final CRLF
	fDead                // a violation was seen: stop following
)

// framer follows HTTP/1.1 request framing strictly. Heads are checked field by field by
// the guard (ambiguousHead) and by fasthttp; the framer only needs from a head where it
// ends and how its body is framed.
type framer struct {
	state   uint8
	cr      bool   // the head line so far ended in CR
	sawLine bool   // the request line of the current message was read
	chunked bool   // the current head has Transfer-Encoding
	digits  uint8  // chunk-size digits read
	remain  int64  // bytes left in a Content-Length body or a chunk
	cl      int64  // the current head's Content-Length (-1: none)
	msg     uint64 // the message being read, 1-based
	bad     uint64 // the first message with a violation (0: none)
	line    [24]byte
	lineLen int
}

func (f *framer) fail() {
	if f.bad == 0 {
		f.bad = f.msg
		if f.bad == 0 {
			f.bad = 1
		}
	}
	f.state = fDead
}

var (
	lowerContentLength    = []byte("content-length:")
	lowerTransferEncoding = []byte("transfer-encoding:")
)

// headLine is called at the end of each head line (without its CRLF), of which only the
// first len(f.line) bytes are kept.
func (f *framer) headLine(full int) {
	line := f.line[:min(full, len(f.line))]
	if full == 0 {
		if !f.sawLine {
			return // empty lines before a request line are ignored (RFC 9112 2.2)
		}
		// end of the head
		f.sawLine = false
		switch {
		case f.chunked:
			f.state, f.remain, f.digits = fChunkSize, 0, 0
		case f.cl > 0:
			f.state, f.remain = fBody, f.cl
		default:
			f.msg++
		}
		f.chunked, f.cl = false, -1
		return
	}
	if !f.sawLine {
		f.sawLine = true
		return
	}
	if hasPrefixFold(line, lowerTransferEncoding) {
		f.chunked = true // the guard rejects any value other than "chunked"
		return
	}
	if hasPrefixFold(line, lowerContentLength) {
		var v int64
		digits := 0
		for _, c := range line[len(lowerContentLength):] {
			switch {
			case c == ' ' || c == '\t':
				continue
			case '0' <= c && c <= '9' && digits < 18:
				v = v*10 + int64(c-'0')
				digits++
			default:
				f.fail() // fasthttp rejects such a Content-Length too
				return
			}
		}
		if full > len(f.line) {
			f.fail()
			return
		}
		f.cl = v
	}
}

func hasPrefixFold(b, lowerPrefix []byte) bool {
	if len(b) < len(lowerPrefix) {
		return false
	}
	for i, c := range lowerPrefix {
		x := b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != c {
			return false
		}
	}
	return true
}

func isHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// feed follows the bytes b of the connection.
func (f *framer) feed(b []byte) {
	if f.msg == 0 {
		f.msg, f.cl = 1, -1
	}
	for len(b) > 0 {
		switch f.state {
		case fDead:
			return
		case fBody, fChunkData:
			n := int64(len(b))
			if n > f.remain {
				n = f.remain
			}
			f.remain -= n
			b = b[n:]
			if f.remain == 0 {
				if f.state == fBody {
					f.state = fHeadLine
					f.msg++
				} else {
					f.state = fChunkCR
				}
			}
			continue
		}
		c := b[0]
		b = b[1:]
		switch f.state {
		case fHeadLine:
			switch {
			case c == '\n':
				if !f.cr {
					f.fail() // bare LF (the guard rejects it too)
					continue
				}
				full := f.lineLen
				f.lineLen, f.cr = 0, false
				f.headLine(full)
			case f.cr:
				f.fail() // CR not followed by LF
			case c == '\r':
				f.cr = true
			default:
				if f.lineLen < len(f.line) {
					f.line[f.lineLen] = c
				}
				f.lineLen++
			}
		case fChunkSize:
			if d, ok := isHex(c); ok {
				if f.digits >= 15 {
					f.fail() // larger than any body the gateway takes
					continue
				}
				f.remain = f.remain<<4 | int64(d)
				f.digits++
				continue
			}
			switch {
			case f.digits == 0:
				f.fail()
			case c == ';':
				f.state = fChunkExt
			case c == '\r':
				f.state = fChunkSizeLF
			default:
				f.fail() // whitespace or anything else after the size
			}
		case fChunkExt:
			switch {
			case c == '\r':
				f.state = fChunkSizeLF
			case c == '\t' || (c >= ' ' && c < 0x7f):
			default:
				f.fail() // NUL, bare LF or another control character
			}
		case fChunkSizeLF:
			if c != '\n' {
				f.fail()
				continue
			}
			if f.remain == 0 {
				f.state = fTrailerStart
			} else {
				f.state = fChunkData
			}
		case fChunkCR:
			if c != '\r' {
				f.fail()
				continue
			}
			f.state = fChunkLF
		case fChunkLF:
			if c != '\n' {
				f.fail()
				continue
			}
			f.state, f.remain, f.digits = fChunkSize, 0, 0
		case fTrailerStart:
			switch {
			case c == '\r':
				f.state = fTrailerEndLF
			case c == ' ' || c == '\t' || c == '\n' || c == ':':
				f.fail() // obs-fold, bare LF, empty name
			default:
				f.state = fTrailerLine
			}
		case fTrailerLine:
			switch {
			case c == '\r':
				f.state = fTrailerLF
			case c == '\t' || (c >= ' ' && c != 0x7f):
			default:
				f.fail()
			}
		case fTrailerLF:
			if c != '\n' {
				f.fail()
				continue
			}
			f.state = fTrailerStart
		case fTrailerEndLF:
			if c != '\n' {
				f.fail()
				continue
			}
			f.state = fHeadLine
			f.msg++
		}
	}
}
