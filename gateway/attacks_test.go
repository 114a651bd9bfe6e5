package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// rawUpstream is an upstream that records the exact bytes it receives on every
// connection and answers each request it can frame with a fixed 200. Nothing between
// the gateway and the recording repairs or normalises anything.
type rawUpstream struct {
	ln net.Listener
	mu sync.Mutex
	// bytes received, all connections, in arrival order per connection; cases run one
	// at a time, so what arrived during a case belongs to it
	streams []*bytes.Buffer
}

func newRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := &bytes.Buffer{}
			u.mu.Lock()
			u.streams = append(u.streams, buf)
			u.mu.Unlock()
			go u.serve(c, buf)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// serve answers every request a lenient reader frames on c (the gateway re-frames every
// body with Content-Length, so this is enough to keep it going); the strict judgement is
// made afterwards on the recorded bytes.
func (u *rawUpstream) serve(c net.Conn, rec *bytes.Buffer) {
	defer c.Close()
	br := bufio.NewReader(io.TeeReader(c, lockedWriter{&u.mu, rec}))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		answer := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nupstream ok\n"
		if req.Method == "HEAD" {
			answer = strings.TrimSuffix(answer, "upstream ok\n") // an answer to HEAD has no body
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
	}
}

// snapshot returns the total bytes recorded on each connection so far.
func (u *rawUpstream) snapshot() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := make([]int, len(u.streams))
	for i, s := range u.streams {
		n[i] = s.Len()
	}
	return n
}

// since returns the bytes recorded after snapshot before.
func (u *rawUpstream) since(before []int) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []byte
	for i, s := range u.streams {
		from := 0
		if i < len(before) {
			from = before[i]
		}
		out = append(out, s.Bytes()[from:]...)
	}
	return out
}

type attackCase struct {
	file, desc, gateway string
	send                []byte
	expect              string
	upstream            []string
	line                int
}

func loadAttackCorpus(t *testing.T, pattern string) []attackCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(itest.ModuleRoot(), pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no attack corpus at %s (%v)", pattern, err)
	}
	var cases []attackCase
	for _, f := range files {
		var cur *attackCase
		corpusEntries(t, f, func(where string, line int, key, val string) {
			if key == "case" {
				cases = append(cases, attackCase{file: filepath.Base(f), desc: val, gateway: "plain", line: line})
				cur = &cases[len(cases)-1]
				return
			}
			if cur == nil {
				t.Fatalf("%s: %s before the first case:", where, key)
			}
			switch key {
			case "gateway":
				cur.gateway = val
			case "send":
				s, err := strconv.Unquote(val)
				if err != nil {
					t.Fatalf("%s: send: not a Go string literal: %v", where, err)
				}
				cur.send = []byte(s)
			case "expect":
				if val != "forward" && val != "reject" {
					t.Fatalf("%s: expect: want forward or reject, got %q", where, val)
				}
				cur.expect = val
			case "upstream":
				cur.upstream = append(cur.upstream, val)
			default:
				t.Fatalf("%s: unknown key %q", where, key)
			}
		})
	}
	for _, c := range cases {
		if c.send == nil || c.expect == "" {
			t.Fatalf("%s:%d %s: a case needs send and expect", c.file, c.line, c.desc)
		}
	}
	return cases
}

// corpusEntries reads a corpus file of "key: value" lines (blank lines and "#" comments
// skipped; the attack and the fidelity corpora) and calls each with the place of the
// line ("file:line"), its line number, key and trimmed value.
func corpusEntries(t *testing.T, path string, each func(where string, line int, key, val string)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", filepath.Base(path), i+1)
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s: not key: value: %q", where, line)
		}
		each(where, i+1, key, strings.TrimSpace(val))
	}
}

// forbiddenUpstream are the names (lower case, "_" and "." read as "-") no forwarded
// request may carry: framing (the gateway sets Content-Length itself, checked apart),
// hop-by-hop, proxy and client-address headers other than the gateway's own.
var forbiddenUpstream = map[string]bool{
	"transfer-encoding": true, "connection": true, "keep-alive": true, "te": true, "trailer": true,
	"upgrade": true, "proxy": true, "http2-settings": true, "forwarded": true, "true-client-ip": true,
	"x-client-ip": true, "x-cluster-client-ip": true, "proxy-connection": true, "proxy-authorization": true,
}

func normName(n string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(n))
}

