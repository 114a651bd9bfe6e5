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
					raw := "GET /x HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\n" + sp + ": " + value + "\r\n" + sp + ": " + value + "\r\n\r\n"
					var req fasthttp.Request
					if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
						t.Skipf("fasthttp does not read it: %v", err)
					}
					cleanRequest(&req.Header)
					var out bytes.Buffer
					w := bufio.NewWriter(&out)
					if err := req.Write(w); err != nil {
						t.Fatal(err)
					}
					w.Flush()
					checkStripped(t, out.String(), name, n)
				})
				if requestOnly(n) {
					continue
				}
				t.Run("response "+desc, func(t *testing.T) {
					raw := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Keep: 1\r\n" + sp + ": " + value + "\r\n" + sp + ": " + value + "\r\n\r\nok"
					var resp fasthttp.Response
					if err := resp.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
						t.Skipf("fasthttp does not read it: %v", err)
					}
					cleanResponse(&resp.Header)
					var out bytes.Buffer
					w := bufio.NewWriter(&out)
					if err := resp.Write(w); err != nil {
						t.Fatal(err)
					}
					w.Flush()
					checkStripped(t, out.String(), name, n)
				})
			}
		}
	}
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
