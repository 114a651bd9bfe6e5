package gateway

import (
	"sync"

	"github.com/valyala/fasthttp"
)

// The request-target the upstream gets. fasthttp writes a request whose URI was parsed
// (routing parses it) from the parsed form: the host in lower case and the path decoded
// and quoted again by its own table, which escapes the sub-delimiters RFC 3986 allows in
// a path ("/p/a!b(1)*" went out as "/p/a%21b%281%29%2A"; a URI with a reserved character
// percent-encoded is another URI to a strict upstream or a signature check), and "OPTIONS
// *" went out as "OPTIONS /%2A" (a request for a resource "/*"). forwardTarget makes
// fasthttp write the target from pathOriginal instead (DisablePathNormalizing), which it
// sets to the routed path (decoded, dot segments and "//" resolved) quoted only where
// RFC 3986 requires: the path as the client sent it whenever it was already in that form
// - the usual case, which costs one comparison - and the routed form otherwise, so the
// upstream still serves the path the route matched. The query stays as sent; the Host
// header as sent (absolute form: the target's authority, as routed).

// targetBufs holds the buffers a target is rebuilt in (the rare case).
var targetBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// forwardTarget prepares req, routed already, to be written upstream (see above).
func forwardTarget(req *fasthttp.Request) {
	u := req.URI()
	raw := req.Header.RequestURI()
	req.UseHostHeader = true
	if len(raw) > 0 && raw[0] != '/' && !(len(raw) == 1 && raw[0] == '*') {
		// absolute form (RFC 9112 3.2.2: its authority is the host, not the Host header)
		req.Header.SetHostBytes(u.Host())
	}
	if sentAsRouted(u) {
		u.DisablePathNormalizing = true
		return
	}
	bp := targetBufs.Get().(*[]byte)
	b := appendPathQuoted((*bp)[:0], u.Path())
	if q := u.QueryString(); len(q) > 0 {
		b = append(b, '?')
		b = append(b, q...)
	}
	// Parse copies b; the host is the Host header (lower-cased as routing did)
	if u.Parse(req.Header.Host(), b) == nil {
		u.DisablePathNormalizing = true
	}
	*bp = b
	putTargetBuf(bp)
}

func putTargetBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		targetBufs.Put(bp)
	}
}

// sentAsRouted: the client sent the path in the form the upstream gets (the routed path
// quoted by appendPathQuoted), or "*".
func sentAsRouted(u *fasthttp.URI) bool {
	orig := u.PathOriginal()
	return (len(orig) == 1 && orig[0] == '*') || quotedAs(orig, u.Path())
}

// targetPath is the path of the request-target the upstream gets (forwardTarget) for a
// record made of the request (an async grant): u's own bytes (bp nil), or a buffer of
// targetBufs filled with it, which the caller puts back (putTargetBuf) once done with it.
func targetPath(u *fasthttp.URI) (path []byte, bp *[]byte) {
	if sentAsRouted(u) {
		return u.PathOriginal(), nil
	}
	bp = targetBufs.Get().(*[]byte)
	*bp = appendPathQuoted((*bp)[:0], u.Path())
	return *bp, bp
}

// pathEscape marks the bytes a path must carry percent-encoded: everything but
// unreserved, sub-delims, ":", "@" and "/" (RFC 3986 3.3), and "%" itself (the routed
// path is decoded).
var pathEscape = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c <= ' ' || c >= 0x7f
	}
	for _, c := range []byte("\"#%<>?[\\]^`{|}") {
		t[c] = true
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

func appendPathQuoted(dst, path []byte) []byte {
	for _, c := range path {
		if pathEscape[c] {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// quotedAs reports whether raw is exactly appendPathQuoted(path).
func quotedAs(raw, path []byte) bool {
	j := 0
	for _, c := range path {
		if !pathEscape[c] {
			if j >= len(raw) || raw[j] != c {
				return false
			}
			j++
			continue
		}
		if j+3 > len(raw) || raw[j] != '%' || raw[j+1] != upperHex[c>>4] || raw[j+2] != upperHex[c&15] {
			return false
		}
		j += 3
	}
	return j == len(raw)
}
