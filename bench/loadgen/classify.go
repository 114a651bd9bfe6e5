package loadgen

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/valyala/fasthttp"
)

// VerdictHeader is the header the gateway puts on every answer it makes itself.
const VerdictHeader = "X-Floodgate-Verdict"

// Class groups verdicts by what they mean for a drill.
type Class int

// The classes, in report order.
const (
	// ClassAdmitted: no verdict header and a 2xx/3xx status - the request went through -
	// or an async route's 202 async/accepted.
	ClassAdmitted Class = iota
	// ClassShed: the gateway answered itself (any status) and said why in the header.
	ClassShed
	// ClassError: no verdict header and a 5xx - an unexplained failure.
	ClassError
	// ClassClient: no answer at all (timeout, refused, reset...): verdict "client/<kind>".
	ClassClient
	// ClassOther: no verdict header and a 1xx/4xx: verdict "http/<code>".
	ClassOther
	// NumClasses is the number of classes.
	NumClasses
)

var classNames = [NumClasses]string{"admitted", "shed", "error", "client", "other"}

func (c Class) String() string {
	if c >= 0 && c < NumClasses {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// MarshalText writes the class name (for JSON).
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Verdicts without a header.
const (
	VerdictAdmitted = "admitted"
	VerdictError    = "error"
	// VerdictAccepted is an async route's 202: the gateway answered itself, and the
	// request went through (it is durably recorded for delivery): admitted.
	VerdictAccepted = "async/accepted"
)

// Transport failures, as "client/<kind>" verdicts.
const (
	ClientTimeout     = "client/timeout"
	ClientRefused     = "client/refused"
	ClientReset       = "client/reset"
	ClientClosed      = "client/closed"
	ClientNoFreeConns = "client/no_free_conns"
	ClientDial        = "client/dial"
	ClientTooLarge    = "client/body_too_large"
	ClientBadResponse = "client/bad_response"
	ClientOther       = "client/other"
)

// maxVerdictLen bounds a verdict taken from a header; longer values are cut.
const maxVerdictLen = 64

// statusVerdicts holds "http/<code>" for every status, built once so the hot path does
// not allocate.
var statusVerdicts = func() []string {
	v := make([]string, 600)
	for i := range v {
		v[i] = "http/" + strconv.Itoa(i)
	}
	return v
}()

// Classify names the verdict of one answer: the verdict header if present, otherwise
// from the status; err (a transport error) wins over both.
func Classify(status int, verdictHeader []byte, err error) (string, Class) {
	v, c := classifyStatic(status, err, verdictHeader)
	if c == ClassShed {
		return cleanVerdict(verdictHeader), ClassShed
	}
	return v, c
}

// classifyStatic is Classify without building a string from the header (the hot path
// looks the header bytes up in a map instead).
func classifyStatic(status int, err error, verdictHeader []byte) (string, Class) {
	switch {
	case err != nil:
		return ClientKind(err), ClassClient
	case status == 202 && string(verdictHeader) == VerdictAccepted:
		return VerdictAccepted, ClassAdmitted
	case len(verdictHeader) > 0:
		return "", ClassShed
	case status >= 500:
		return VerdictError, ClassError
	case status >= 200 && status < 400:
		return VerdictAdmitted, ClassAdmitted
	case status >= 0 && status < len(statusVerdicts):
		return statusVerdicts[status], ClassOther
	default:
		return "http/invalid", ClassOther
	}
}

// cleanVerdict bounds and sanitises a header value so a hostile server cannot flood the
// report with junk.
func cleanVerdict(b []byte) string {
	if len(b) > maxVerdictLen {
		b = b[:maxVerdictLen]
	}
	ok := true
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return string(b)
	}
	var s strings.Builder
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			c = '_'
		}
		s.WriteByte(c)
	}
	return s.String()
}

// ClientKind names a transport error as a "client/<kind>" verdict.
func ClientKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return ClientTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return ClientNoFreeConns
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return ClientDial
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClientRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ClientReset
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClientClosed
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return ClientTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return ClientTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return ClientDial
	}
	msg := err.Error()
	if strings.Contains(msg, "error when reading response headers") || strings.Contains(msg, "cannot find whitespace") ||
		strings.Contains(msg, "unexpected char") || strings.Contains(msg, "non-numeric") {
		return ClientBadResponse
	}
	return ClientOther
}
