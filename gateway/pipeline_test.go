package gateway

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/gateway/config"
)

// eachUpstreamMode runs f on baseConfig as it is (a connection per request in flight)
// and with every pool pipelining.
func eachUpstreamMode(t *testing.T, f func(t *testing.T, cfg string)) {
	t.Run("connection per request", func(t *testing.T) { f(t, baseConfig) })
	t.Run("pipelined", func(t *testing.T) {
		f(t, regexp.MustCompile(`max_conns: (\d+)`).ReplaceAllString(baseConfig, "max_conns: $1, pipeline: {enabled: true, conns: 2}"))
	})
}

// pipeBackend is a real upstream on 127.0.0.1: /fast* answers its query's n at once,
// /busy* after 1ms, /slow* holds its answer until the test ends; it counts connections
// and POSTs.
type pipeBackend struct {
	addr    string
	conns   atomic.Int32
	posts   atomic.Int32
	slowIn  chan string
	release chan struct{}
	once    sync.Once
}

// free lets the held answers go.
func (b *pipeBackend) free() { b.once.Do(func() { close(b.release) }) }

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startPipeBackend(t *testing.T) *pipeBackend {
	t.Helper()
	b := &pipeBackend{slowIn: make(chan string, 16), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			b.posts.Add(1)
		}
		path := string(ctx.Path())
		if strings.HasPrefix(path, "/busy") {
			time.Sleep(time.Millisecond) // a server that takes a while per request
		}
		if strings.HasPrefix(path, "/slow") {
			b.slowIn <- path
			<-b.release
		}
		ctx.SetBody(ctx.QueryArgs().Peek("n"))
	}}
	go srv.Serve(countingListener{ln, &b.conns})
	t.Cleanup(func() {
		b.free()
		srv.Shutdown()
	})
	return b
}

