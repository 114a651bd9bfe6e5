package gateway

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// forwarded reads raw as the server does, routes it (parses the URI), runs forwardTarget
// and returns the request line and Host the upstream gets, written as the pipelined
// client writes it (req.Write) and as the HostClient does (it parses the URI again and
// sets DisablePathNormalizing from its own setting, true in pool.go).
func forwarded(t *testing.T, raw string) (pipelined, hostClient string) {
	t.Helper()
	write := func(hc bool) string {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatalf("fasthttp does not read %q: %v", raw, err)
		}
		req.URI() // routing
		forwardTarget(&req)
		if hc {
			req.URI().DisablePathNormalizing = true
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if err := req.Write(w); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		line, rest, _ := strings.Cut(out.String(), "\r\n")
		host := ""
		for _, l := range strings.Split(rest, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Host: "); ok {
				host = v
			}
		}
		return line + " | Host: " + host
	}
	return write(false), write(true)
}

func TestForwardTarget(t *testing.T) {
	for _, tc := range []struct{ desc, raw, want string }{
		{"plain path and query, as sent", "GET /a/b?x=%7E&k=a;b HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /a/b?x=%7E&k=a;b HTTP/1.1 | Host: gw"},
		{"sub-delimiters, : and @ stay raw (fasthttp escaped !'()*)", "GET /p/a:b@c!$'()*,;=~ HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /p/a:b@c!$'()*,;=~ HTTP/1.1 | Host: gw"},
		{"the Host header as sent (fasthttp lower-cased it)", "GET / HTTP/1.1\r\nHost: GW.Test:8080\r\n\r\n", "GET / HTTP/1.1 | Host: GW.Test:8080"},
		{"OPTIONS * (fasthttp wrote /%2A)", "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n", "OPTIONS * HTTP/1.1 | Host: gw"},
		{"an escape of an unreserved character: the routed form", "GET /p/%41%7e HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /p/A~ HTTP/1.1 | Host: gw"},
		{"an encoded sub-delimiter: the routed form", "GET /p/%21 HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /p/! HTTP/1.1 | Host: gw"},
		{"dot segments, //, %2F: the routed form", "GET /a/./b/../c//d%2Fe?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /a/c/d/e?q=1 HTTP/1.1 | Host: gw"},
		{"what a path cannot hold raw stays escaped", "GET /p/%25%3F%23%20%22%5C HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /p/%25%3F%23%20%22%5C HTTP/1.1 | Host: gw"},
		{"lower-case escapes of such bytes: upper case", "GET /p/%3f HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /p/%3F HTTP/1.1 | Host: gw"},
		{"raw UTF-8 gets escaped", "GET /p/\xe4\xb8\xad HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /p/%E4%B8%AD HTTP/1.1 | Host: gw"},
		{"absolute form: origin form, the authority as Host", "GET http://GW.test/a?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", "GET /a?x=1 HTTP/1.1 | Host: gw.test"},
		{"a fragment is dropped, the query kept", "GET /a?x=%7E#f HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /a?x=%7E HTTP/1.1 | Host: gw"},
		{"a rebuilt target keeps the query as sent", "GET /a/../b?x=%7e+y;z HTTP/1.1\r\nHost: gw\r\n\r\n", "GET /b?x=%7e+y;z HTTP/1.1 | Host: gw"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p, hc := forwarded(t, tc.raw)
			if p != tc.want || hc != tc.want {
				t.Errorf("sent %q\n got %q (pipelined)\n got %q (HostClient)\nwant %q", tc.raw, p, hc, tc.want)
			}
		})
	}
}

// TestQuotedAs: quotedAs(raw, path) is exactly raw == appendPathQuoted(path).
func TestQuotedAs(t *testing.T) {
	paths := []string{"", "/", "/a", "/a b", "/%", "/é", "/a!b", "/?", "/\x00", "/\x7f", "/~"}
	raws := []string{"", "/", "/a", "/a%20b", "/a b", "/%25", "/%", "/%C3%A9", "/é", "/a!b", "/a%21b", "/%3F", "/%3f", "/%00", "/%7F", "/~", "/%7E", "/a%2"}
	for _, p := range paths {
		for _, r := range raws {
			want := string(appendPathQuoted(nil, []byte(p))) == r
			if got := quotedAs([]byte(r), []byte(p)); got != want {
				t.Errorf("quotedAs(%q, %q) = %v, want %v", r, p, got, want)
			}
		}
	}
}

// TestCleanResponseKeepsTheAnswer: what fasthttp's client reading and server writing
// would change in an upstream's answer is undone (the corpus testdata/fidelity/
// responses.txt checks the same on the real binary).
func TestCleanResponseKeepsTheAnswer(t *testing.T) {
	for _, tc := range []struct{ desc, raw, want, absent string }{
		{"no Content-Type stays without one", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\n", "Content-Type"},
		{"an HTTP/1.0 answer goes on as HTTP/1.1", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\n", "HTTP/1.0"},
		{"a reason phrase stays", "HTTP/1.0 299 Custom\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 299 Custom\r\n", ""},
		{"trailer fields do not become headers", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 3\r\n\r\n", "\r\n\r\nok", "X-Sum"},
		{"a trailer field with a name longer than 256 bytes is dropped too", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-" + strings.Repeat("n", 300) + ": v\r\nX-Sum: 3\r\n\r\n", "\r\n\r\nok", "X-Nnn"},
		{"a head field of a trailer field's name keeps its value", "HTTP/1.1 200 OK\r\nX-Sum: head\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 3\r\nX-Other: o\r\n\r\n", "X-Sum: head\r\n", "X-Other"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var resp fasthttp.Response
			wire := cleaned(t, tc.raw, resp.Read, func() { cleanResponse(&resp.Header) }, resp.Write)
			if !strings.Contains(wire, tc.want) || (tc.absent != "" && strings.Contains(wire, tc.absent)) {
				t.Errorf("upstream %q\nclient %q\nwant %q in it and no %q", tc.raw, wire, tc.want, tc.absent)
			}
			if strings.Count(wire, "X-Sum: ") > 1 || strings.Contains(wire, "X-Sum: 3") {
				t.Errorf("a trailer value reached the head: %q", wire)
			}
		})
	}
}
