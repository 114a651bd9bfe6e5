// Package filtertest is the test kit for filter authors: a fake request, a fake clock, a
// table runner and a zero-allocation assertion. See filters/README.md for a walk-through.
//
//	f := filtertest.Build(t, "acl", `deny_networks: [10.0.0.0/8]`, nil)
//	filtertest.Run(t, f, []filtertest.Case{
//		{Desc: "private network denied", Req: filtertest.Req{IP: "10.1.2.3"}, Want: "acl/denied"},
//		{Desc: "public network passes", Req: filtertest.Req{IP: "8.8.8.8"}},
//	})
package filtertest

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/decode"
)

// Clock is a fake monotonic clock for Request.Now. The zero value starts at 1s (so that
// 0 is never a valid time).
type Clock struct{ ns int64 }

// Now returns the current fake time in nanoseconds.
func (c *Clock) Now() int64 {
	if c.ns == 0 {
		c.ns = int64(time.Second)
	}
	return c.ns
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.Now(); c.ns += int64(d) }

// Req describes a fake request. Empty fields get defaults: GET, /, 127.0.0.1.
type Req struct {
	Method  string
	URI     string // path and query, e.g. "/lottery?uin=10001&adtag=wechat"
	Host    string
	Headers map[string]string
	Cookies map[string]string
	IP      string
	Route   string // route name (default "test")
	Core    bool
	// Now overrides the request time (monotonic ns); 0 means "use the clock passed to
	// Run, or 1s".
	Now int64
	// Wall is Unix ns for cross-instance windows; 0 means 2026-01-01T00:00:00Z + Now.
	Wall int64
}

// NewRequest builds a filters.Request backed by a real fasthttp.RequestCtx.
func NewRequest(t testing.TB, r Req) *filters.Request {
	t.Helper()
	var ctx fasthttp.RequestCtx
	req := new(fasthttp.Request)
	method := r.Method
	if method == "" {
		method = fasthttp.MethodGet
	}
	uri := r.URI
	if uri == "" {
		uri = "/"
	}
	host := r.Host
	if host == "" {
		host = "gateway.test"
	}
	// The request is parsed from its wire form, as the gateway's are: fasthttp keeps the
	// Cookie line as sent (Header.SetCookie would make it a parsed cookie list).
	var wire strings.Builder
	fmt.Fprintf(&wire, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, uri, host)
	for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
		fmt.Fprintf(&wire, "%s: %s\r\n", k, r.Headers[k])
	}
	if len(r.Cookies) > 0 {
		wire.WriteString("Cookie: ")
		for i, k := range slices.Sorted(maps.Keys(r.Cookies)) {
			if i > 0 {
				wire.WriteString("; ")
			}
			fmt.Fprintf(&wire, "%s=%s", k, r.Cookies[k])
		}
		wire.WriteString("\r\n")
	}
	wire.WriteString("\r\n")
	if err := req.Read(bufio.NewReader(strings.NewReader(wire.String()))); err != nil {
		t.Fatalf("filtertest: the request does not parse: %v\n%s", err, wire.String())
	}
	ipStr := r.IP
	if ipStr == "" {
		ipStr = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(ipStr)
	if err != nil {
		t.Fatalf("filtertest: bad IP %q: %v", ipStr, err)
	}
	ctx.Init(req, &net.TCPAddr{IP: ip.AsSlice(), Port: 40000}, nil)
	name := r.Route
	if name == "" {
		name = "test"
	}
	now := r.Now
	if now == 0 {
		now = int64(time.Second)
	}
	wall := r.Wall
	if wall == 0 {
		wall = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() + now
	}
	return &filters.Request{Ctx: &ctx, Now: now, Wall: wall, Route: &filters.Route{Name: name, Core: r.Core}, ClientIP: ip.Unmap()}
}

// Decode decodes and validates a filter's YAML configuration exactly as the gateway does.
func Decode(t testing.TB, name, yamlSrc string) filters.Config {
	t.Helper()
	cfg, err := decode.Filter(name, []byte(yamlSrc))
	if err != nil {
		t.Fatalf("filtertest: config of %s does not validate:\n%v", name, err)
	}
	return cfg
}

// DecodeErr returns the validation error of a configuration that should not validate.
func DecodeErr(t testing.TB, name, yamlSrc string) error {
	t.Helper()
	_, err := decode.Filter(name, []byte(yamlSrc))
	if err == nil {
		t.Fatalf("filtertest: config of %s validated, want an error:\n%s", name, yamlSrc)
	}
	return err
}

// Build decodes, validates and builds a filter for route "test" (prev as in Config.Build).
// Reasons get counters that count into the returned filter's Counts.
func Build(t testing.TB, name, yamlSrc string, prev filters.Filter) filters.Filter {
	t.Helper()
	f, _ := BuildWith(t, name, yamlSrc, prev, filters.Route{Name: "test"}, nil)
	return f
}

// Counts are the reasons a built filter declared, by verdict, with how often the gateway
// would have counted each (rejections, and shadow rejections).
type Counts struct {
	Rejected map[string]int
	Shadow   map[string]int
}

