package filters

// The checks that filters and the gateway's configuration share. Each rule lives here
// once: an HTTP status a filter may answer with, a rate and a burst, a host:port, a header
// name, a path prefix, a network. The Check functions that take a field return a
// *FieldError naming it (or nil); the others return a plain error that quotes the value,
// for the caller to place under its field.

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/floodgate/floodgate/internal/ratelimit"
)

// ValidStatus reports whether status is an HTTP status the gateway answers with: from lo
// (400 for a rejection, 200 for a route's fallback answer) to 599.
func ValidStatus(status, lo int) bool { return status >= lo && status <= 599 }

// CheckStatus checks the HTTP status of a filter's rejection, named field: a 4xx or 5xx
// status. If zero is not empty, 0 is accepted too and zero says what it stands for ("the
// route's fallback", "403").
func CheckStatus(field string, status int, zero string) error {
	if ValidStatus(status, 400) || (zero != "" && status == 0) {
		return nil
	}
	if zero != "" {
		return Errorf(field, status, "want a 4xx or 5xx status, or 0 for %s", zero)
	}
	return Errorf(field, status, "want a 4xx or 5xx status")
}

// MaxBurst bounds a bucket's burst (token_bucket, promo_throttle's tiers).
const MaxBurst = 1_000_000_000

// CheckRate checks a rate limit in requests per second, named field: a number > 0 and at
// most ratelimit.MaxRate.
func CheckRate(field string, rate float64) error {
	switch {
	case math.IsNaN(rate) || math.IsInf(rate, 0) || rate <= 0:
		return Errorf(field, rate, "must be a number of requests per second > 0")
	case rate > ratelimit.MaxRate:
		return Errorf(field, rate, "must be at most %g per second", ratelimit.MaxRate)
	}
	return nil
}

// DefaultBurst is burst, or when it is unset (0) the default for rate: ceil(rate/10), at
// least 1 (a 100 ms window).
func DefaultBurst(burst int64, rate float64) int64 {
	if burst > 0 {
		return burst
	}
	return max(1, int64(math.Ceil(rate/10)))
}

// CheckBurst checks a bucket's burst for rate, named field: unset (0, DefaultBurst) or 1
// to MaxBurst, and a refill window (burst/rate, the time an empty bucket takes to fill)
// of at most ratelimit.MaxWindow. The window is checked only when rate passes CheckRate.
func CheckBurst(field string, burst int64, rate float64) error {
	switch {
	case burst < 0:
		return Errorf(field, burst, "must be >= 1 (or unset for rate/10)")
	case burst > MaxBurst:
		return Errorf(field, burst, "must be at most %d", MaxBurst)
	case CheckRate(field, rate) == nil && float64(DefaultBurst(burst, rate))/rate > ratelimit.MaxWindow.Seconds():
		return Errorf(field, burst, "burst/rate (the time an empty bucket takes to refill) must be at most %v", ratelimit.MaxWindow)
	}
	return nil
}

// CheckHostPort checks an address to listen on or connect to: host:port with an explicit
// host and a port 0-65535 (0: any free port, for a listener).
func CheckHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	if host == "" {
		return fmt.Errorf("want an explicit host (e.g. 127.0.0.1:%s), got %q", port, s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port in %q", s)
	}
	return nil
}

// CheckDialAddr checks an address a filter connects to: CheckHostPort, and a port 1-65535.
func CheckDialAddr(s string) error {
	if err := CheckHostPort(s); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s)
	if p, _ := strconv.Atoi(port); p == 0 {
		return fmt.Errorf("bad port in %q: port 0 cannot be connected to", s)
	}
	return nil
}

// ValidHeaderName reports whether s is an HTTP header name (an RFC 9110 token).
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// HopByHop lists the headers that are never forwarded (RFC 9110 7.6.1), besides the
// ones the Connection header names and any Proxy-* header.
var HopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade"}

// IsHopByHop reports whether name is a hop-by-hop header: one of HopByHop or any Proxy-*.
func IsHopByHop(name string) bool {
	for _, h := range HopByHop {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return len(name) > 6 && strings.EqualFold(name[:6], "proxy-")
}

// CheckPathPrefix checks a path prefix (a route's path, acl's deny_paths): it starts with
// '/' and is plain and normalized - no query, fragment, percent-encoding, spaces, empty
// segment or dot-dot segment - since it is compared with the request's normalized path.
func CheckPathPrefix(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("must start with '/': %q", p)
	case strings.ContainsAny(p, "?#% \t") || strings.Contains(p, "//") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Errorf("must be a plain, normalized path (no ?, #, %%, //, ..): %q", p)
	}
	return nil
}

// ParsePrefix parses a network as configured: a CIDR (10.0.0.0/8) or a single address
// (as a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a network (want e.g. 10.0.0.0/8): %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an address or network: %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
