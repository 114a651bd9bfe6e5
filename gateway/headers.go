package gateway

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/bytesconv"
)

var (
	xffName      = []byte("X-Forwarded-For")
	realIPName   = []byte("X-Real-IP")
	connName     = []byte("Connection")
	proxyPrefix  = []byte("proxy-")
	tokenClose   = []byte("close")
	tokenKeepAlv = []byte("keep-alive")
)

// The names cleanRequest and cleanResponse strip besides Connection and what it names:
// the hop-by-hop headers (Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
// Upgrade) and, from requests only, "Proxy" (httpoxy: CGI-style upstreams turn it into
// HTTP_PROXY), HTTP2-Settings (only meaningful with an h2c Upgrade, which the gateway
// never forwards), and the client-address headers other than X-Forwarded-For /
// X-Real-IP, which the gateway does not rewrite: a client could otherwise name any
// address in them. fasthttp's DelBytes normalises the name it is given on every call
// (~25 ns each, a dozen names a request), so a name is deleted only when the pass over
// the headers that reads Connection saw it (names are compared case-insensitively;
// every field is visited, with a value or without one). Transfer-Encoding and Trailer
// are deleted always: fasthttp keeps them in fields of their own as well.
var (
	stripAlways      = [][]byte{[]byte("Transfer-Encoding"), []byte("Trailer")}
	requestIfPresent = [][]byte{[]byte("Keep-Alive"), []byte("Proxy-Connection"), []byte("TE"), []byte("Upgrade"),
		[]byte("Proxy"), []byte("HTTP2-Settings"), []byte("Forwarded"), []byte("True-Client-IP"), []byte("X-Client-IP"), []byte("X-Cluster-Client-IP")}
	responseIfPresent = requestIfPresent[:4] // the hop-by-hop ones
)

// presentIn sets bit i of *seen when k is names[i].
func presentIn(k []byte, names [][]byte, seen *uint32) {
	for i, n := range names {
		if len(k) == len(n) && bytesconv.EqualFold(k, n) {
			*seen |= 1 << i
		}
	}
}

func bytesString(b []byte) string { return bytesconv.String(b) }

// maxConnTokens bounds the bytes of all Connection lines of one message the gateway
// reads; a message with more is cut there (its remaining named headers are not hop-by-hop
// names anyone uses).
const maxConnTokens = 512

