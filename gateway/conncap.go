package gateway

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/floodgate/floodgate/filters"
)

// connCap counts the open connections of each client address for server.max_conns_per_ip.
// It runs when a connection is accepted and closed, never per request, so a mutex is
// fine here.
type connCap struct {
	max int
	// refuse answers a refused connection (the verdict counted and, when the verdict
	// header is on, named); set by Serve
	refused func() *filters.Reason
	header  func() bool

	mu   sync.Mutex
	open map[netip.Addr]int
}

func newConnCap(max int) *connCap { return &connCap{max: max, open: map[netip.Addr]int{}} }

// peerIP is the client address of c (ok false: not an IP connection, never capped).
func peerIP(c net.Conn) (netip.Addr, bool) {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	default:
		return netip.Addr{}, false
	}
}

// take admits c (sc is its strictConn, whose Close gives the place back) or, when its
// address already has max connections open, answers 429 edge/too_many_connections on it,
// closes it and returns false.
func (cc *connCap) take(c net.Conn, sc *strictConn) bool {
	ip, ok := peerIP(c)
	if !ok {
		return true
	}
	cc.mu.Lock()
	n := cc.open[ip]
	if n >= cc.max {
		cc.mu.Unlock()
		cc.refuse(c)
		return false
	}
	cc.open[ip] = n + 1
	cc.mu.Unlock()
	sc.release = func() {
		cc.mu.Lock()
		if cc.open[ip]--; cc.open[ip] <= 0 {
			delete(cc.open, ip)
		}
		cc.mu.Unlock()
	}
	return true
}

// tooManyConnsBody is the body of the 429 a refused connection gets.
const tooManyConnsBody = "Too Many Requests: too many connections from your address\n"

func (cc *connCap) refuse(c net.Conn) {
	var verdict []byte
	if cc.refused != nil {
		r := cc.refused()
		r.Count()
		if cc.header != nil && cc.header() {
			verdict = r.VerdictBytes()
		}
	}
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(tooManyConnsBody)), 10)
	b = append(b, "\r\n"...)
	if verdict != nil {
		b = append(b, VerdictHeader...)
		b = append(b, ": "...)
		b = append(b, verdict...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, tooManyConnsBody...)
	// a fresh connection's send buffer takes this at once; the deadline keeps a refused
	// client from ever holding the accept loop
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(b)
	c.Close()
}
