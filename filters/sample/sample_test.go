package sample_test

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"

	_ "github.com/floodgate/floodgate/filters/sample"
)

// t0 is the start of a 60s window (2026-01-01T00:00:00Z is a multiple of 60s).
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func TestDecide(t *testing.T) {
	keep := filtertest.Build(t, "sample", `ratio: 1`, nil)
	drop := filtertest.Build(t, "sample", `ratio: 0`, nil)
	filtertest.Run(t, keep, []filtertest.Case{
		{Desc: "ratio 1 keeps a user", Req: filtertest.Req{URI: "/info?uin=10001"}},
		{Desc: "ratio 1 keeps a keyless request", Req: filtertest.Req{URI: "/info"}},
	})
	filtertest.Run(t, drop, []filtertest.Case{
		{Desc: "ratio 0 drops a user with the route's fallback", Req: filtertest.Req{URI: "/info?uin=10001", Wall: t0 + int64(45*time.Second)}, Want: "sample/dropped", Check: func(t *testing.T, res filters.Result, _ *filters.Request) {
			if res.Reason.Status != 0 {
				t.Errorf("status %d, want 0 (the route's fallback)", res.Reason.Status)
			}
			// 15s left in the window, plus a jitter below 60s/8 = 7.5s capped at 5s.
			if res.RetryAfter < 15*time.Second || res.RetryAfter >= 20*time.Second {
				t.Errorf("Retry-After %v, want 15s..20s (end of the window plus jitter)", res.RetryAfter)
			}
		}},
		{Desc: "ratio 0 drops a keyless request", Req: filtertest.Req{URI: "/info"}, Want: "sample/dropped"},
	})
}

func TestKeySources(t *testing.T) {
	for _, tc := range []struct{ desc, key string }{
		{"header", "header:X-Uin"},
		{"cookie", "cookie:uin"},
		{"query", "query:user"},
		{"ip", "ip"},
	} {
		f := filtertest.Build(t, "sample", "ratio: 0.5\nkey: "+tc.key, nil)
		kept := 0
		for i := 0; i < 400; i++ {
			n := itoa(100000 + i)
			rq := filtertest.Req{URI: "/info?user=" + n, Headers: map[string]string{"X-Uin": n}, Cookies: map[string]string{"uin": n}, IP: "10.0." + itoa(i/250) + "." + itoa(i%250), Wall: t0}
			first := f.Decide(filtertest.NewRequest(t, rq)).Action
			rq.Wall += int64(30 * time.Second)
			if again := f.Decide(filtertest.NewRequest(t, rq)).Action; again != first {
				t.Fatalf("%s: user %s decided %v then %v in the same window", tc.desc, n, first, again)
			}
			if first == filters.Continue {
				kept++
			}
		}
		if kept < 150 || kept > 250 {
			t.Errorf("%s: kept %d of 400 at ratio 0.5", tc.desc, kept)
		}
	}
}

// TestRatioDistinctUsers draws 10^6 distinct users and checks the kept share against the
// 99.9% binomial interval.
func TestRatioDistinctUsers(t *testing.T) {
	const n = 1_000_000
	for _, p := range []float64{0.3, 0.05} {
		f := filtertest.Build(t, "sample", "ratio: "+ftoa(p), nil)
		r := filtertest.NewRequest(t, filtertest.Req{URI: "/info?uin=1", Wall: t0 + int64(time.Second)})
		kept := 0
		for i := 0; i < n; i++ {
			filtertest.SetQueryUint(r, "uin", uint64(1_000_000_000+i))
			if f.Decide(r).Action == filters.Continue {
				kept++
			}
		}
		lo, hi := binomialInterval(n, p, 0.999)
		t.Logf("ratio %.2f: kept %d of %d users (99.9%% interval %d..%d)", p, kept, n, lo, hi)
		if kept < lo || kept > hi {
			t.Errorf("ratio %.2f: kept %d of %d users, outside the 99.9%% binomial interval %d..%d", p, kept, n, lo, hi)
		}
	}
}

