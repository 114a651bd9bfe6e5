package deliver

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/grant"
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
		out := c.Call(Target{Addrs: tc.addrs, Timeout: 30 * time.Second, IDHeader: "X-Grant-Id"}, rec)
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