// cleanRequest removes hop-by-hop headers before a request goes upstream: every
// Connection line and every header any of them names, Keep-Alive, Proxy-*, Proxy, TE,
// Trailer, Transfer-Encoding, Upgrade, HTTP2-Settings, and the client-address headers
// the gateway does not set itself (Forwarded, True-Client-IP, X-Client-IP,
// X-Cluster-Client-IP). The client's "Connection: close" is a property of the client
// connection only; the upstream connection stays keep-alive (fasthttp recorded the
// client's wish already).
//
// cleanRequest and cleanResponse are written out for each concrete header type: through
// an interface, the buffers below would escape to the heap on every request.
func cleanRequest(h *fasthttp.RequestHeader) {
	h.ResetConnectionClose()
	// a body without Content-Type goes on without one (fasthttp would label it
	// application/octet-stream; the upstream may look at the content instead)
	h.SetNoDefaultContentType(true)
	// every Connection line, copied out first: deleting shifts fasthttp's storage
	var buf [maxConnTokens]byte
	n := 0
	var seen uint32
	var proxy [256]byte // the Proxy-* names, comma-separated (a name holds no comma)
	np, proxyAll := 0, true
	eachRequestHeader(h, func(k, v []byte) {
		if bytesconv.EqualFold(k, connName) && n < len(buf) {
			n += copy(buf[n:], v)
			if n < len(buf) {
				buf[n] = ','
				n++
			}
		}
		presentIn(k, requestIfPresent, &seen)
		if isProxyHeader(k) {
			if np+len(k)+1 <= len(proxy) {
				np += copy(proxy[np:], k)
				proxy[np] = ','
				np++
			} else {
				proxyAll = false
			}
		}
	})
	if n > 0 {
		for tok, rest := nextToken(buf[:n]); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if tok != nil {
				h.DelBytes(tok)
			}
		}
		h.DelBytes(connName)
	}
	for _, k := range stripAlways {
		h.DelBytes(k)
	}
	for i, k := range requestIfPresent {
		if seen&(1<<i) != 0 {
			h.DelBytes(k)
		}
	}
	for list := proxy[:np]; len(list) > 0; {
		i := indexByte(list, ',')
		h.DelBytes(list[:i])
		list = list[i+1:]
	}
	for !proxyAll { // more Proxy-* names than fit: one at a time
		var name [128]byte
		n := 0
		eachRequestHeader(h, func(k, _ []byte) {
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

// eachRequestHeader calls f with every field of h as fasthttp will write it upstream
// (Host, User-Agent, Content-Type and Content-Length first, then the others in order),
// read from h's serialised form. h.VisitAll must not be used on a request: it makes
// fasthttp collect the Cookie lines into a parsed list, which it then writes back
// re-serialised - quotes stripped, "=v" turned into "v", a cookie holding '"', ';' or
// '\' dropped, several Cookie lines merged into one - so the upstream would get other
// cookies than the client sent (TestFidelityCorpus). The slices are valid
// until h is changed or serialised again.
func eachRequestHeader(h *fasthttp.RequestHeader, f func(k, v []byte)) { eachField(h.Header(), f) }

// eachField calls f with every field of a serialised head b (after its first line).
func eachField(b []byte, f func(k, v []byte)) {
	i := bytes.Index(b, crlf) // the request or status line
	if i < 0 {
		return
	}
	for b = b[i+2:]; len(b) > 0; {
		i = bytes.Index(b, crlf)
		if i <= 0 { // the blank line that ends the head
			return
		}
		line := b[:i]
		b = b[i+2:]
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		v := line[c+1:]
		if len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
		f(line[:c], v)
	}
}

var crlf = []byte("\r\n")

// cleanResponse does the same for the upstream's answer before it goes to the client,
// and undoes what fasthttp's client reading and server writing would change in it
// (TestFidelityCorpus, testdata/fidelity/responses.txt): an answer without Content-Type
// stays without one (fasthttp labels it "text/plain; charset=utf-8"), the status line
// says the gateway's HTTP/1.1 (fasthttp kept the upstream's "HTTP/1.0"), and the fields
// of a chunked answer's trailer section are dropped (fasthttp merged them into the head
// when Trailer was deleted: "X-Sum: 3" after the body became a header).
func cleanResponse(h *fasthttp.ResponseHeader) {
	h.ResetConnectionClose()
	h.SetNoDefaultContentType(true)
	h.SetProtocol(http11)
	dropResponseTrailers(h)
	var buf [maxConnTokens]byte
	n := 0
	var seen uint32
	h.VisitAll(func(k, v []byte) {
		if bytesconv.EqualFold(k, connName) && n < len(buf) {
			n += copy(buf[n:], v)
			if n < len(buf) {
				buf[n] = ','
				n++
			}
		}
		presentIn(k, responseIfPresent, &seen)
	})
	if n > 0 {
		for tok, rest := nextToken(buf[:n]); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if tok != nil {
				h.DelBytes(tok)
			}
		}
		h.DelBytes(connName)
	}
	for _, k := range stripAlways {
		h.DelBytes(k)
	}
	for i, k := range responseIfPresent {
		if seen&(1<<i) != 0 {
			h.DelBytes(k)
		}
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
	if len(tok) == 0 || bytesconv.EqualFold(tok, tokenClose) || bytesconv.EqualFold(tok, tokenKeepAlv) {
		return nil, rest
	}
	return tok, rest
}

func isProxyHeader(k []byte) bool {
	return len(k) > len(proxyPrefix) && bytesconv.EqualFold(k[:len(proxyPrefix)], proxyPrefix)
}

// maxForwardedFor bounds the combined X-Forwarded-For chain the gateway reads and
// forwards. A longer chain is not believed: the client address is then the peer (or
// the nearest trusted hop), and the upstream gets only the peer.
const maxForwardedFor = 1024

// forwardedChain copies every X-Forwarded-For line of h, in order, into buf as one
// comma-separated list (RFC 9110 5.3: several lines of a list field are one list). ok
// is false when they do not fit.
func forwardedChain(h *fasthttp.RequestHeader, buf *[maxForwardedFor]byte) (chain []byte, ok bool) {
	n, ok := 0, true
	eachRequestHeader(h, func(k, v []byte) {
		if !ok || !bytesconv.EqualFold(k, xffName) {
			return
		}
		v = trimSpace(v)
		if len(v) == 0 {
			return
		}
		if n > 0 {
			if n+2 > len(buf) {
				ok = false
				return
			}
			buf[n], buf[n+1] = ',', ' '
			n += 2
		}
		if n+len(v) > len(buf) {
			ok = false
			return
		}
		n += copy(buf[n:], v)
	})
	return buf[:n], ok
}

// setForwardedFor sets X-Forwarded-For and X-Real-IP for the upstream, replacing every
// line of them the client sent. The client's own chain (all its X-Forwarded-For lines,
// combined) is kept, and the peer appended, only when the peer is a trusted proxy;
// otherwise it is dropped, so a client cannot forge its address.
func setForwardedFor(h *fasthttp.RequestHeader, peer, client netip.Addr, trustedPeer bool) {
	var chain [maxForwardedFor]byte
	var out [maxForwardedFor + 64]byte
	b := out[:0]
	if trustedPeer {
		if prev, ok := forwardedChain(h, &chain); ok && len(prev) > 0 {
			b = append(b, prev...)
			b = append(b, ", "...)
		}
	}
	b = peer.AppendTo(b)
	h.DelBytes(xffName) // every line
	h.SetBytesKV(xffName, b)
	b = client.AppendTo(out[:0])
	h.DelBytes(realIPName)
	h.SetBytesKV(realIPName, b)
}

// protectedNames are the header names (lower case) that a look-alike spelling must not
// smuggle past the gateway: framing, hop-by-hop and proxy headers, and the headers the
// gateway itself sets or reads for the upstream. A CGI/WSGI-style upstream maps "_" (and
// some ".") to "-", so "Transfer_Encoding" is Transfer-Encoding to it.
var protectedNames = [][]byte{
	[]byte("content-length"), []byte("transfer-encoding"), []byte("connection"), []byte("keep-alive"),
	[]byte("te"), []byte("trailer"), []byte("upgrade"), []byte("host"), []byte("proxy"),
	[]byte("http2-settings"), []byte("forwarded"), []byte("x-forwarded-for"), []byte("x-real-ip"),
	[]byte("true-client-ip"), []byte("x-client-ip"), []byte("x-cluster-client-ip"),
	[]byte("x-forwarded-host"), []byte("x-forwarded-proto"),
}

var (
	lowerProxyPrefix     = []byte("proxy-")
	lowerFloodgatePrefix = []byte("x-floodgate-")
)

// lookAlikeName reports a header name that is not itself a protected name but
// normalises to one when "_" and "." are read as "-" (and case is ignored): such a name
// means one thing to the gateway and another to the upstream.
func lookAlikeName(name []byte) bool {
	if bytes.IndexByte(name, '_') < 0 && bytes.IndexByte(name, '.') < 0 {
		return false
	}
	var buf [64]byte
	if len(name) > len(buf) {
		return false
	}
	n := buf[:len(name)]
	for i, c := range name {
		switch {
		case c == '_' || c == '.':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		n[i] = c
	}
	if bytes.HasPrefix(n, lowerProxyPrefix) || bytes.HasPrefix(n, lowerFloodgatePrefix) {
		return true
	}
	for _, p := range protectedNames {
		if bytes.Equal(n, p) {
			return true
		}
	}
	return false
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte { return bytesconv.TrimOWS(b) }