// TestRatioKeyless draws 10^6 requests without a key (one user's retries count each).
func TestRatioKeyless(t *testing.T) {
	const n = 1_000_000
	const p = 0.3
	f := filtertest.Build(t, "sample", "ratio: 0.3", nil)
	r := filtertest.NewRequest(t, filtertest.Req{URI: "/info", Wall: t0})
	kept := 0
	for i := 0; i < n; i++ {
		// Requests arrive in bursts: many share a nanosecond clock reading.
		r.Now = int64(time.Second) + int64(i/16)*1000
		if f.Decide(r).Action == filters.Continue {
			kept++
		}
	}
	lo, hi := binomialInterval(n, p, 0.999)
	t.Logf("keyless: kept %d of %d (99.9%% interval %d..%d)", kept, n, lo, hi)
	if kept < lo || kept > hi {
		t.Errorf("keyless: kept %d of %d, outside the 99.9%% binomial interval %d..%d", kept, n, lo, hi)
	}
}

// TestRatioExtremes: ratio 0 and 1 are exact, whatever the key.
func TestRatioExtremes(t *testing.T) {
	for _, p := range []float64{0, 1} {
		f := filtertest.Build(t, "sample", "ratio: "+ftoa(p), nil)
		r := filtertest.NewRequest(t, filtertest.Req{URI: "/info?uin=1", Wall: t0})
		for i := 0; i < 100_000; i++ {
			filtertest.SetQueryUint(r, "uin", uint64(i))
			r.Wall = t0 + int64(i)*int64(time.Second)
			kept := f.Decide(r).Action == filters.Continue
			if kept != (p == 1) {
				t.Fatalf("ratio %v: uin %d kept=%v", p, i, kept)
			}
		}
	}
}

// TestStableWithinWindow: a user's draw holds for the whole window, on any instance (two
// filters built apart), and at the next window a share of the users change side.
func TestStableWithinWindow(t *testing.T) {
	const users = 20_000
	const p = 0.4
	a := filtertest.Build(t, "sample", "ratio: 0.4\nwindow: 30s", nil)
	b := filtertest.Build(t, "sample", "ratio: 0.4\nwindow: 30s", nil) // another gateway instance
	r := filtertest.NewRequest(t, filtertest.Req{URI: "/info?uin=1"})
	w0 := t0 + int64(90*time.Second) // start of a 30s window
	flips, kept := 0, 0
	for i := 0; i < users; i++ {
		filtertest.SetQueryUint(r, "uin", uint64(20_000_000+i))
		r.Wall = w0
		first := a.Decide(r).Action
		for _, at := range []time.Duration{time.Millisecond, 10 * time.Second, 29*time.Second + 999*time.Millisecond} {
			r.Wall = w0 + int64(at)
			r.Now += int64(time.Second)
			if got := b.Decide(r).Action; got != first {
				t.Fatalf("uin %d: decided %v at the window's start and %v %v later (other instance)", 20_000_000+i, first, got, at)
			}
		}
		if first == filters.Continue {
			kept++
		}
		r.Wall = w0 + int64(30*time.Second)
		if a.Decide(r).Action != first {
			flips++
		}
	}
	// Independent draws per window: a user changes side with probability 2p(1-p).
	q := 2 * p * (1 - p)
	lo, hi := binomialInterval(users, q, 0.999)
	t.Logf("%d of %d users kept; %d changed side at the next window (expected %d..%d)", kept, users, flips, lo, hi)
	if flips < lo || flips > hi {
		t.Errorf("%d of %d users changed side at the next window, want %d..%d (2p(1-p) = %.2f)", flips, users, lo, hi, q)
	}
}

