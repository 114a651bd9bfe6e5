package gateway

import (
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/bytesconv"
)

var (
	xffName      = []byte("X-Forwarded-For")
	realIPName   = []byte("X-Real-IP")
	connName     = []byte("Connection")
	proxyPrefix  = []byte("proxy-")
	hopByHop     = [][]byte{[]byte("Keep-Alive"), []byte("Proxy-Connection"), []byte("TE"), []byte("Trailer"), []byte("Transfer-Encoding"), []byte("Upgrade")}
	tokenClose   = []byte("close")
	tokenKeepAlv = []byte("keep-alive")
)

func bytesString(b []byte) string { return bytesconv.String(b) }

// cleanRequest removes hop-by-hop headers before a request goes upstream: Connection and
// every header it names, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade.
// The client's "Connection: close" is a property of the client connection only; the
// upstream connection stays keep-alive (fasthttp recorded the client's wish already).
//
// cleanRequest and cleanResponse are written out for each concrete header type: through
// an interface, the buffers below would escape to the heap on every request.
func cleanRequest(h *fasthttp.RequestHeader) {
	h.ResetConnectionClose()
	if conn := h.PeekBytes(connName); len(conn) > 0 {
		// copy the names out first: deleting shifts fasthttp's storage under conn
		var buf [256]byte
		names := append(buf[:0], conn...)
		for tok, rest := nextToken(names); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if tok != nil {
				h.DelBytes(tok)
			}
		}
		h.DelBytes(connName)
	}
	for _, k := range hopByHop {
		h.DelBytes(k)
	}
	for {
		var name [128]byte
		n := 0
		h.VisitAll(func(k, _ []byte) {
			if n == 0 && isProxyHeader(k) && len(k) <= len(name) {
				n = copy(name[:], k)
			}
		})
		if n == 0 {
			return
		}
		h.DelBytes(name[:n])
	}
}

// cleanResponse does the same for the upstream's answer before it goes to the client.
func cleanResponse(h *fasthttp.ResponseHeader) {
	h.ResetConnectionClose()
	if conn := h.PeekBytes(connName); len(conn) > 0 {
		var buf [256]byte
		names := append(buf[:0], conn...)
		for tok, rest := nextToken(names); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if tok != nil {
				h.DelBytes(tok)
			}
		}
		h.DelBytes(connName)
	}
	for _, k := range hopByHop {
		h.DelBytes(k)
	}
	for {
		var name [128]byte
		n := 0
		h.VisitAll(func(k, _ []byte) {
			if n == 0 && isProxyHeader(k) && len(k) <= len(name) {
				n = copy(name[:], k)
			}
		})
		if n == 0 {
			return
		}
		h.DelBytes(name[:n])
	}
}

// nextToken splits the next comma-separated header name off list. tok is nil for the
// connection options close and keep-alive and for empty elements.
func nextToken(list []byte) (tok, rest []byte) {
	i := indexByte(list, ',')
	if i < 0 {
		tok, rest = list, nil
	} else {
		tok, rest = list[:i], list[i+1:]
	}
	tok = trimSpace(tok)
	if len(tok) == 0 || equalFold(tok, tokenClose) || equalFold(tok, tokenKeepAlv) {
		return nil, rest
	}
	return tok, rest
}

func isProxyHeader(k []byte) bool {
	return len(k) > len(proxyPrefix) && equalFold(k[:len(proxyPrefix)], proxyPrefix)
}

// setForwardedFor sets X-Forwarded-For and X-Real-IP for the upstream. A client's own
// X-Forwarded-For is kept (and the peer appended) only when the peer is a trusted proxy;
// otherwise it is replaced, so a client cannot forge its address.
func setForwardedFor(h *fasthttp.RequestHeader, peer, client netip.Addr, trustedPeer bool) {
	var buf [256]byte
	b := buf[:0]
	if trustedPeer {
		if prev := h.PeekBytes(xffName); len(prev) > 0 {
			b = append(b, prev...)
			b = append(b, ", "...)
		}
	}
	b = peer.AppendTo(b)
	h.SetBytesKV(xffName, b)
	b = client.AppendTo(buf[:0])
	h.SetBytesKV(realIPName, b)
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