// strictRead parses b as exactly one HTTP/1.1 request the way a strict reader does:
// CRLF line ends only, token field names, no folding, one Content-Length and a body of
// exactly that length, nothing after it. It returns the fields (name as sent -> values)
// and the body.
func strictRead(b []byte) (fields map[string][]string, body []byte, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, nil, fmt.Errorf("no end of head")
	}
	head, rest := b[:end], b[end+4:]
	lines := bytes.Split(head, []byte("\r\n"))
	if !bytes.HasSuffix(lines[0], []byte(" HTTP/1.1")) {
		return nil, nil, fmt.Errorf("request line %q", lines[0])
	}
	fields = map[string][]string{}
	for _, l := range lines[1:] {
		if bytes.ContainsAny(l, "\r\n") {
			return nil, nil, fmt.Errorf("bare CR or LF in %q", l)
		}
		name, val, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || !isToken(name) {
			return nil, nil, fmt.Errorf("bad field line %q", l)
		}
		fields[string(name)] = append(fields[string(name)], string(bytes.Trim(val, " \t")))
	}
	n := 0
	for name, vs := range fields {
		if normName(name) == "content-length" {
			if name != "Content-Length" || len(vs) != 1 || n > 0 {
				return nil, nil, fmt.Errorf("Content-Length sent as %q %v", name, vs)
			}
			if n, err = strconv.Atoi(vs[0]); err != nil || n < 0 {
				return nil, nil, fmt.Errorf("Content-Length %q", vs[0])
			}
		}
	}
	if len(rest) != n {
		return nil, nil, fmt.Errorf("body of %d bytes after a head saying %d (a second message or a short one): %q", len(rest), n, rest)
	}
	return fields, rest, nil
}

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// TestAttackCorpus runs testdata/attacks/http/*.txt against the real binary with a raw
// recording upstream. A rejected case must get 400 with an edge/ verdict, a closed
// connection and 0 bytes upstream; a forwarded case must reach the upstream as exactly
// one request that a strict reader reads as the gateway meant it: no framing, hop-by-hop,
// proxy or client-address field (or a look-alike spelling of one), one X-Forwarded-For
// and one X-Real-IP, and the case's own upstream: checks.
func TestAttackCorpus(t *testing.T) {
	itest.RequireIntegration(t)
	cases := loadAttackCorpus(t, "testdata/attacks/http/*.txt")
	up := newRawUpstream(t)
	const cfg = `
server: {listen: "{{LISTEN}}", read_timeout: 2s, read_buffer_size: 4KiB, max_request_body: 64KiB%s}
admin: {listen: "{{ADMIN}}"}
pools:
  up: {addrs: ["%s"], max_conns: 4}
routes:
  lottery: {path: /lottery, pool: up, timeout: 2s}
`
	gws := map[string]*itest.Gateway{
		"plain":   itest.StartGateway(t, fmt.Sprintf(cfg, "", up.ln.Addr())),
		"trusted": itest.StartGateway(t, fmt.Sprintf(cfg, ", trusted_proxies: [127.0.0.0/8]", up.ln.Addr())),
	}
	bad := 0
	for _, tc := range cases {
		name := fmt.Sprintf("%s:%d %s", tc.file, tc.line, tc.desc)
		g := gws[tc.gateway]
		if g == nil {
			t.Fatalf("%s: unknown gateway %q", name, tc.gateway)
		}
		before := up.snapshot()
		var res rawResult
		if tc.expect == "reject" {
			res = rawExchange(g.Addr, tc.send, 10*time.Second) // the gateway closes at once
		} else {
			res = firstAnswer(g.Addr, tc.send, 10*time.Second)
		}
		// the gateway answers after the upstream did, so the upstream's bytes are in
		got := up.since(before)
		fail := func(format string, args ...any) {
			bad++
			t.Errorf("%s: "+format, append([]any{name}, args...)...)
		}
		switch tc.expect {
		case "reject":
			if res.err != nil || res.status != 400 || !res.closed || !strings.HasPrefix(res.verdict, "edge/") {
				fail("%v; want 400 with an edge/ verdict and the connection closed", res)
			}
			if len(got) != 0 {
				fail("%d bytes reached the upstream: %q", len(got), got)
			}
		case "forward":
			if res.err != nil || res.status != 200 || res.verdict != "" {
				fail("%v; want the upstream's 200", res)
				continue
			}
			fields, body, err := strictRead(got)
			if err != nil {
				fail("the upstream got bytes a strict reader reads differently: %v\n%q", err, got)
				continue
			}
			seen := map[string]int{}
			for n, vs := range fields {
				nn := normName(n)
				seen[nn] += len(vs)
				if forbiddenUpstream[nn] || strings.HasPrefix(nn, "proxy-") {
					fail("the upstream got %s: %v", n, vs)
				}
				if (nn == "x-forwarded-for" || nn == "x-real-ip" || nn == "host") && n != http.CanonicalHeaderKey(nn) && n != "X-Real-IP" {
					fail("the upstream got a look-alike %s: %v", n, vs)
				}
			}
			for _, h := range []string{"x-forwarded-for", "x-real-ip", "host"} {
				if seen[h] != 1 {
					fail("the upstream got %d lines of %s, want exactly 1\n%q", seen[h], h, got)
				}
			}
			for _, check := range tc.upstream {
				switch {
				case strings.HasPrefix(check, "absent "):
					h := strings.TrimPrefix(check, "absent ")
					for n, vs := range fields {
						if strings.EqualFold(n, h) {
							fail("the upstream got %s: %v, want none", n, vs)
						}
					}
				case strings.HasPrefix(check, "body = "):
					if want := strings.TrimPrefix(check, "body = "); string(body) != want {
						fail("the upstream got body %q, want %q", body, want)
					}
				default:
					h, want, ok := strings.Cut(check, "=")
					if !ok {
						t.Fatalf("%s: bad upstream check %q", name, check)
					}
					h, want = strings.TrimSpace(h), strings.TrimSpace(want)
					var vs []string
					for n, v := range fields {
						if strings.EqualFold(n, h) {
							vs = append(vs, v...)
						}
					}
					if len(vs) != 1 || vs[0] != want {
						fail("the upstream got %s %q, want exactly one line %q", h, vs, want)
					}
				}
			}
		}
		t.Logf("%-80s %v", name, res)
	}
	t.Logf("attack corpus: %d cases, %d failed checks", len(cases), bad)
}

// firstAnswer writes payload and reads one answer (the connection stays open).
func firstAnswer(addr string, payload []byte, wait time.Duration) rawResult {
	start := time.Now()
	c, err := net.DialTimeout("tcp4", addr, wait)
	if err != nil {
		return rawResult{err: err}
	}
	defer c.Close()
	c.SetDeadline(start.Add(wait))
	c.Write(payload)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return rawResult{err: err, elapsed: time.Since(start)}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return rawResult{status: resp.StatusCode, verdict: resp.Header.Get("X-Floodgate-Verdict"), body: string(body), elapsed: time.Since(start)}
}
