package filters

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/bytesconv"
)

// Reading a request without changing what is forwarded.
//
// fasthttp parses some parts of a request lazily, and once parsed it writes them from
// the parsed form: after ctx.QueryArgs() the upstream gets the query string re-encoded
// from the parsed arguments ("a%7Eb" becomes "a~b", "k=a;b" becomes "k=a%3Bb", so a
// signed URL no longer verifies), and after Header.VisitAll, Header.All, VisitAllCookie
// or Cookie the upstream gets the cookies re-serialised (quotes stripped, "=v" turned
// into "v", a cookie holding a backslash or a quote dropped, several Cookie lines merged).
// A filter must therefore read queries and cookies through Request.Query and
// Request.Cookie (and keys through KeySpec), which read the raw bytes and change nothing.
// filtertest's conformance kit checks every filter for it (forwards_as_sent).

// Query returns the first value of the query parameter name (decoded as fasthttp.Args
// decodes it: %XX escapes and '+' as a space) and how many parameters have that name.
// A parameter without '=' has an empty value. The value is valid until the next Query
// of this request. It allocates nothing, except the first time a Request decodes a
// value of over 64 bytes (the gateway reuses its Requests).
func (r *Request) Query(name []byte) (value []byte, n int) {
	raw, n := QueryParam(r.Ctx.URI().QueryString(), name)
	if n == 0 {
		return nil, 0
	}
	if !argEscaped(raw) {
		return raw, n
	}
	if len(raw) <= len(r.valArr) { // decoding never lengthens a value
		return DecodeArg(r.valArr[:0], raw), n
	}
	r.valBuf = DecodeArg(r.valBuf[:0], raw) // grows once for a pooled Request
	return r.valBuf, n
}

// Cookie returns the value of the request cookie name, as fasthttp parses a Cookie
// header (spaces around it and one pair of surrounding double quotes removed; a cookie
// whose value holds '"', ';' or '\' is ignored), and how many cookies of that name the
// request carries, over all its Cookie lines. The value is valid for the request's life.
// It allocates nothing.
func (r *Request) Cookie(name []byte) (value []byte, n int) {
	for _, line := range r.Ctx.Request.Header.PeekAll(fasthttp.HeaderCookie) {
		v, m := CookieValue(line, name)
		if m > 0 && n == 0 {
			value = v
		}
		n += m
	}
	return value, n
}

// QueryParam finds name among the parameters of the raw query string q, comparing
// decoded names as fasthttp.Args does (segments split on '&', the name up to the first
// '=', empty segments skipped). It returns the raw (still encoded) value of the first
// match and the number of matches. It allocates nothing.
func QueryParam(q, name []byte) (raw []byte, n int) {
	for len(q) > 0 {
		seg := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			seg, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		key, val := seg, []byte(nil)
		if i := bytes.IndexByte(seg, '='); i >= 0 {
			key, val = seg[:i], seg[i+1:]
		}
		if len(key) == 0 && len(val) == 0 {
			continue // fasthttp.Args skips a segment with neither name nor value
		}
		if argEquals(key, name) {
			if n == 0 {
				raw = val
			}
			n++
		}
	}
	return raw, n
}

// DecodeArg appends the decoded form of a raw query name or value to dst, exactly as
// fasthttp.Args decodes it: "%XX" with two hex digits is that byte, '+' is a space, a
// '%' not followed by two hex digits stays as it is (and one in the last two bytes ends
// the decoding: the rest is copied as it is).
func DecodeArg(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		switch c := src[i]; c {
		case '%':
			if i+3 > len(src) {
				return append(dst, src[i:]...)
			}
			x1, x2 := unhex(src[i+1]), unhex(src[i+2])
			if x1 > 15 || x2 > 15 {
				dst = append(dst, '%')
			} else {
				dst = append(dst, x1<<4|x2)
				i += 2
			}
		case '+':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// argEquals reports whether the raw query name key decodes (DecodeArg) to name, without
// decoding it into a buffer.
func argEquals(key, name []byte) bool {
	j := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch c {
		case '%':
			if i+3 > len(key) {
				// the rest is kept as it is
				rest := key[i:]
				return len(name)-j == len(rest) && string(name[j:]) == string(rest)
			}
			if x1, x2 := unhex(key[i+1]), unhex(key[i+2]); x1 <= 15 && x2 <= 15 {
				c = x1<<4 | x2
				i += 2
			}
		case '+':
			c = ' '
		}
		if j >= len(name) || name[j] != c {
			return false
		}
		j++
	}
	return j == len(name)
}

func argEscaped(v []byte) bool {
	for _, c := range v {
		if c == '%' || c == '+' {
			return true
		}
	}
	return false
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 16
}

// CookieValue finds name among the cookies of one raw Cookie header value, parsed as
// fasthttp parses it: pairs split on ';' (one space after it skipped), the name up to the
// first '=' with spaces and tabs trimmed, the value trimmed and stripped of one pair of
// surrounding double quotes; a pair without '=' has no name; a pair with neither name
// nor value is skipped, and so is one whose value holds '"', ';' or '\'. It returns the
// first match's value (a slice of line) and the number of matches. It allocates nothing.
func CookieValue(line, name []byte) (value []byte, n int) {
	for len(line) > 0 {
		seg := line
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			seg, line = line[:i], line[i+1:]
			if len(line) > 0 && line[0] == ' ' {
				line = line[1:]
			}
		} else {
			line = nil
		}
		var key, val []byte
		if i := bytes.IndexByte(seg, '='); i >= 0 {
			key, val = bytesconv.TrimOWS(seg[:i]), bytesconv.TrimOWS(seg[i+1:])
		} else {
			val = bytesconv.TrimOWS(seg)
		}
		if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if len(key) == 0 && len(val) == 0 || !validCookieValue(val) {
			continue
		}
		if len(key) > 0 && string(key) == string(name) {
			if n == 0 {
				value = val
			}
			n++
		}
	}
	return value, n
}

func validCookieValue(v []byte) bool {
	for _, c := range v {
		if c == '"' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
