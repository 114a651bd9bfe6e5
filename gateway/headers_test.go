package gateway

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestCleanHeadersStripEverySpelling: whatever the case, with a value or empty, once or
// twice, every name the gateway strips is gone from what it writes upstream (request)
// or back to the client (response), and the other headers stay.
func TestCleanHeadersStripEverySpelling(t *testing.T) {
	stripped := append(append([][]byte{connName}, stripAlways...), requestIfPresent...)
	spellings := func(name string) []string {
		return []string{name, strings.ToLower(name), strings.ToUpper(name)}
	}
	for _, n := range stripped {
		name := string(n)
		for _, sp := range spellings(name) {
			for _, value := range []string{"x", ""} {
				desc := sp + ": " + value
				t.Run("request "+desc, func(t *testing.T) {
					var req fasthttp.Request
					wire := cleaned(t, "GET /x HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\n"+sp+": "+value+"\r\n"+sp+": "+value+"\r\n\r\n",
						req.Read, func() { cleanRequest(&req.Header) }, req.Write)
					checkStripped(t, wire, name, n)
				})
				if requestOnly(n) {
					continue
				}
				t.Run("response "+desc, func(t *testing.T) {
					var resp fasthttp.Response
					wire := cleaned(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Keep: 1\r\n"+sp+": "+value+"\r\n"+sp+": "+value+"\r\n\r\nok",
						resp.Read, func() { cleanResponse(&resp.Header) }, resp.Write)
					checkStripped(t, wire, name, n)
				})
			}
		}
	}
}

// cleaned reads raw with read (skipping a message fasthttp refuses), cleans it and
// returns what write puts on the wire.
func cleaned(t *testing.T, raw string, read func(*bufio.Reader) error, clean func(), write func(*bufio.Writer) error) string {
	t.Helper()
	if err := read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Skipf("fasthttp does not read it: %v", err)
	}
	clean()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return out.String()
}

// requestOnly: a name stripped from requests only.
func requestOnly(n []byte) bool {
	for _, r := range requestIfPresent[len(responseIfPresent):] {
		if bytes.Equal(n, r) {
			return true
		}
	}
	return false
}

func checkStripped(t *testing.T, wire, name string, n []byte) {
	t.Helper()
	head, _, _ := strings.Cut(wire, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, _, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			// what the gateway writes itself is not the client's: Connection: keep-alive
			// and close are fasthttp's own, a chunked body's framing is re-made
			if bytes.Equal(n, connName) || bytes.Equal(n, stripAlways[0]) {
				continue
			}
			t.Errorf("%q still in what is written:\n%s", name, head)
		}
	}
	if !strings.Contains(head, "X-Keep: 1") {
		t.Errorf("X-Keep was stripped too:\n%s", head)
	}
}
