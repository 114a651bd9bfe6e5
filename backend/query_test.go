package backend

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func TestQueryAnswers(t *testing.T) {
	q, err := NewQuery(QueryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, q.Server)
	cases := []struct {
		desc   string
		method string
		path   string
		status int
		ctype  string
		body   string
	}{
		{desc: "GET names the first path segment", method: "GET", path: "/lottery", status: 200, ctype: "application/json",
			body: `{"ok":true,"route":"lottery","prize":"none"}` + "\n"},
		{desc: "deeper path and query", method: "GET", path: "/info/user/7?x=1", status: 200, ctype: "application/json",
			body: `{"ok":true,"route":"info","prize":"none"}` + "\n"},
		{desc: "POST", method: "POST", path: "/report", status: 200, ctype: "application/json",
			body: `{"ok":true,"route":"report","prize":"none"}` + "\n"},
		{desc: "root has an empty route", method: "GET", path: "/", status: 200, ctype: "application/json",
			body: `{"ok":true,"route":"","prize":"none"}` + "\n"},
		{desc: "route is JSON-escaped", method: "GET", path: "/a%22b%5C%0A%FF", status: 200, ctype: "application/json",
			body: `{"ok":true,"route":"a\"b\\\n\ufffd","prize":"none"}` + "\n"},
		{desc: "HEAD has no body", method: "HEAD", path: "/lottery", status: 200, ctype: "application/json", body: ""},
		{desc: "healthz", method: "GET", path: "/healthz", status: 200, ctype: "text/plain; charset=utf-8", body: "ok"},
		{desc: "other methods are refused", method: "DELETE", path: "/lottery", status: 405, ctype: "application/json",
			body: `{"ok":false,"error":"method not allowed"}`},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			r := do(t, tc.method, base+tc.path, nil, nil)
			if r.status != tc.status || r.ctype != tc.ctype || r.body != tc.body {
				t.Fatalf("got %d %q %q; want %d %q %q", r.status, r.ctype, r.body, tc.status, tc.ctype, tc.body)
			}
			if s := r.header.Get("Server"); s != "" {
				t.Fatalf("Server header %q sent", s)
			}
		})
	}
	// /healthz is not counted; everything else is.
	if got, want := q.Served(), uint64(len(cases)-1); got != want {
		t.Fatalf("Served() = %d, want %d", got, want)
	}
}

func TestQueryFaults(t *testing.T) {
	cases := []struct {
		desc         string
		faults       Faults
		requests     int
		wantInjected int // -1: anything
		wantStatus   int // 0: mixed
		minTook      time.Duration
	}{
		{desc: "error rate 1 fails every request", faults: Faults{ErrorRate: 1}, requests: 20, wantInjected: 20, wantStatus: 500},
		{desc: "error rate 0 fails none", faults: Faults{}, requests: 20, wantInjected: 0, wantStatus: 200},
		{desc: "error rate 0.5 fails some", faults: Faults{ErrorRate: 0.5}, requests: 200, wantInjected: -1},
		{desc: "latency delays the answer", faults: Faults{Latency: 30 * time.Millisecond}, requests: 2, wantInjected: 0,
			wantStatus: 200, minTook: 30 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			q, err := NewQuery(QueryConfig{Faults: tc.faults})
			if err != nil {
				t.Fatal(err)
			}
			base := serve(t, q.Server)
			failed := 0
			for range tc.requests {
				start := time.Now()
				r := get(t, base+"/lottery")
				if took := time.Since(start); took < tc.minTook {
					t.Fatalf("answered in %v, want at least %v", took, tc.minTook)
				}
				if tc.wantStatus != 0 && r.status != tc.wantStatus {
					t.Fatalf("status %d, want %d", r.status, tc.wantStatus)
				}
				if r.status == 500 {
					failed++
				}
			}
			if h := get(t, base+"/healthz"); h.status != 200 {
				t.Fatalf("healthz %d: faults must not touch it", h.status)
			}
			if int(q.Injected()) != failed {
				t.Fatalf("Injected() = %d, but %d answers were 500", q.Injected(), failed)
			}
			if tc.wantInjected >= 0 && failed != tc.wantInjected {
				t.Fatalf("%d failed, want %d", failed, tc.wantInjected)
			}
			if tc.wantInjected < 0 && (failed == 0 || failed == tc.requests) { // P = 2^-199
				t.Fatalf("%d of %d failed at rate %v", failed, tc.requests, tc.faults.ErrorRate)
			}
		})
	}
}

func TestFaultsDelay(t *testing.T) {
	f := Faults{Latency: 10 * time.Millisecond, Jitter: 5 * time.Millisecond}
	for range 1000 {
		if d := f.delay(f.Latency); d < f.Latency || d > f.Latency+f.Jitter {
			t.Fatalf("delay %v outside [%v, %v]", d, f.Latency, f.Latency+f.Jitter)
		}
	}
}

