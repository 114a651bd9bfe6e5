package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		status  int
		header  string
		err     error
		verdict string
		class   Class
	}{
		{200, "", nil, "admitted", ClassAdmitted},
		{204, "", nil, "admitted", ClassAdmitted},
		{302, "", nil, "admitted", ClassAdmitted},
		{503, "", nil, "error", ClassError},
		{500, "", nil, "error", ClassError},
		{429, "token_bucket/limited", nil, "token_bucket/limited", ClassShed},
		{200, "sample/dropped", nil, "sample/dropped", ClassShed}, // a fallback answer is still shed
		{503, "route/disabled", nil, "route/disabled", ClassShed},
		{504, "upstream/timeout", nil, "upstream/timeout", ClassShed},
		{404, "", nil, "http/404", ClassOther},
		{101, "", nil, "http/101", ClassOther},
		{200, "bad value\r\n", nil, "bad_value__", ClassShed},
		{202, "async/accepted", nil, "async/accepted", ClassAdmitted}, // an async route accepted the request
		{503, "async/unavailable", nil, "async/unavailable", ClassShed},
		{200, "async/accepted", nil, "async/accepted", ClassShed}, // only a 202 is an acceptance
		{0, "", fasthttp.ErrTimeout, "client/timeout", ClassClient},
		{0, "", os.ErrDeadlineExceeded, "client/timeout", ClassClient},
		{0, "", fasthttp.ErrNoFreeConns, "client/no_free_conns", ClassClient},
		{0, "", fasthttp.ErrConnectionClosed, "client/closed", ClassClient},
		{0, "", io.EOF, "client/closed", ClassClient},
		{0, "", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "client/refused", ClassClient},
		{0, "", fmt.Errorf("read: %w", syscall.ECONNRESET), "client/reset", ClassClient},
		{0, "", fasthttp.ErrBodyTooLarge, "client/body_too_large", ClassClient},
		{0, "", errors.New("something else"), "client/other", ClassClient},
		// a transport error wins over whatever was half-read
		{200, "token_bucket/limited", fasthttp.ErrTimeout, "client/timeout", ClassClient},
	}
	for _, tc := range tests {
		v, c := Classify(tc.status, []byte(tc.header), tc.err)
		if v != tc.verdict || c != tc.class {
			t.Errorf("Classify(%d, %q, %v) = %q, %v; want %q, %v", tc.status, tc.header, tc.err, v, c, tc.verdict, tc.class)
		}
	}
}

func TestLongVerdictIsCut(t *testing.T) {
	long := make([]byte, 500)
	for i := range long {
		long[i] = 'a'
	}
	v, _ := Classify(429, long, nil)
	if len(v) != maxVerdictLen {
		t.Fatalf("verdict of %d bytes kept, want %d", len(v), maxVerdictLen)
	}
}

func TestShardBoundsVerdicts(t *testing.T) {
	s := newShard(1, 1_000_000)
	for i := 0; i < 100; i++ {
		s.record(0, 1, 10, false, 429, []byte(fmt.Sprintf("f%d/limited", i)), nil, 0, 0)
	}
	if n := len(s.routes[0].cells); n != maxVerdictsPerRoute+1 {
		t.Fatalf("%d cells, want %d + overflow", n, maxVerdictsPerRoute)
	}
	if c := s.routes[0].cells[overflowVerdict]; c == nil || c.count != 100-maxVerdictsPerRoute {
		t.Fatalf("overflow cell %+v", c)
	}
}