// startTCPGateway serves cfg (with {{UP}} replaced by the backend's address) on a real
// 127.0.0.1 socket, dialing upstreams over TCP, and returns a client for it.
func startTCPGateway(t *testing.T, cfg, up string) *fasthttp.HostClient {
	t.Helper()
	g := New(Options{})
	doc, err := config.Parse("test.yaml", []byte(strings.ReplaceAll(cfg, "{{UP}}", up)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewUpdater(g, nil).Apply(Update{Source: "test", Doc: doc}); err != nil {
		t.Fatalf("config: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	c := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 1024, ReadTimeout: 60 * time.Second, MaxIdemponentCallAttempts: 1}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		g.server.Shutdown()
		for _, p := range g.state.Load().pools {
			p.close() // so that the backend's Shutdown does not wait for idle connections
		}
	})
	return c
}

type pipeResult struct {
	status        int
	verdict, body string
	err           error
}

func pipeGet(c *fasthttp.HostClient, method, uri string) pipeResult {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("gw.test")
	if err := c.Do(req, resp); err != nil {
		return pipeResult{err: err}
	}
	return pipeResult{status: resp.StatusCode(), verdict: string(resp.Header.Peek(VerdictHeader)), body: string(resp.Body())}
}

// TestPipelineAnswersEveryRequestItsOwn: many clients at once through a pool that
// pipelines over at most 2 connections; every client gets the answer to its own request.
func TestPipelineAnswersEveryRequestItsOwn(t *testing.T) {
	b := startPipeBackend(t)
	c := startTCPGateway(t, `
server: {listen: 127.0.0.1:0}
pools:
  p: {addrs: ["{{UP}}"], max_conns: 64, pipeline: {enabled: true, conns: 2}}
routes:
  fast: {path: /fast, pool: p, timeout: 30s}
`, b.addr)
	const clients, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan string, clients*each)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				n := fmt.Sprint(i*1000 + j)
				r := pipeGet(c, "GET", "http://gw.test/fast?n="+n)
				if r.err != nil || r.status != 200 || r.body != n {
					errs <- fmt.Sprintf("request n=%s: status %d, body %q, verdict %q, err %v", n, r.status, r.body, r.verdict, r.err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	bad := 0
	for e := range errs {
		if bad++; bad <= 5 {
			t.Error(e)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d requests did not get their own answer", bad, clients*each)
	}
	if n := b.conns.Load(); n < 1 || n > 2 {
		t.Errorf("the upstream saw %d connections; the pool pipelines over at most 2", n)
	}
}

// TestPipelineHeadOfLine: a slow answer on a pipelined connection holds the answers behind
// it (they come back in order). New requests avoid the stalled connection; those already
// behind it end no later than their own route's timeout; when the slow request's timeout
// closes the connection, the requests behind it are sent again on a new connection; a POST
// is not pipelined at all. The slow backend holds its answer until the test
// ends, so every outcome below happens while the slow answer is still missing.
func TestPipelineHeadOfLine(t *testing.T) {
	b := startPipeBackend(t)
	c := startTCPGateway(t, `
server: {listen: 127.0.0.1:0}
pools:
  two: {addrs: ["{{UP}}"], max_conns: 64, pipeline: {enabled: true, conns: 2, stall: 1ms}}
  one: {addrs: ["{{UP}}"], max_conns: 64, eject: {failures: 0}, pipeline: {enabled: true, conns: 1, stall: 1ms}}
routes:
  slow:   {path: /slow, pool: two, timeout: 60s}
  fast:   {path: /fast, pool: two, timeout: 60s}
  slow1:  {path: /slow1, pool: one, timeout: 5s}
  fast1:  {path: /fast1, pool: one, timeout: 60s}
  short1: {path: /fast1short, pool: one, timeout: 300ms}
`, b.addr)
	t.Cleanup(b.free) // first: the gateway's shutdown waits for the held requests

	waitSlow := func(path string) {
		t.Helper()
		select {
		case got := <-b.slowIn:
			if got != path {
				t.Fatalf("the backend got %s, want %s", got, path)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never reached the backend", path)
		}
	}

	t.Run("new requests avoid a stalled connection", func(t *testing.T) {
		slow := make(chan pipeResult, 1)
		go func() { slow <- pipeGet(c, "GET", "http://gw.test/slow") }()
		waitSlow("/slow")
		time.Sleep(20 * time.Millisecond) // well past stall (1ms): the connection is stalled
		for i := 0; i < 20; i++ {
			n := fmt.Sprint(i)
			if r := pipeGet(c, "GET", "http://gw.test/fast?n="+n); r.err != nil || r.status != 200 || r.body != n {
				t.Fatalf("fast request %d behind a stalled connection: status %d, body %q, verdict %q, err %v", i, r.status, r.body, r.verdict, r.err)
			}
		}
		select {
		case r := <-slow:
			t.Fatalf("the slow request ended (%+v) although its answer is held", r)
		default:
		}
	})

	t.Run("requests behind a slow answer", func(t *testing.T) {
		slow := make(chan pipeResult, 1)
		go func() { slow <- pipeGet(c, "GET", "http://gw.test/slow1") }()
		waitSlow("/slow1")
		// one connection only: these queue behind /slow1
		short, get, post := make(chan pipeResult, 1), make(chan pipeResult, 1), make(chan pipeResult, 1)
		go func() { short <- pipeGet(c, "GET", "http://gw.test/fast1short?n=s") }()
		go func() { get <- pipeGet(c, "GET", "http://gw.test/fast1?n=g") }()
		go func() { post <- pipeGet(c, "POST", "http://gw.test/fast1?n=p") }()

		// a POST is not pipelined: it has a connection of its own and does not wait
		if r := <-post; r.err != nil || r.status != 200 || r.body != "p" {
			t.Errorf("POST while /slow1 holds the pipelined connection: status %d, body %q, verdict %q, err %v; want 200 \"p\"", r.status, r.body, r.verdict, r.err)
		}
		select {
		case r := <-slow:
			t.Fatalf("/slow1 ended (%+v) before the POST", r)
		default:
		}
		// the short route's timeout (300ms) ends it while /slow1 (5s) still waits
		r := <-short
		if r.status != 503 || r.verdict != "upstream/timeout" {
			t.Errorf("request behind a slow answer, route timeout 300ms: status %d, verdict %q, err %v; want 503 upstream/timeout", r.status, r.verdict, r.err)
		}
		select {
		case r := <-slow:
			t.Fatalf("/slow1 ended (%+v) before the short request behind it", r)
		default:
		}
		// /slow1's own timeout closes the connection
		if r := <-slow; r.status != 503 || r.verdict != "upstream/timeout" {
			t.Errorf("/slow1: status %d, verdict %q, err %v; want 503 upstream/timeout", r.status, r.verdict, r.err)
		}
		// the GET behind it is sent again on a new connection
		if r := <-get; r.err != nil || r.status != 200 || r.body != "g" {
			t.Errorf("GET behind the slow answer: status %d, body %q, verdict %q, err %v; want 200 \"g\" (sent again)", r.status, r.body, r.verdict, r.err)
		}
		if n := b.posts.Load(); n != 1 {
			t.Errorf("the backend handled %d POSTs, want 1", n)
		}
	})
}

// TestPipelineReloadClosesOldConnections: a reload that turns pipelining off replaces the
// pool; the old pool's pipelined connections close once idle, and requests keep working.
func TestPipelineReloadClosesOldConnections(t *testing.T) {
	const cfg = `
server: {listen: 127.0.0.1:0}
pools:
  q: {addrs: [q1:1], max_conns: 8, pipeline: {enabled: true, conns: 2}}
routes:
  lottery: {path: /lottery, pool: q}
`
	r := newRig(t, cfg)
	r.upstream("q1:1", echoUpstream)
	if resp := r.do("GET", "/lottery", nil); resp.StatusCode() != 200 {
		t.Fatalf("pipelined: status %d", resp.StatusCode())
	}
	old := r.gw.state.Load().pools["q"].servers[0].pc
	if old == nil || old.ConnsCount() != 1 {
		t.Fatalf("want one pipelined connection before the reload")
	}
	if err := r.apply(strings.Replace(cfg, "enabled: true", "enabled: false", 1)); err != nil {
		t.Fatal(err)
	}
	if pc := r.gw.state.Load().pools["q"].servers[0].pc; pc != nil {
		t.Fatal("the reloaded pool still pipelines")
	}
	if resp := r.do("GET", "/lottery", nil); resp.StatusCode() != 200 {
		t.Fatalf("after the reload: status %d", resp.StatusCode())
	}
	for deadline := time.Now().Add(30 * time.Second); old.ConnsCount() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the old pool's pipelined connection is still open 30 s after the reload")
		}
	}
}

// TestPipelineSpreadsAQueueTheServerIsSlowToWorkThrough: the server answers a connection's
// requests one after another (1 ms each here), so a deep queue on one connection is a
// wait for the requests at its end. Once the oldest request on a connection has waited
// longer than stall, new requests go to the next connection.
func TestPipelineSpreadsAQueueTheServerIsSlowToWorkThrough(t *testing.T) {
	b := startPipeBackend(t)
	c := startTCPGateway(t, `
server: {listen: 127.0.0.1:0}
pools:
  p: {addrs: ["{{UP}}"], max_conns: 64, pipeline: {enabled: true, conns: 4, stall: 5ms}}
routes:
  busy: {path: /busy, pool: p, timeout: 60s}
`, b.addr)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				n := fmt.Sprint(i*100 + j)
				if r := pipeGet(c, "GET", "http://gw.test/busy?n="+n); r.err != nil || r.status != 200 || r.body != n {
					if bad.Add(1) <= 3 {
						t.Errorf("request n=%s: status %d, body %q, verdict %q, err %v", n, r.status, r.body, r.verdict, r.err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d requests did not get their own answer", n)
	}
	// 32 requests at 1 ms each on one connection: the oldest waits far past 5 ms
	if n := b.conns.Load(); n < 2 || n > 4 {
		t.Errorf("the upstream saw %d connections; want the queue spread over 2-4", n)
	}
}