func TestFaultsValidate(t *testing.T) {
	cases := []struct {
		desc    string
		faults  Faults
		wantErr string
	}{
		{desc: "zero", faults: Faults{}},
		{desc: "all set", faults: Faults{Latency: time.Second, Jitter: time.Second, ErrorRate: 1}},
		{desc: "negative latency", faults: Faults{Latency: -time.Second}, wantErr: "latency -1s is negative"},
		{desc: "negative jitter", faults: Faults{Jitter: -time.Millisecond}, wantErr: "jitter -1ms is negative"},
		{desc: "rate above 1", faults: Faults{ErrorRate: 1.5}, wantErr: "error rate 1.5 is outside [0, 1]"},
		{desc: "negative rate", faults: Faults{ErrorRate: -0.1}, wantErr: "error rate -0.1 is outside [0, 1]"},
		{desc: "NaN rate", faults: Faults{ErrorRate: math.NaN()}, wantErr: "error rate NaN is outside [0, 1]"},
		{desc: "negative workers", faults: Faults{Workers: -1}, wantErr: "workers -1 is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.faults.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
			_, nerr := NewQuery(QueryConfig{Faults: tc.faults})
			if (nerr == nil) != (tc.wantErr == "") || (nerr != nil && !strings.Contains(nerr.Error(), tc.wantErr)) {
				t.Fatalf("NewQuery error = %v, want it to contain %q", nerr, tc.wantErr)
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	t.Run("Shutdown before Serve: Serve refuses and closes the listener", func(t *testing.T) {
		q, _ := NewQuery(QueryConfig{})
		if err := q.Shutdown(); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Serve(ln); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve after Shutdown = %v, want ErrServerClosed", err)
		}
		if _, err := ln.Accept(); err == nil {
			t.Fatal("listener still open")
		}
	})
	t.Run("Shutdown racing a starting Serve always stops it", func(t *testing.T) {
		for range 50 {
			q, _ := NewQuery(QueryConfig{})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- q.Serve(ln) }()
			if err := q.Shutdown(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, ErrServerClosed) {
					t.Fatalf("Serve = %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("Serve still running after Shutdown")
			}
		}
	})
	t.Run("Shutdown waits for an in-flight request", func(t *testing.T) {
		q, _ := NewQuery(QueryConfig{Faults: Faults{Latency: 100 * time.Millisecond}})
		base := serve(t, q.Server)
		var wg sync.WaitGroup
		wg.Add(1)
		var r reply
		go func() { defer wg.Done(); r = get(t, base+"/slow") }()
		for q.Served() == 0 { // the request is in the handler
			time.Sleep(time.Millisecond)
		}
		if err := q.Shutdown(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if r.status != 200 {
			t.Fatalf("in-flight request got %d", r.status)
		}
		if err := q.Shutdown(); err != nil { // a second call is harmless
			t.Fatal(err)
		}
	})
	t.Run("ShutdownWithContext expiring reports it, also on later calls", func(t *testing.T) {
		q, _ := NewQuery(QueryConfig{Faults: Faults{Latency: 300 * time.Millisecond}})
		ln := fasthttputil.NewInmemoryListener()
		go q.Serve(ln)
		c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
		go c.Get(nil, "http://x/slow")
		for q.Served() == 0 {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := q.ShutdownWithContext(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("ShutdownWithContext(cancelled) = %v", err)
		}
		if err := q.Shutdown(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown after an expired ShutdownWithContext = %v", err)
		}
	})
}

func BenchmarkQueryHandler(b *testing.B) {
	q, _ := NewQuery(QueryConfig{})
	h := q.Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/lottery/draw")
	b.ReportAllocs()
	for b.Loop() {
		h(&ctx)
		ctx.Response.Reset()
	}
}

// BenchmarkQueryInmemory measures a whole client-server round trip without sockets.
func BenchmarkQueryInmemory(b *testing.B) {
	q, _ := NewQuery(QueryConfig{})
	ln := fasthttputil.NewInmemoryListener()
	go q.Serve(ln)
	defer q.Shutdown()
	c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConnsPerHost: 1024}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://backend/lottery")
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatal(err, resp.StatusCode())
			}
		}
	})
}

// TestWorkersAndLiveLatency: with Workers set, requests beyond the workers wait for one
// (5 concurrent requests on 1 worker at 20 ms take at least 100 ms in all); SetLatency
// changes the latency of the following answers.
func TestWorkersAndLiveLatency(t *testing.T) {
	q, err := NewQuery(QueryConfig{Faults: Faults{Latency: 20 * time.Millisecond, Workers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, q.Server)
	get := func() {
		resp, err := http.Get(base + "/lottery")
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); get() }()
	}
	wg.Wait()
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("5 requests on 1 worker at 20 ms took %v, want >= 100ms (the worker limit is not enforced)", took)
	}
	q.SetLatency(60 * time.Millisecond)
	if q.Latency() != 60*time.Millisecond {
		t.Fatalf("Latency() = %v after SetLatency(60ms)", q.Latency())
	}
	start = time.Now()
	get()
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("a request after SetLatency(60ms) took %v", took)
	}
}