// TestNestedRatios: in one window, the users kept at 0.1 are among those kept at 0.5.
func TestNestedRatios(t *testing.T) {
	small := filtertest.Build(t, "sample", "ratio: 0.1", nil)
	big := filtertest.Build(t, "sample", "ratio: 0.5", nil)
	r := filtertest.NewRequest(t, filtertest.Req{URI: "/info?uin=1", Wall: t0})
	for i := 0; i < 50_000; i++ {
		filtertest.SetQueryUint(r, "uin", uint64(i))
		if small.Decide(r).Action == filters.Continue && big.Decide(r).Action != filters.Continue {
			t.Fatalf("uin %d kept at ratio 0.1 but dropped at 0.5", i)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	f := filtertest.Build(t, "sample", "ratio: 0\nwindow: 10m", nil)
	r := filtertest.NewRequest(t, filtertest.Req{URI: "/info?uin=1"})
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		filtertest.SetQueryUint(r, "uin", uint64(i))
		r.Wall = t0 + int64(9*time.Minute+50*time.Second)
		res := f.Decide(r)
		// 10s left; jitter < min(10m/8, 5s).
		if res.RetryAfter < 10*time.Second || res.RetryAfter >= 15*time.Second {
			t.Fatalf("uin %d: Retry-After %v, want 10s..15s", i, res.RetryAfter)
		}
		seen[res.RetryAfter.Round(time.Second)] = true
	}
	if len(seen) < 5 {
		t.Errorf("Retry-After takes %d distinct whole-second values over 1000 users; want the jitter to spread them", len(seen))
	}
}

func TestCoreRouteRefused(t *testing.T) {
	cfg := filtertest.Decode(t, "sample", "ratio: 0.5")
	bc := filters.NewBuildContext(filters.Route{Name: "lottery", Core: true}, "sample", nil, nil, nil)
	_, err := cfg.Build(bc, nil)
	if err == nil || !strings.Contains(err.Error(), `route "lottery" is core`) {
		t.Fatalf("Build on a core route: err = %v, want a refusal naming the route", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ desc, yaml, want string }{
		{"ratio above 1", `ratio: 1.5`, `ratio: want a share between 0 and 1 (e.g. 0.3 keeps 30% of users) (got 1.5)`},
		{"negative ratio", `ratio: -0.1`, `ratio: want a share between 0 and 1`},
		{"ratio NaN", `ratio: .nan`, `ratio: want a share between 0 and 1`},
		{"ratio not a number", `ratio: half`, `ratio: want a number, got "half"`},
		{"zero window", `window: 0s`, `window: must be > 0 (e.g. 60s) (got 0s)`},
		{"window without unit", `window: 60`, `window: not a duration`},
		{"bad key", `key: body:uin`, `unknown source "body"`},
		{"unknown field", `rate: 0.5`, `unknown field "rate"`},
		{"two problems reported together", "ratio: 2\nwindow: 0s", "window: must be > 0"},
	} {
		err := filtertest.DecodeErr(t, "sample", tc.yaml)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.desc, err, tc.want)
		}
	}
	for _, ok := range []string{``, `ratio: 0`, `ratio: 1`, `{ratio: 0.25, key: "header:X-Uin", window: 5m}`, `key: none`, `key: ip`} {
		filtertest.Decode(t, "sample", ok)
	}
}

// binomialInterval returns the central interval [lo, hi] holding at least conf of the
// Binomial(n, p) distribution, from its exact probabilities.
func binomialInterval(n int, p, conf float64) (lo, hi int) {
	mean := float64(n) * p
	sd := math.Sqrt(mean * (1 - p))
	from := max(0, int(mean-8*sd))
	to := min(n, int(mean+8*sd)+1)
	lgN, _ := math.Lgamma(float64(n) + 1)
	pmf := func(k int) float64 {
		a, _ := math.Lgamma(float64(k) + 1)
		b, _ := math.Lgamma(float64(n-k) + 1)
		return math.Exp(lgN - a - b + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	tail := (1 - conf) / 2
	cum := 0.0
	lo = from
	for k := from; k <= to; k++ {
		cum += pmf(k)
		if cum > tail {
			lo = k
			break
		}
	}
	cum = 0
	hi = to
	for k := to; k >= from; k-- {
		cum += pmf(k)
		if cum > tail {
			hi = k
			break
		}
	}
	return lo, hi
}

func TestBinomialInterval(t *testing.T) {
	// n=10^6, p=0.3: sd = 458.26; z(0.9995) = 3.2905 -> 300000 +- 1508.
	lo, hi := binomialInterval(1_000_000, 0.3, 0.999)
	if lo < 298_480 || lo > 298_500 || hi < 301_500 || hi > 301_520 {
		t.Errorf("interval %d..%d, want about 298492..301508", lo, hi)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
