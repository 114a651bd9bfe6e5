package deliver

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/itest"
)

// TestUnreachable: a call whose connection could not be made is Unreachable (held, not
// counted); a call that reached a server is not, whatever it answered or however it broke.
func TestUnreachable(t *testing.T) {
	// a port nothing listens on: bound, then closed
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// a server that accepts and closes at once (the connection was made)
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	rec := &grant.Record{ID: "grant-x", Route: "grant", Method: "POST", Path: "/grant"}
	c := NewCaller()
	for _, tc := range []struct {
		desc  string
		addrs []string
		want  bool
	}{
		{desc: "connection refused", addrs: []string{closed}, want: true},
		{desc: "no address", addrs: nil, want: true},
		{desc: "connected, then closed without an answer", addrs: []string{hangup.Addr().String()}, want: false},
	} {
		out := c.Call(Target{Addrs: tc.addrs, Timeout: itest.MinWait, IDHeader: "X-Grant-Id"}, rec)
		if out.Class != Retry || out.Unreachable != tc.want {
			t.Errorf("%s: %v unreachable=%v, want retry unreachable=%v", tc.desc, out, out.Unreachable, tc.want)
		}
	}
	for _, tc := range []struct {
		desc string
		err  error
		want bool
	}{
		{desc: "fasthttp dial timeout", err: fasthttp.ErrDialTimeout, want: true},
		{desc: "a dial error", err: &net.OpError{Op: "dial", Err: errors.New("refused")}, want: true},
		{desc: "a read error", err: &net.OpError{Op: "read", Err: errors.New("reset")}, want: false},
		{desc: "the call's timeout", err: fasthttp.ErrTimeout, want: false},
	} {
		if got := dialFailed(tc.err); got != tc.want {
			t.Errorf("%s: dialFailed = %v, want %v", tc.desc, got, tc.want)
		}
	}
}

// TestCallSendsTheRecordedRequest: the backend gets the recorded request as the client
// sent it - a path with escapes (recorded in its forwarded, quoted form), the raw query,
// kept Cookie lines byte for byte (fasthttp's Header.Add would re-serialise them,
// dropping a JSON cookie), no Content-Type invented for a body without one - plus the id
// header. A recorded head that cannot be sent is parked (Rejected), not retried.
func TestCallSendsTheRecordedRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		got <- head.String()
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	}()
	rec := &grant.Record{ID: "grant-1", Route: "grant", Method: "POST", Path: "/grant/%20x%3Fy", Query: "a=%7E&k=a;b",
		Headers: []grant.Header{{Name: "Cookie", Value: `json={"a":1}; q="x"`}, {Name: "X-Trace", Value: "t1"}}, Body: []byte("abc")}
	out := NewCaller().Call(Target{Addrs: []string{ln.Addr().String()}, Timeout: itest.MinWait, IDHeader: "X-Grant-Id"}, rec)
	if out.Class != Delivered {
		t.Fatalf("%v, want delivered", out)
	}
	h := <-got
	for _, want := range []string{"POST /grant/%20x%3Fy?a=%7E&k=a;b HTTP/1.1\r\n", "\r\nCookie: json={\"a\":1}; q=\"x\"\r\n", "\r\nX-Trace: t1\r\n", "\r\nX-Grant-Id: grant-1\r\n", "\r\nContent-Length: 3\r\n"} {
		if !strings.Contains(h, want) {
			t.Errorf("the backend's head lacks %q:\n%s", want, h)
		}
	}
	if strings.Contains(strings.ToLower(h), "content-type") {
		t.Errorf("a Content-Type the client did not send:\n%s", h)
	}
	for _, bad := range []*grant.Record{
		{ID: "grant-2", Method: "POST", Path: "/grant", Headers: []grant.Header{{Name: "X-Bad", Value: "a\r\nInjected: 1"}}},
		{ID: "grant-3", Method: "POST", Path: "/grant x"},
	} {
		if out := NewCaller().Call(Target{Addrs: []string{ln.Addr().String()}, Timeout: itest.MinWait, IDHeader: "X-Grant-Id"}, bad); out.Class != Rejected || out.Err == nil {
			t.Errorf("%s, an unsendable record: %v, want rejected with the reason", bad.ID, out)
		}
	}
}
