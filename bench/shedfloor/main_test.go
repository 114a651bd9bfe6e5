//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestAnswer: every complete request gets one answer, in order, whatever the reads cut:
// heads split over reads, several requests in one read, a body skipped by its
// Content-Length (also when it arrives in a later read); the bucket admits its burst and
// then one request per interval.
func TestAnswer(t *testing.T) {
	get := "GET /lottery?uin=1 HTTP/1.1\r\nHost: h\r\n\r\n"
	post := "POST /x HTTP/1.1\r\nHost: h\r\ncontent-LENGTH: 5\r\n\r\nhello"
	stream := get + post + get + get
	for cut := 1; cut < len(stream); cut += 7 {
		b := &bucket{interval: time.Second, tau: 2 * time.Second} // burst 3
		now := time.Unix(0, 0)
		c := &conn{}
		for _, part := range []string{stream[:cut], stream[cut:]} {
			if !answer(c, []byte(part), b, now) {
				t.Fatalf("cut %d: the stream was refused", cut)
			}
		}
		want := string(okAnswer) + string(okAnswer) + string(okAnswer) + string(shedAnswer)
		if string(c.out) != want {
			t.Fatalf("cut %d: answered\n%q\nwant 3 x 200 then 429", cut, c.out)
		}
		if len(c.in) != 0 || c.skip != 0 {
			t.Fatalf("cut %d: %d bytes left over, %d to skip", cut, len(c.in), c.skip)
		}
	}
	b := &bucket{interval: time.Second, tau: 0}
	c := &conn{}
	answer(c, []byte(get), b, time.Unix(0, 0))
	answer(c, []byte(get), b, time.Unix(0, 0))
	answer(c, []byte(get), b, time.Unix(1, 0))
	if want := string(okAnswer) + string(shedAnswer) + string(okAnswer); string(c.out) != want {
		t.Fatalf("rate 1/s, burst 1: answered %q", c.out)
	}
}

func TestAnswerRefuses(t *testing.T) {
	for _, tc := range []struct{ desc, in string }{
		{"a Content-Length that is not a number", "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n"},
		{"a head over 16 KiB", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHead) + "\r\n"},
	} {
		if answer(&conn{}, []byte(tc.in), &bucket{interval: time.Second}, time.Unix(0, 0)) {
			t.Errorf("%s: accepted", tc.desc)
		}
	}
	if n, ok := contentLength([]byte("GET / HTTP/1.1\r\nX-Content-Length: 9\r\n")); !ok || n != 0 {
		t.Errorf("X-Content-Length read as the length: %d %v", n, ok)
	}
	for _, a := range [][]byte{okAnswer, shedAnswer} {
		head, body, _ := bytes.Cut(a, []byte("\r\n\r\n"))
		if n, ok := contentLength(head); !ok || n != len(body) {
			t.Errorf("answer %q: Content-Length %d, body %d bytes", a, n, len(body))
		}
	}
}
