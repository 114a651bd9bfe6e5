package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// The fidelity corpus (testdata/fidelity/*.txt) is a differential test of what the
// gateway changes in what it forwards. Every request case is sent to the real binary;
// what the upstream receives is compared with what the client sent after applying only
// the changes README.md documents ("What a request goes through"): hop-by-hop, proxy and
// client-address headers stripped, X-Forwarded-For and X-Real-IP set, header names in
// canonical case, the spaces around values trimmed, HTTP/1.1 as the version, a chunked
// body re-framed with Content-Length. Every response case is answered by a raw upstream;
// what the client receives is compared with what the upstream answered the same way.
// Anything else that differs is reported. A case states a further documented change
// with line:, header:, absent: or body: (and why:).

// fidelityCase is one case of testdata/fidelity/requests.txt or responses.txt.
type fidelityCase struct {
	file, desc string
	line       int
	send       string   // requests: the bytes the client sends ({P}: the route's prefix)
	answer     string   // responses: the bytes the upstream answers
	method     string   // responses: the client's method (GET)
	wantLine   string   // the request or status line the other side must get ("": derived)
	headers    []string // "Name: value": the expected values of Name, replacing the derived ones
	absent     []string // names the other side must not get
	body       *string  // the expected body (nil: derived)
	why        string
	close      bool // responses: the upstream closes the connection after answering
}

func loadFidelityCorpus(t *testing.T, name string) []fidelityCase {
	t.Helper()
	var cases []fidelityCase
	var cur *fidelityCase
	corpusEntries(t, filepath.Join(itest.ModuleRoot(), "testdata", "fidelity", name), func(where string, line int, key, val string) {
		if key == "case" {
			cases = append(cases, fidelityCase{file: name, desc: val, line: line, method: "GET"})
			cur = &cases[len(cases)-1]
			return
		}
		if cur == nil {
			t.Fatalf("%s: %s before the first case:", where, key)
		}
		unquote := func() string {
			s, err := strconv.Unquote(val)
			if err != nil {
				t.Fatalf("%s: %s: not a Go string literal: %v", where, key, err)
			}
			return expandRepeats(s)
		}
		switch key {
		case "send":
			cur.send = unquote()
		case "answer":
			cur.answer = unquote()
		case "method":
			cur.method = val
		case "line":
			cur.wantLine = val
		case "header":
			if !strings.Contains(val, ":") {
				t.Fatalf("%s: header: want Name: value, got %q", where, val)
			}
			cur.headers = append(cur.headers, val)
		case "absent":
			cur.absent = append(cur.absent, val)
		case "body":
			s := unquote()
			cur.body = &s
		case "why":
			cur.why = val
		case "close":
			cur.close = val == "yes"
		default:
			t.Fatalf("%s: unknown key %q", where, key)
		}
	})
	for _, c := range cases {
		if c.send == "" && c.answer == "" {
			t.Fatalf("%s:%d %s: a case needs send or answer", c.file, c.line, c.desc)
		}
		if (c.wantLine != "" || len(c.headers) > 0 || len(c.absent) > 0 || c.body != nil) && c.why == "" {
			t.Fatalf("%s:%d %s: a case that expects a change says why (the README bullet)", c.file, c.line, c.desc)
		}
	}
	return cases
}

// repeatRE is "{REPEAT n text}" in a case's bytes: text n times (innermost first; text
// holds no braces), so that large bodies and heads stay short in the corpus.
var repeatRE = regexp.MustCompile(`\{REPEAT (\d+) ([^{}]*)\}`)

func expandRepeats(s string) string {
	for repeatRE.MatchString(s) {
		s = repeatRE.ReplaceAllStringFunc(s, func(m string) string {
			sub := repeatRE.FindStringSubmatch(m)
			n, _ := strconv.Atoi(sub[1])
			return strings.Repeat(sub[2], n)
		})
	}
	return s
}

// field is one header line: the name as written and the value without surrounding
// whitespace.
type field struct{ name, value string }