// BuildWith is Build with an explicit route and Env; it also returns the reason counts.
func BuildWith(t testing.TB, name, yamlSrc string, prev filters.Filter, route filters.Route, env *filters.Env) (filters.Filter, *Counts) {
	t.Helper()
	cfg := Decode(t, name, yamlSrc)
	counts := &Counts{Rejected: map[string]int{}, Shadow: map[string]int{}}
	bc := filters.NewBuildContext(route, name, nil, env, func(r *filters.Reason) {
		v := r.Verdict
		r.Count = func() { counts.Rejected[v]++ }
		r.Shadow = func() { counts.Shadow[v]++ }
	})
	f, err := cfg.Build(bc, prev)
	if err != nil {
		t.Fatalf("filtertest: build %s: %v", name, err)
	}
	closeAtCleanup(t, f, prev)
	return f, counts
}

// buildConfig builds a decoded configuration for route "test".
func buildConfig(t testing.TB, name string, cfg filters.Config, prev filters.Filter) filters.Filter {
	t.Helper()
	f, err := cfg.Build(filters.NewBuildContext(filters.Route{Name: "test"}, name, nil, nil, nil), prev)
	if err != nil {
		t.Fatalf("filtertest: build %s: %v", name, err)
	}
	closeAtCleanup(t, f, prev)
	return f
}

func closeAtCleanup(t testing.TB, f, prev filters.Filter) {
	t.Cleanup(func() {
		if c, ok := f.(interface{ Close() error }); ok && f != prev {
			c.Close()
		}
	})
}

// Case is one row of a filter's table test.
type Case struct {
	Desc string
	Req  Req
	// Advance moves the clock before this case's request.
	Advance time.Duration
	// Want is the expected verdict ("acl/denied"), or "" for Continue.
	Want string
	// WantStatus, if set, is the expected Reason.Status of a rejection.
	WantStatus int
	// Check, if set, inspects the result and the request after Decide (e.g. a header the
	// filter added).
	Check func(t *testing.T, res filters.Result, r *filters.Request)
}

// Run runs the cases in order against f, on one fake clock, each as a subtest named by
// its Desc (go test -run 'TestX/denied' runs one; a failure names its case).
func Run(t *testing.T, f filters.Filter, cases []Case) {
	t.Helper()
	var clock Clock
	for _, c := range cases {
		clock.Advance(c.Advance)
		rq := c.Req
		if rq.Now == 0 {
			rq.Now = clock.Now()
		}
		t.Run(c.Desc, func(t *testing.T) {
			t.Helper()
			req := NewRequest(t, rq)
			res := f.Decide(req)
			got := ""
			if res.Action == filters.Reject {
				if res.Reason == nil {
					t.Errorf("%s: rejected without a Reason", c.Desc)
					return
				}
				got = res.Reason.Verdict
			}
			if got != c.Want {
				t.Errorf("%s: verdict %q, want %q", c.Desc, orContinue(got), orContinue(c.Want))
				return
			}
			if c.WantStatus != 0 && (res.Reason == nil || res.Reason.Status != c.WantStatus) {
				t.Errorf("%s: status %v, want %d", c.Desc, res.Reason, c.WantStatus)
			}
			if c.Check != nil {
				c.Check(t, res, req)
			}
		})
	}
}

func orContinue(v string) string {
	if v == "" {
		return "continue"
	}
	return v
}

// AssertNoAllocs fails t if Decide allocates for req (after a warm-up call). Call it from
// a test file guarded by `//go:build !race` (the race detector allocates).
func AssertNoAllocs(t testing.TB, f filters.Filter, req *filters.Request) {
	t.Helper()
	f.Decide(req)
	if n := testing.AllocsPerRun(1000, func() { f.Decide(req) }); n != 0 {
		t.Errorf("Decide allocates %.1f times per request; the request path must allocate nothing", n)
	}
}

// AssertNoAllocsFunc is AssertNoAllocs for a function that varies the request itself
// (random keys, advancing clock).
func AssertNoAllocsFunc(t testing.TB, fn func()) {
	t.Helper()
	fn()
	if n := testing.AllocsPerRun(1000, fn); n != 0 {
		t.Errorf("allocates %.1f times per call; the request path must allocate nothing", n)
	}
}

// SetQueryArg makes name=value the request's whole query string, as a request read from
// the wire carries it. Filters read the raw query (filters.Request.Query), so a test that
// varies a key between decisions sets it this way, not through ctx.QueryArgs() (whose
// changes reach only what is forwarded). name and value are written as given, not
// encoded. For a query of up to 256 bytes it allocates nothing once the URI's buffer has
// grown to the query's size.
func SetQueryArg[V string | []byte](r *filters.Request, name string, value V) {
	var buf [256]byte
	q := append(buf[:0], name...)
	q = append(q, '=')
	q = append(q, value...)
	r.Ctx.URI().SetQueryStringBytes(q)
}

// SetQueryUint is SetQueryArg with a decimal number.
func SetQueryUint(r *filters.Request, name string, v uint64) {
	var buf [20]byte
	SetQueryArg(r, name, strconv.AppendUint(buf[:0], v, 10))
}
