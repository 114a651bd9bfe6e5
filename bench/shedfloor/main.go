//go:build linux

// Command shedfloor is a measuring instrument for make bench's shedding comparison, not a
// proxy: the least CPU a server on this kernel can spend per answer to keep-alive
// requests, to put the gateway's and nginx's costs against (compare.sh configuration
// "shed-floor", optional; bench/RESULTS.md "The floor").
//
// One thread, one epoll set (level-triggered), non-blocking sockets: per ready connection
// one read, every complete request in it answered at once, one write of all the answers.
// It answers everything itself: a request within the limit (a token bucket of -rate and
// -burst for the whole listener, as the shedding configurations limit their route) gets a
// small 200, any other a 429 of the size of the gateway's (Retry-After, verdict header,
// body). Nothing is proxied, parsed beyond finding the end of the head and a
// Content-Length, logged or counted: it is the floor of any design, not a design.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

var (
	okAnswer   = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{\"ok\":true,\"route\":\"lottery\",\"prize\":\"none\"}\n")
	shedAnswer = []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\nRetry-After: 1\r\nX-Floodgate-Verdict: token_bucket/limited\r\n\r\nToo Many Requests\n")
	headEnd    = []byte("\r\n\r\n")
	clName     = []byte("content-length:")
	crlf       = []byte("\r\n")
)

const maxHead = 16 << 10

type conn struct {
	in      []byte // unread request bytes
	out     []byte // answers; out[sent:] not written yet
	sent    int
	skip    int  // body bytes still to drop
	waitOut bool // registered for EPOLLOUT
}

// bucket is a GCRA token bucket: tat is when the bucket is full again.
type bucket struct {
	interval, tau time.Duration
	tat           time.Time
}

func (b *bucket) admit(now time.Time) bool {
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	if tat.Sub(now) > b.tau {
		return false
	}
	b.tat = tat.Add(b.interval)
	return true
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on (host:port)")
	rate := flag.Float64("rate", 1000, "requests per second answered 200 (the rest 429)")
	burst := flag.Int("burst", 100, "requests answered 200 at once after a quiet spell")
	flag.Parse()
	ap, err := netip.ParseAddrPort(*listen)
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintf(os.Stderr, "shedfloor: -listen %q: want an IPv4 host:port (%v)\n", *listen, err)
		os.Exit(2)
	}
	if *rate <= 0 || *burst < 1 {
		fmt.Fprintf(os.Stderr, "shedfloor: -rate %v -burst %d: want a positive rate and a burst >= 1\n", *rate, *burst)
		os.Exit(2)
	}
	interval := time.Duration(float64(time.Second) / *rate)
	b := &bucket{interval: interval, tau: interval * time.Duration(*burst-1)}
	runtime.LockOSThread()
	if err := serve(ap, b); err != nil {
		fmt.Fprintf(os.Stderr, "shedfloor: %v\n", err)
		os.Exit(1)
	}
}

func serve(ap netip.AddrPort, b *bucket) error {
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := syscall.Listen(lfd, 4096); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	conns := map[int32]*conn{}
	buf := make([]byte, 64<<10)
	var events [256]syscall.EpollEvent
	for {
		n, err := epollWait(ep, events[:])
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		now := time.Now()
		for _, ev := range events[:n] {
			fd := ev.Fd
			if int(fd) == lfd {
				for {
					cfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
					if err != nil {
						break // EAGAIN, or a connection gone before its accept
					}
					syscall.SetsockoptInt(cfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
					if syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, cfd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(cfd)}) != nil {
						syscall.Close(cfd)
						continue
					}
					conns[int32(cfd)] = &conn{}
				}
				continue
			}
			c := conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 && c.waitOut {
				if !flush(ep, int(fd), c) {
					drop(ep, conns, fd)
				}
				continue
			}
			m, err := syscall.Read(int(fd), buf)
			if m <= 0 {
				if m < 0 && errors.Is(err, syscall.EAGAIN) {
					continue
				}
				drop(ep, conns, fd)
				continue
			}
			if !answer(c, buf[:m], b, now) || !flush(ep, int(fd), c) {
				drop(ep, conns, fd)
			}
		}
	}
}

// answer appends the answers to every complete request in data to c.out; false: a head
// too large or a Content-Length it cannot read (the connection is closed).
func answer(c *conn, data []byte, b *bucket, now time.Time) bool {
	if c.skip > 0 {
		k := min(c.skip, len(data))
		c.skip -= k
		data = data[k:]
	}
	in := data
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		in = c.in
	}
	for len(in) > 0 {
		i := bytes.Index(in, headEnd)
		if i < 0 {
			break
		}
		body, ok := contentLength(in[:i+2])
		if !ok {
			return false
		}
		if b.admit(now) {
			c.out = append(c.out, okAnswer...)
		} else {
			c.out = append(c.out, shedAnswer...)
		}
		in = in[i+4:]
		k := min(body, len(in))
		in = in[k:]
		c.skip = body - k
	}
	if len(in) > maxHead {
		return false
	}
	c.in = append(c.in[:0], in...)
	return true
}

// contentLength reads a head's Content-Length (0 without one), without allocating.
func contentLength(head []byte) (int, bool) {
	for len(head) > 0 {
		i := bytes.Index(head, crlf)
		if i < 0 {
			return 0, true
		}
		head = head[i+2:]
		if len(head) >= len(clName) && asciiEqualFold(head[:len(clName)], clName) {
			v := head[len(clName):]
			if j := bytes.IndexByte(v, '\r'); j >= 0 {
				v = v[:j]
			}
			n := 0
			v = bytes.TrimSpace(v)
			if len(v) == 0 || len(v) > 12 {
				return 0, false
			}
			for _, d := range v {
				if d < '0' || d > '9' {
					return 0, false
				}
				n = n*10 + int(d-'0')
			}
			return n, true
		}
	}
	return 0, true
}

func asciiEqualFold(a, b []byte) bool {
	for i := range a {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// flush writes c.out; what the socket does not take waits for EPOLLOUT. false: the
// connection broke.
func flush(ep, fd int, c *conn) bool {
	for c.sent < len(c.out) {
		n, err := syscall.Write(fd, c.out[c.sent:])
		if n > 0 {
			c.sent += n
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			c.waitOut = true
			return syscall.EpollCtl(ep, syscall.EPOLL_CTL_MOD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP, Fd: int32(fd)}) == nil
		}
		return false
	}
	c.out, c.sent = c.out[:0], 0
	if c.waitOut {
		c.waitOut = false
		return syscall.EpollCtl(ep, syscall.EPOLL_CTL_MOD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}) == nil
	}
	return true
}

func drop(ep int, conns map[int32]*conn, fd int32) {
	syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, int(fd), nil)
	syscall.Close(int(fd))
	delete(conns, fd)
}

// epollWait is epoll_pwait without telling Go's scheduler: through syscall.EpollWait the
// runtime counts every wait as a blocking system call, and its monitor thread hands the
// processor to another thread when one lasts over 20 us - futex calls and context
// switches on every idle spell, which a server written in C does not make. The thread is
// locked and the process runs one goroutine that matters, so nothing waits for it; the
// runtime's preemption signal ends a long wait with EINTR, which the loop takes.
func epollWait(ep int, events []syscall.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