// message is an HTTP/1.1 message read strictly: CRLF line ends, one message.
type message struct {
	line   string
	fields []field
	body   []byte
}

// readMessage reads one message from br strictly. noBody: the message has no body
// whatever its head says (a HEAD answer, 1xx, 204, 304); toEOF: without Content-Length
// or chunked the body runs to the end of the stream (a response).
func readMessage(br *bufio.Reader, noBody, toEOF bool) (*message, error) {
	m := &message{}
	cl, chunked := -1, false
	for first := true; ; first = false {
		l, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("head ends early (%v) after %q", err, l)
		}
		if !strings.HasSuffix(l, "\r\n") {
			return nil, fmt.Errorf("bare LF in %q", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		if first {
			m.line = l
			continue
		}
		if l == "" {
			break
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok || name == "" || !isToken([]byte(name)) {
			return nil, fmt.Errorf("bad field line %q", l)
		}
		f := field{name, strings.Trim(val, " \t")}
		m.fields = append(m.fields, f)
		switch strings.ToLower(name) {
		case "content-length":
			if cl >= 0 {
				return nil, fmt.Errorf("two Content-Length lines")
			}
			if cl, err = strconv.Atoi(f.value); err != nil || cl < 0 {
				return nil, fmt.Errorf("Content-Length %q", f.value)
			}
		case "transfer-encoding":
			chunked = strings.EqualFold(f.value, "chunked")
		}
	}
	switch {
	case noBody:
	case chunked:
		b, err := readChunked(br)
		if err != nil {
			return nil, err
		}
		m.body = b
	case cl >= 0:
		m.body = make([]byte, cl)
		if _, err := io.ReadFull(br, m.body); err != nil {
			return nil, fmt.Errorf("body of %d bytes: %v", cl, err)
		}
	case toEOF:
		b, err := io.ReadAll(br)
		if err != nil {
			return nil, err
		}
		m.body = b
	}
	return m, nil
}

// readChunked decodes a chunked body and skips its trailer section.
func readChunked(br *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("chunk size: %v", err)
		}
		size, _, _ := strings.Cut(strings.TrimSuffix(l, "\r\n"), ";")
		n, err := strconv.ParseInt(size, 16, 32)
		if err != nil {
			return nil, fmt.Errorf("chunk size %q", l)
		}
		if n == 0 {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return nil, err
				}
				if l == "\r\n" {
					return body, nil
				}
			}
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return nil, err
		}
		body = append(body, chunk[:n]...)
	}
}

// hopByHop reports the names the gateway strips from every message (README: "Stripped
// from requests"; responses lose the hop-by-hop ones), lower case.
func hopByHop(name string, request bool) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade":
		return true
	case "proxy", "http2-settings", "forwarded", "true-client-ip", "x-client-ip", "x-cluster-client-ip",
		"x-forwarded-for", "x-real-ip":
		return request
	}
	return strings.HasPrefix(name, "proxy-")
}

// expectFields applies the documented changes to the fields sent: the stripped names go
// (with every name a Connection line lists), the rest keep their order. Names are
// compared in canonical case.
func expectFields(sent []field, request bool) []field {
	named := map[string]bool{}
	for _, f := range sent {
		if strings.EqualFold(f.name, "connection") {
			for _, tok := range strings.Split(f.value, ",") {
				named[strings.ToLower(strings.TrimSpace(tok))] = true
			}
		}
	}
	var out []field
	for _, f := range sent {
		n := strings.ToLower(f.name)
		if hopByHop(n, request) || named[n] {
			continue
		}
		out = append(out, field{textproto.CanonicalMIMEHeaderKey(f.name), f.value})
	}
	return out
}

