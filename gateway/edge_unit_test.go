package gateway

import (
	"bufio"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/itest"
)

// parseHead parses a request head the way the traffic server does; ok is false when
// fasthttp rejects it itself (then the guard never sees it).
func parseHead(t testing.TB, raw string) (h *fasthttp.RequestHeader, ok bool) {
	t.Helper()
	h = &fasthttp.RequestHeader{}
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return nil, false
	}
	return h, true
}

func TestAmbiguousHead(t *testing.T) {
	for _, tc := range []struct {
		desc, raw string
		want      bool
	}{
		{"plain GET", "GET /lottery HTTP/1.1\r\nHost: gw\r\nUser-Agent: x\r\n\r\n", false},
		{"Content-Length alone", "POST /lottery HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\n", false},
		{"chunked alone", "POST /lottery HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"chunked in capitals", "POST /lottery HTTP/1.1\r\nHost: gw\r\ntransfer-encoding: CHUNKED\r\n\r\n", false},
		// RFC 9110 5.5: leading and trailing SP / HTAB are not part of the value
		{"chunked with optional whitespace", "POST /lottery HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\t chunked \t\r\n\r\n", false},
		{"no headers at all (HTTP/1.0)", "GET /lottery HTTP/1.0\r\n\r\n", false},
		{"a value containing a colon", "GET /lottery HTTP/1.1\r\nHost: gw:8080\r\nX-T: a:b\r\n\r\n", false},
		{"CL then TE", "POST /lottery HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"TE then CL", "POST /lottery HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", true},
		{"TE identity", "POST /lottery HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\n\r\n", true},
		{"fold with a space", "GET /lottery HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n\r\n", true},
		{"fold with a tab", "GET /lottery HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n\tb\r\n\r\n", true},
		{"fold of the last header", "GET /lottery HTTP/1.1\r\nX-A: a\r\nHost: gw\r\n x\r\n\r\n", true},
		{"bare LF in a line", "GET /lottery HTTP/1.1\r\nHost: gw\nX-A: a\r\n\r\n", true},
		// fasthttp needs a CRLFCRLF somewhere before it accepts a bare-LF line as the
		// end of the head: here the next request brings it
		{"bare LF ending the block", "GET /lottery HTTP/1.1\r\nHost: gw\r\nX-A: a\n\r\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n", true},
		{"empty line of a bare LF", "GET /lottery HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n", true},
		{"space inside a name", "GET /lottery HTTP/1.1\r\nHost: gw\r\nX A: a\r\n\r\n", true},
	} {
		h, ok := parseHead(t, tc.raw)
		if !ok {
			t.Errorf("%s: fasthttp rejects it itself; the case tests nothing", tc.desc)
			continue
		}
		if got := ambiguousHead(h.RawHeaders()); got != tc.want {
			t.Errorf("%s: ambiguousHead = %v, want %v (raw %q)", tc.desc, got, tc.want, h.RawHeaders())
		}
	}
}

// TestPlainPathAgreesWithFasthttp: headerReceived takes the fast path only for paths that
// fasthttp's URI parsing (what the handler routes on) leaves unchanged. A path it would
// change on the fast path could pick another route's body limit.
func TestPlainPathAgreesWithFasthttp(t *testing.T) {
	check := func(p string) {
		if !plainPath([]byte(p)) {
			return
		}
		u := fasthttp.AcquireURI()
		defer fasthttp.ReleaseURI(u)
		if err := u.Parse([]byte("gw"), []byte(p)); err != nil {
			return
		}
		if got := string(u.Path()); got != p {
			t.Errorf("plainPath(%q) = true, but the handler routes on %q", p, got)
		}
	}
	for _, p := range []string{"/", "/lottery", "/lottery/", "/lottery/draw", "/a.b/c", "/lottery/..", "/lottery/.", "/./x",
		"//x", "/%2e%2e/x", "/x#y", "/x\\..\\y", "/lottery/..;/x", "/a/b/../c", "/.hidden", "/x/.y", "/x/..y", "*", "http://h/x"} {
		check(p)
	}
	// and a bounded random walk over the characters that matter
	rng := rand.New(rand.NewSource(1))
	const alphabet = "/./%2e2f5c#\\a;"
	for i := 0; i < 20000; i++ {
		b := make([]byte, 1+rng.Intn(12))
		b[0] = '/'
		for j := 1; j < len(b); j++ {
			b[j] = alphabet[rng.Intn(len(alphabet))]
		}
		check(string(b))
	}
	for _, tc := range []struct {
		p    string
		want bool
	}{{"/lottery", true}, {"/lottery/draw/", true}, {"/a.b", true}, {"/x/..", false}, {"//x", false}, {"/%61", false}, {"/x#", false}, {"x", false}, {"", false}} {
		if got := plainPath([]byte(tc.p)); got != tc.want {
			t.Errorf("plainPath(%q) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

// BenchmarkAmbiguousHead is the guard's cost on a typical browser-like head.
func BenchmarkAmbiguousHead(b *testing.B) {
	h, ok := parseHead(b, "POST /lottery/draw?uin=12345 HTTP/1.1\r\nHost: act.example.com\r\nUser-Agent: Mozilla/5.0 (Linux; Android 14) Mobile\r\n"+
		"Accept: application/json\r\nAccept-Language: zh-CN,zh;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nContent-Type: application/json\r\n"+
		"Content-Length: 27\r\nCookie: uin=o12345; skey=@abcdefgh\r\nX-Requested-With: XMLHttpRequest\r\nReferer: https://act.example.com/lottery\r\n\r\n")
	if !ok {
		b.Fatal("head does not parse")
	}
	raw := h.RawHeaders()
	b.ReportAllocs()
	for b.Loop() {
		if ambiguousHead(raw) {
			b.Fatal("flagged")
		}
	}
}

// TestGuardRefusesUnfollowedConnections: a connection that did not come through the
// strict listener (so no framer follows its bytes) is refused, not served unchecked;
// the same request on a strict connection is served.
func TestGuardRefusesUnfollowedConnections(t *testing.T) {
	r := newRig(t, baseConfig)
	r.upstream("q1:1", echoUpstream)
	for _, tc := range []struct {
		desc   string
		strict bool
		want   int
	}{
		{"through the strict listener", true, 200},
		{"a bare connection", false, 400},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			var c net.Conn = server
			if tc.strict {
				c = &strictConn{Conn: server}
			}
			go r.gw.server.ServeConn(c)
			client.SetDeadline(time.Now().Add(itest.MinWait))
			if _, err := client.Write([]byte("GET /lottery HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			var resp fasthttp.Response
			if err := resp.Read(bufio.NewReader(client)); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode(), tc.want)
			}
		})
	}
}
