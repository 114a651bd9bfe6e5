package deliver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/grant"
)

// Target is where and how one route's grants are delivered: its pool's addresses and the
// route's async.deliver settings, taken from the configuration in force.
type Target struct {
	Route      string
	Addrs      []string
	HostHeader string
	// Path replaces the recorded path when set (async.deliver.path).
	Path     string
	IDHeader string
	Timeout  time.Duration
}

// TargetOf returns the delivery target of an async route of cfg (ok false: no such
// async route, or its pool has no address).
func TargetOf(cfg *config.Config, route string) (Target, bool) {
	r := cfg.Routes[route]
	if r == nil || r.Async == nil {
		return Target{}, false
	}
	p := cfg.Pools[r.Pool]
	if p == nil || len(p.Addrs) == 0 {
		return Target{}, false
	}
	d := r.Async.Deliver
	t := Target{Route: route, Addrs: p.Addrs, HostHeader: p.HostHeader, Path: d.Path, IDHeader: d.IDHeader, Timeout: time.Duration(d.Timeout)}
	if t.Timeout <= 0 {
		t.Timeout = time.Duration(r.Timeout)
	}
	if t.Timeout <= 0 {
		t.Timeout = 3 * time.Second
	}
	if t.IDHeader == "" {
		t.IDHeader = "X-Grant-Id"
	}
	return t, true
}

// Class is what a delivery call's outcome means for the grant.
type Class int

const (
	// Delivered: the backend confirmed (2xx); the grant is acknowledged.
	Delivered Class = iota
	// Retry: a 5xx, a timeout or a connection error; tried again after a backoff.
	Retry
	// Conflict: 409, the id is recorded with other content; parked.
	Conflict
	// Rejected: another 4xx (or an unsendable grant); parked.
	Rejected
)

func (c Class) String() string {
	return [...]string{"delivered", "retry", "conflict", "rejected"}[c]
}

// Outcome is the result of one delivery call.
type Outcome struct {
	Class  Class
	Status int // 0 when no answer came
	// Duplicate is set when the backend answered that it had recorded the id before.
	Duplicate bool
	Err       error
	Addr      string
	// Unreachable is set when the call never reached a backend (no address, or the
	// connection could not be made): the backend is down, not this grant's fault.
	Unreachable bool
}

func (o Outcome) String() string {
	if o.Err != nil {
		return fmt.Sprintf("%s (%v)", o.Class, o.Err)
	}
	return fmt.Sprintf("%s (status %d)", o.Class, o.Status)
}

// Caller sends grants to delivery backends: one fasthttp client per backend address,
// timeouts from the target, no automatic retries (a retry is the queue's redelivery,
// after a backoff, and counted).
type Caller struct {
	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient
	next    atomic.Uint64
}

// NewCaller returns a Caller.
func NewCaller() *Caller { return &Caller{clients: map[string]*fasthttp.HostClient{}} }

func (c *Caller) client(addr string) *fasthttp.HostClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	hc := c.clients[addr]
	if hc == nil {
		hc = &fasthttp.HostClient{
			Addr:                      addr,
			Name:                      "floodgate-deliver",
			MaxConns:                  4096,
			MaxIdleConnDuration:       10 * time.Second,
			MaxIdemponentCallAttempts: 1,
			RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
			NoDefaultUserAgentHeader:  true,
			DisablePathNormalizing:    true,
		}
		c.clients[addr] = hc
	}
	return hc
}

// Call delivers rec to t once: method and path (t.Path or the recorded path) with the
// recorded query, the kept headers and the body, plus t.IDHeader: rec.ID.
func (c *Caller) Call(t Target, rec *grant.Record) Outcome {
	if len(t.Addrs) == 0 {
		return Outcome{Class: Retry, Err: errors.New("the route's pool has no address"), Unreachable: true}
	}
	addr := t.Addrs[int(c.next.Add(1)-1)%len(t.Addrs)]
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	method := rec.Method
	if method == "" {
		method = "POST"
	}
	path := rec.Path
	if t.Path != "" {
		path = t.Path
	}
	if path == "" {
		path = "/"
	}
	uri := path
	if rec.Query != "" {
		uri += "?" + rec.Query
	}
	host := t.HostHeader
	if host == "" {
		host = addr
	}
	if err := head(req, method, uri, host, t.IDHeader, rec); err != nil {
		return Outcome{Class: Rejected, Err: err} // an unsendable grant: parked, not retried
	}
	if len(rec.Body) > 0 {
		req.SetBody(rec.Body)
	}
	err := c.client(addr).DoTimeout(req, resp, t.Timeout)
	if err != nil {
		return Outcome{Class: Retry, Err: err, Addr: addr, Unreachable: dialFailed(err)}
	}
	st := resp.StatusCode()
	o := Outcome{Status: st, Addr: addr}
	switch {
	case st >= 200 && st < 300:
		o.Class = Delivered
		o.Duplicate = strings.Contains(string(resp.Body()), `"duplicate":true`)
	case st == 409:
		o.Class = Conflict
	case st == 408 || st == 429:
		o.Class = Retry // the backend asks for a later try
	case st >= 400 && st < 500:
		o.Class = Rejected
	default:
		o.Class = Retry
	}
	return o
}

// dialFailed reports whether err says the connection could not be made (refused, no
// route, a dial timeout): the request was never sent. An error after the connection was
// made (a reset, a read timeout) is not: the backend may have acted on the grant.
func dialFailed(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// head sets req's head from its wire form, so that the kept headers reach the backend
// as the client sent them: a Cookie line added through fasthttp's Header.Add is parsed
// and written back re-serialised (quotes stripped, a cookie holding a quote - a JSON
// value - dropped). A body without Content-Type stays without one.
func head(req *fasthttp.Request, method, uri, host, idHeader string, rec *grant.Record) error {
	if strings.ContainsAny(method+uri+host+idHeader+rec.ID, "\r\n \t") {
		return fmt.Errorf("grant %s: a line break or space in its method, target, host or id", rec.ID)
	}
	for _, h := range rec.Headers {
		if strings.ContainsAny(h.Name, "\r\n: \t") || strings.ContainsAny(h.Value, "\r\n") {
			return fmt.Errorf("grant %s: header %q: a line break in its name or value", rec.ID, h.Name)
		}
	}
	var b strings.Builder
	b.WriteString(method + " " + uri + " HTTP/1.1\r\nHost: " + host + "\r\n")
	for _, h := range rec.Headers {
		if strings.EqualFold(h.Name, idHeader) {
			continue
		}
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	b.WriteString(idHeader + ": " + rec.ID + "\r\n\r\n")
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(b.String()))); err != nil {
		return fmt.Errorf("grant %s: the recorded request does not make a request head: %w", rec.ID, err)
	}
	req.Header.SetNoDefaultContentType(true)
	return nil
}
