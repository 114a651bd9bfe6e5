package gateway

import (
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/itest"

	_ "github.com/floodgate/floodgate/filters/all"
)

// memNet is a set of in-memory listeners addressed like TCP ones, so that gateway tests
// run client -> gateway -> upstream without sockets.
type memNet struct {
	mu  sync.Mutex
	lns map[string]*fasthttputil.InmemoryListener
	// from is the address connections appear to come from (the "client IP").
	from net.Addr
}

func newMemNet() *memNet {
	return &memNet{lns: map[string]*fasthttputil.InmemoryListener{}, from: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 40000}}
}

func (m *memNet) listen(addr string) *fasthttputil.InmemoryListener {
	m.mu.Lock()
	defer m.mu.Unlock()
	ln := fasthttputil.NewInmemoryListener()
	m.lns[addr] = ln
	return ln
}

func (m *memNet) dial(addr string) (net.Conn, error) {
	m.mu.Lock()
	ln := m.lns[addr]
	m.mu.Unlock()
	if ln == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED} // as a real dial fails
	}
	return ln.DialWithLocalAddr(m.from)
}

// testRig is a gateway with in-memory upstreams and a client.
type testRig struct {
	t      testing.TB
	net    *memNet
	gw     *Gateway
	up     *Updater
	client *fasthttp.HostClient
}

func newRig(t testing.TB, yamlSrc string) *testRig {
	t.Helper()
	return newRigOpts(t, Options{}, yamlSrc)
}

// newRigOpts is newRig with gateway options (Dial is set by the rig).
func newRigOpts(t testing.TB, opts Options, yamlSrc string) *testRig {
	t.Helper()
	r := &testRig{t: t, net: newMemNet()}
	opts.Dial = r.net.dial
	r.gw = New(opts)
	t.Cleanup(r.gw.Close) // the background loops (health checks, overload ticker) end with the test
	t.Cleanup(r.gw.Close)
	r.up = NewUpdater(r.gw, nil)
	doc, err := config.Parse("test.yaml", []byte(yamlSrc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.up.Apply(Update{Source: "test", Doc: doc}); err != nil {
		t.Fatalf("config: %v", err)
	}
	ln := r.net.listen("gateway:80")
	srv, err := r.gw.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(r.gw.listener(ln)) // as Gateway.Serve does
	t.Cleanup(func() { srv.Shutdown() })
	// the client sends a request target as the test wrote it (fasthttp's client would
	// decode and re-quote the path first)
	r.client = &fasthttp.HostClient{Addr: "gateway:80", Dial: r.net.dial, ReadTimeout: itest.MinWait, MaxIdemponentCallAttempts: 1,
		DisablePathNormalizing: true}
	return r
}

// upstream starts an in-memory upstream at addr.
func (r *testRig) upstream(addr string, h fasthttp.RequestHandler) *fasthttp.Server {
	s := &fasthttp.Server{Handler: h, NoDefaultServerHeader: true}
	ln := r.net.listen(addr)
	go s.Serve(ln)
	r.t.Cleanup(func() { s.Shutdown() })
	return s
}

// do sends a request through the gateway.
func (r *testRig) do(method, uri string, hdr map[string]string) *fasthttp.Response {
	r.t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("gw.test")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := &fasthttp.Response{}
	if err := r.client.Do(req, resp); err != nil {
		r.t.Fatalf("%s %s: %v", method, uri, err)
	}
	return resp
}

func (r *testRig) apply(yamlSrc string) error {
	doc, err := config.Parse("test.yaml", []byte(yamlSrc))
	if err != nil {
		return err
	}
	_, err = r.up.Apply(Update{Source: "test", Doc: doc})
	return err
}
