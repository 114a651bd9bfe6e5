package gateway

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRequestGuard feeds arbitrary bytes to the request guard's parts: the strict framer
// (framing.go), the head checks (ambiguousHead, lookAlikeName) and the trailer dropping.
// Properties: nothing panics; and the framer agrees with a strict writer - whatever
// request fasthttp reads from the bytes, written out again by fasthttp (always strict:
// CRLF, Content-Length or strict chunks), is framed by the framer as exactly one message,
// without a violation, and its request line (the target as forwardTarget leaves it) is
// three tokens. The seed corpus is the attack corpus (testdata/attacks/http).
func FuzzRequestGuard(f *testing.F) {
	files, _ := filepath.Glob("../testdata/attacks/http/*.txt")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "send: "); ok {
				if s, err := strconv.Unquote(v); err == nil {
					f.Add([]byte(s))
				}
			}
		}
	}
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fr framer
		fr.feed(raw)

		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		h := &req.Header
		ambiguousHead(h.RawHeaders())
		lookAlikeName(h.RawHeaders())
		if !dropTrailers(h) {
			return
		}
		if len(h.TrailerHeader()) > 2 {
			t.Fatalf("trailer fields left after dropTrailers: %q", h.TrailerHeader())
		}
		if len(h.Host()) > 0 {
			forwardTarget(&req) // as the gateway does before forwarding a routed request
		}
		cleanRequest(h)
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if err := req.Write(w); err != nil {
			return
		}
		w.Flush()
		if line, _, _ := bytes.Cut(out.Bytes(), []byte("\r\n")); bytes.Count(line, []byte(" ")) != 2 {
			t.Fatalf("the request line written upstream is not method, target, version: %q", line)
		}
		var strict framer
		strict.feed(out.Bytes())
		if strict.bad != 0 {
			t.Fatalf("the framer refuses what fasthttp writes: %q", out.Bytes())
		}
		if strict.msg != 2 || strict.state != fHeadLine || strict.lineLen != 0 {
			t.Fatalf("the framer reads %d message(s) (state %d) in what fasthttp writes as one: %q", strict.msg-1, strict.state, out.Bytes())
		}
	})
}