// override applies a case's header: and absent: lines to the expected fields.
func (c *fidelityCase) override(want []field) []field {
	replaced := map[string]bool{}
	for _, h := range c.headers {
		n, _, _ := strings.Cut(h, ":")
		replaced[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(n))] = true
	}
	for _, a := range c.absent {
		replaced[textproto.CanonicalMIMEHeaderKey(a)] = true
	}
	var out []field
	for _, f := range want {
		if !replaced[f.name] {
			out = append(out, f)
		}
	}
	for _, h := range c.headers {
		n, v, _ := strings.Cut(h, ":")
		out = append(out, field{textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(n)), strings.TrimSpace(v)})
	}
	return out
}

// diffFields compares the fields as an ordered multiset: the same names, each name's
// values in the same order (fields of different names may be reordered; RFC 9110 5.3).
// The names received must be in canonical case. ignore lists names not compared
// (canonical case).
func diffFields(want, got []field, ignore ...string) []string {
	group := func(fs []field, check bool) (map[string][]string, []string) {
		m := map[string][]string{}
		var probs []string
		for _, f := range fs {
			k := textproto.CanonicalMIMEHeaderKey(f.name)
			if check && f.name != k {
				probs = append(probs, fmt.Sprintf("name %q not in canonical case", f.name))
			}
			m[k] = append(m[k], f.value)
		}
		for _, n := range ignore {
			delete(m, n)
		}
		return m, probs
	}
	w, _ := group(want, false)
	g, probs := group(got, true)
	var names []string
	for n := range w {
		names = append(names, n)
	}
	for n := range g {
		if _, ok := w[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.Join(w[n], "\x00") != strings.Join(g[n], "\x00") || len(w[n]) != len(g[n]) {
			probs = append(probs, fmt.Sprintf("%s: want %q, got %q", n, w[n], g[n]))
		}
	}
	return probs
}

// TestFidelityCorpus runs testdata/fidelity/requests.txt and responses.txt against the
// real binary: three routes (a plain pool; a plain pool with every built-in filter
// reading a query, cookie and header key; a pipelined pool with filters) for the
// requests, a plain and a pipelined pool for the responses.
func TestFidelityCorpus(t *testing.T) {
	itest.RequireIntegration(t)
	reqCases := loadFidelityCorpus(t, "requests.txt")
	respCases := loadFidelityCorpus(t, "responses.txt")
	up := newRawUpstream(t)
	answers := newAnswerUpstream(t, respCases)
	g := itest.StartGateway(t, fmt.Sprintf(`
server: {listen: "{{LISTEN}}", read_timeout: 5s, read_buffer_size: 8KiB}
admin: {listen: "{{ADMIN}}"}
pools:
  piped: {addrs: ["%[1]s"], max_conns: 4, pipeline: {enabled: true}}
  plain: {addrs: ["%[1]s"], max_conns: 4}
  hosted: {addrs: ["%[1]s"], max_conns: 4, host_header: upstream.internal}
  answers: {addrs: ["%[2]s"], max_conns: 4}
  answers_piped: {addrs: ["%[2]s"], max_conns: 4, pipeline: {enabled: true}}
routes:
  root: {path: /, pool: plain, timeout: 5s}
  bare: {path: /bare, pool: plain, timeout: 5s}
  keyed: # filters reading a query, a cookie and a header key
    path: /keyed
    pool: plain
    timeout: 5s
    core: false
    filters:
      acl: {deny_query_params: [debug]}
      promo_throttle:
        source: header:X-Tag
        default_tier: organic
        tiers: {organic: {priority: 100, rate: 100000}}
      sample: {ratio: 1, key: "cookie:uin"}
      token_bucket: {key: "query:uin", rate: 100000}
  piped:
    path: /piped
    pool: piped
    timeout: 5s
    core: false
    filters:
      sample: {ratio: 1, key: "query:uin"}
      token_bucket: {key: "header:X-Tag", rate: 100000}
  hosted: {path: /hosted, pool: hosted, timeout: 5s}
  answers: {path: /answer, pool: answers, timeout: 5s}
  answers_piped: {path: /panswer, pool: answers_piped, timeout: 5s}
`, up.ln.Addr(), answers.ln.Addr()))

	start := time.Now()
	runs, bad := 0, 0
	// every case on a connection of its own, then all on one connection per route
	// (keep-alive: what a request leaves in the gateway's per-connection state - fasthttp
	// reuses one RequestCtx - must not change the next one)
	for _, keep := range []bool{false, true} {
		mode := "own connection"
		if keep {
			mode = "one connection"
		}
		clients := map[string]*fidelityClient{}
		client := func(key string) *fidelityClient {
			if clients[key] == nil {
				clients[key] = &fidelityClient{addr: g.Addr, keep: keep}
			}
			return clients[key]
		}
		for _, tc := range reqCases {
			prefixes := []string{""}
			if strings.Contains(tc.send, "{P}") {
				prefixes = []string{"/bare", "/keyed", "/piped"}
			}
			if keep && (strings.Contains(tc.send, " HTTP/1.0\r\n") || strings.Contains(strings.ToLower(tc.send), "connection: close")) {
				continue // the gateway closes after it
			}
			for _, p := range prefixes {
				runs++
				name := fmt.Sprintf("%s:%d %s [%s, %s]", tc.file, tc.line, tc.desc, p, mode)
				if probs := runRequestCase(client(p), up, &tc, p); len(probs) > 0 {
					bad++
					t.Errorf("%s (%s):\n\t%s", name, tc.why, strings.Join(probs, "\n\t"))
				}
			}
		}
		for i, tc := range respCases {
			for _, p := range []string{"/answer", "/panswer"} {
				runs++
				name := fmt.Sprintf("%s:%d %s [%s, %s]", tc.file, tc.line, tc.desc, p, mode)
				if probs := runResponseCase(client(p), &tc, fmt.Sprintf("%s/%d", p, i)); len(probs) > 0 {
					bad++
					t.Errorf("%s (%s):\n\t%s", name, tc.why, strings.Join(probs, "\n\t"))
				}
			}
		}
		for _, cl := range clients {
			cl.close()
		}
	}
	t.Logf("fidelity corpus: %d request and %d response cases, %d runs, %d with differences, in %v",
		len(reqCases), len(respCases), runs, bad, time.Since(start).Round(time.Millisecond))
}

// runRequestCase sends tc with {P} replaced by prefix and compares what the upstream got
// with what was sent.
func runRequestCase(cl *fidelityClient, up *rawUpstream, tc *fidelityCase, prefix string) []string {
	send := strings.ReplaceAll(tc.send, "{P}", prefix)
	sbr := bufio.NewReader(strings.NewReader(send))
	sent, err := readMessage(sbr, false, false)
	if err == nil && sbr.Buffered() > 0 {
		err = fmt.Errorf("%d bytes after the request", sbr.Buffered())
	}
	if err != nil {
		return []string{fmt.Sprintf("the case's own request does not parse: %v", err)}
	}
	method, rest, _ := strings.Cut(sent.line, " ")
	target, _, _ := strings.Cut(rest, " ")
	before := up.snapshot()
	c, br, err := cl.conn()
	if err != nil {
		return []string{err.Error()}
	}
	defer cl.done()
	if _, err := io.WriteString(c, send); err != nil {
		cl.broken()
		return []string{err.Error()}
	}
	resp, err := readFinalAnswer(br, method == "HEAD")
	if err != nil {
		cl.broken()
		return []string{fmt.Sprintf("no answer: %v", err)}
	}
	if cl.keep && strings.EqualFold(header(resp.fields, "Connection"), "close") {
		cl.broken()
		return []string{"the gateway closes the kept connection after this case's answer"}
	}
	if !strings.HasPrefix(resp.line, "HTTP/1.1 200 ") || header(resp.fields, "X-Floodgate-Verdict") != "" {
		return []string{fmt.Sprintf("answer %q verdict %q, want the upstream's 200", resp.line, header(resp.fields, "X-Floodgate-Verdict"))}
	}
	// the gateway answers after the upstream's answer, which came after the request
	got := up.since(before)
	gbr := bufio.NewReader(bytes.NewReader(got))
	m, err := readMessage(gbr, false, false)
	if err != nil {
		return []string{fmt.Sprintf("the upstream's bytes do not read as one request: %v\n%q", err, got)}
	}
	var probs []string
	if gbr.Buffered() > 0 {
		probs = append(probs, fmt.Sprintf("the upstream got more than one request: %q", got))
	}
	wantLine := method + " " + target + " HTTP/1.1"
	if tc.wantLine != "" {
		wantLine = strings.ReplaceAll(tc.wantLine, "{P}", prefix)
	}
	if m.line != wantLine {
		probs = append(probs, fmt.Sprintf("request line: sent %q, want %q, got %q", sent.line, wantLine, m.line))
	}
	want := expectFields(sent.fields, true)
	want = append(want, field{"X-Forwarded-For", "127.0.0.1"}, field{"X-Real-Ip", "127.0.0.1"})
	if header(sent.fields, "Transfer-Encoding") != "" {
		want = append(want, field{"Content-Length", strconv.Itoa(len(sent.body))})
	}
	want = tc.override(want)
	probs = append(probs, diffFields(want, m.fields)...)
	wantBody := string(sent.body)
	if tc.body != nil {
		wantBody = *tc.body
	}
	if string(m.body) != wantBody {
		probs = append(probs, fmt.Sprintf("body: want %q, got %q", wantBody, m.body))
	}
	if len(probs) > 0 {
		probs = append(probs, fmt.Sprintf("sent     %q", send), fmt.Sprintf("upstream %q", got))
	}
	return probs
}

// fidelityClient is the client side of the cases: a connection of its own per case, or
// one kept for all (keep).
type fidelityClient struct {
	addr string
	keep bool
	c    net.Conn
	br   *bufio.Reader
	raw  bytes.Buffer // what the gateway sent since the case began
}

// conn returns the connection for the next case, dialling one when there is none.
func (cl *fidelityClient) conn() (net.Conn, *bufio.Reader, error) {
	cl.raw.Reset()
	if cl.c == nil {
		c, err := net.DialTimeout("tcp4", cl.addr, itest.MinWait)
		if err != nil {
			return nil, nil, err
		}
		cl.c, cl.br = c, bufio.NewReader(io.TeeReader(c, &cl.raw))
	}
	cl.c.SetDeadline(time.Now().Add(itest.MinWait))
	return cl.c, cl.br, nil
}

// done ends a case: the connection goes unless it is kept.
func (cl *fidelityClient) done() {
	if !cl.keep {
		cl.close()
	}
}

// broken drops a connection a case left in an unknown state.
func (cl *fidelityClient) broken() { cl.close() }

func (cl *fidelityClient) close() {
	if cl.c != nil {
		cl.c.Close()
		cl.c, cl.br = nil, nil
	}
}

// readFinalAnswer reads answers until a final one (skipping 1xx interim answers).
func readFinalAnswer(br *bufio.Reader, head bool) (*message, error) {
	for {
		m, err := readMessage(br, head || bodyless(br), true)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(m.line, "HTTP/1.1 1") || strings.HasPrefix(m.line, "HTTP/1.1 101") {
			return m, nil
		}
	}
}

func header(fs []field, name string) string {
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// answerUpstream answers the request for <prefix>/<i> with responses case i's bytes.
type answerUpstream struct {
	ln    net.Listener
	cases []fidelityCase
}

func newAnswerUpstream(t *testing.T, cases []fidelityCase) *answerUpstream {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &answerUpstream{ln: ln, cases: cases}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *answerUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		i, err := strconv.Atoi(req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:])
		if err != nil || i < 0 || i >= len(u.cases) {
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
			continue
		}
		if _, err := io.WriteString(c, u.cases[i].answer); err != nil || u.cases[i].close {
			return
		}
	}
}

// runResponseCase asks for target and compares the answer with the upstream's.
func runResponseCase(cl *fidelityClient, tc *fidelityCase, target string) []string {
	sentBR := bufio.NewReader(strings.NewReader(tc.answer))
	var upAns *message
	var err error
	for {
		// the answer as the upstream wrote it; interim answers are not forwarded (the
		// gateway's client reads past them)
		upAns, err = readMessage(sentBR, tc.method == "HEAD" || bodyless(sentBR), tc.close)
		if err != nil {
			return []string{fmt.Sprintf("the case's own answer does not parse: %v", err)}
		}
		if !strings.HasPrefix(upAns.line, "HTTP/1.1 1") && !strings.HasPrefix(upAns.line, "HTTP/1.0 1") {
			break
		}
	}
	c, br, err := cl.conn()
	if err != nil {
		return []string{err.Error()}
	}
	defer cl.done()
	raw := &cl.raw
	send := tc.method + " " + target + " HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	if _, err := io.WriteString(c, send); err != nil {
		cl.broken()
		return []string{err.Error()}
	}
	m, err := readMessage(br, tc.method == "HEAD" || bodyless(nil, upAns.line), false)
	if err != nil {
		cl.broken()
		return []string{fmt.Sprintf("the client's bytes do not read as an answer: %v\n%q", err, raw.Bytes())}
	}
	var probs []string
	if cl.keep && strings.EqualFold(header(m.fields, "Connection"), "close") {
		cl.broken()
		probs = append(probs, "the gateway closes the kept connection after this answer")
	}
	if v := header(m.fields, "X-Floodgate-Verdict"); v != "" {
		probs = append(probs, "the gateway answered itself: "+v)
	}
	code, reason := statusOf(upAns.line)
	wantLine := "HTTP/1.1 " + code + " " + reason
	if tc.wantLine != "" {
		wantLine = tc.wantLine
	}
	if m.line != wantLine {
		probs = append(probs, fmt.Sprintf("status line: upstream %q, want %q, got %q", upAns.line, wantLine, m.line))
	}
	want := expectFields(upAns.fields, false)
	if header(upAns.fields, "Transfer-Encoding") != "" || (header(upAns.fields, "Content-Length") == "" && !bodyless(nil, upAns.line) && tc.method != "HEAD") {
		want = append(want, field{"Content-Length", strconv.Itoa(len(upAns.body))})
	}
	want = tc.override(want)
	// the gateway's own Date replaces the upstream's (README: "What an answer goes through")
	var dates []string
	for _, f := range m.fields {
		if strings.EqualFold(f.name, "Date") {
			dates = append(dates, f.value)
		}
	}
	if _, err := http.ParseTime(strings.Join(dates, "")); len(dates) != 1 || err != nil {
		probs = append(probs, fmt.Sprintf("want one Date of the gateway's, got %q", dates))
	}
	probs = append(probs, diffFields(want, m.fields, "Date")...)
	wantBody := string(upAns.body)
	if tc.body != nil {
		wantBody = *tc.body
	}
	if string(m.body) != wantBody {
		probs = append(probs, fmt.Sprintf("body: want %q, got %q", wantBody, m.body))
	}
	if len(probs) > 0 {
		probs = append(probs, fmt.Sprintf("upstream %q", tc.answer), fmt.Sprintf("client   %q", raw.Bytes()))
	}
	return probs
}

// bodyless reports a status line of an answer without a body (1xx, 204, 304); with a
// reader, the status line is peeked from it.
func bodyless(br *bufio.Reader, line ...string) bool {
	var l string
	if br != nil {
		b, _ := br.Peek(12)
		l = string(b)
	} else {
		l = line[0]
	}
	code, _ := statusOf(l)
	return strings.HasPrefix(code, "1") || code == "204" || code == "304"
}

func statusOf(line string) (code, reason string) {
	_, rest, _ := strings.Cut(line, " ")
	code, reason, _ = strings.Cut(rest, " ")
	return code, reason
}
