package tokenbucket

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
	"github.com/floodgate/floodgate/gateway/config"
)

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		desc string
		yaml string
		want Config // after Validate (defaults filled in); ignored when wantErr is set
		// wantErr lists substrings the error must contain (field and value).
		wantErr []string
	}{
		{desc: "route-wide, defaults", yaml: `rate: 20000`,
			want: Config{Rate: 20000, Burst: 2000, Status: 429, RetryJitter: cfgDur(2 * time.Second)}},
		{desc: "burst default is at least 1", yaml: `rate: 0.5`,
			want: Config{Rate: 0.5, Burst: 1, Status: 429, RetryJitter: cfgDur(2 * time.Second)}},
		{desc: "burst default rounds up", yaml: `rate: 15`,
			want: Config{Rate: 15, Burst: 2, Status: 429, RetryJitter: cfgDur(2 * time.Second)}},
		{desc: "per user, defaults", yaml: `{rate: 10, key: "query:uin"}`,
			want: Config{Rate: 10, Burst: 1, Key: key(t, "query:uin"), MaxKeys: DefaultMaxKeys, MissingKey: "shared", Status: 429, RetryJitter: cfgDur(2 * time.Second)}},
		{desc: "everything set", yaml: "rate: 100\nburst: 5\nkey: cookie:uin\nmax_keys: 5000\nmissing_key: reject\nwait: 250ms\nstatus: 503\nglobal: true\nretry_jitter: 2s",
			want: Config{Rate: 100, Burst: 5, Key: key(t, "cookie:uin"), MaxKeys: 5000, MissingKey: "reject", Wait: cfgDur(250 * time.Millisecond), Status: 503, Global: true, RetryJitter: cfgDur(2 * time.Second)}},

		{desc: "rate missing", yaml: `burst: 5`, wantErr: []string{"rate", "must be a number of requests per second > 0", "got 0"}},
		{desc: "rate negative", yaml: `rate: -1`, wantErr: []string{"rate", "got -1"}},
		{desc: "rate not a number", yaml: `rate: lots`, wantErr: []string{"rate", `"lots"`}},
		{desc: "rate too high", yaml: `rate: 2e9`, wantErr: []string{"rate", "at most"}},
		{desc: "burst negative", yaml: `{rate: 10, burst: -3}`, wantErr: []string{"burst", "got -3"}},
		{desc: "window too long", yaml: `{rate: 0.001, burst: 1000}`, wantErr: []string{"burst", "burst/rate", "24h"}},
		{desc: "bad key", yaml: `{rate: 10, key: "body:uin"}`, wantErr: []string{"key", "body:uin"}},
		{desc: "max_keys without key", yaml: `{rate: 10, max_keys: 100}`, wantErr: []string{"max_keys", "only with a key", "got 100"}},
		{desc: "max_keys too large", yaml: `{rate: 10, key: ip, max_keys: 1000000000000}`, wantErr: []string{"max_keys", "got 1000000000000"}},
		{desc: "missing_key unknown", yaml: `{rate: 10, key: ip, missing_key: drop}`, wantErr: []string{"missing_key", "want shared, pass or reject", "got drop"}},
		{desc: "missing_key without key", yaml: `{rate: 10, missing_key: pass}`, wantErr: []string{"missing_key", "only with a key"}},
		{desc: "wait too long", yaml: `{rate: 10, wait: 1m}`, wantErr: []string{"wait", "at most 10s", "got 1m0s"}},
		{desc: "wait not a duration", yaml: `{rate: 10, wait: soon}`, wantErr: []string{"wait", "not a duration"}},
		{desc: "status not an error", yaml: `{rate: 10, status: 200}`, wantErr: []string{"status", "got 200"}},
		{desc: "unknown field", yaml: `{rate: 10, burts: 3}`, wantErr: []string{`unknown field "burts"`}},
		{desc: "every problem at once", yaml: `{rate: 0, burst: -1, status: 99}`, wantErr: []string{"rate", "burst", "status"}},
	} {
		if c.wantErr != nil {
			err := filtertest.DecodeErr(t, Name, c.yaml)
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not mention %q", c.desc, err, w)
				}
			}
			continue
		}
		got := filtertest.Decode(t, Name, c.yaml).(*Config)
		if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.desc, *got, c.want)
		}
	}
}

func TestDecide(t *testing.T) {
	retryIn := func(lo, hi time.Duration) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, res filters.Result, _ *filters.Request) {
			if res.RetryAfter < lo || res.RetryAfter >= hi {
				t.Errorf("RetryAfter %v, want in [%v, %v)", res.RetryAfter, lo, hi)
			}
		}
	}
	waits := func(d time.Duration) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, res filters.Result, _ *filters.Request) {
			if res.Wait != d {
				t.Errorf("Wait %v, want %v", res.Wait, d)
			}
		}
	}
	const limited = "token_bucket/limited"
	u1 := filtertest.Req{URI: "/lottery?uin=10001"}
	u2 := filtertest.Req{URI: "/lottery?uin=10002"}
	for _, tc := range []struct {
		desc  string
		yaml  string
		cases []filtertest.Case
	}{
		{desc: "route-wide", yaml: `{rate: 10, burst: 2}`, cases: []filtertest.Case{
			{Desc: "burst 1", Req: u1},
			{Desc: "burst 2, another user: same bucket", Req: u2},
			{Desc: "empty", Req: u1, Want: limited, WantStatus: 429, Check: retryIn(100*time.Millisecond, 2100*time.Millisecond)},
			{Desc: "one interval later", Req: u1, Advance: 100 * time.Millisecond},
			{Desc: "empty again", Req: u2, Want: limited},
			{Desc: "a quiet second refills the burst, no more", Advance: time.Second, Req: u1},
			{Desc: "second of the burst", Req: u1},
			{Desc: "burst used", Req: u1, Want: limited},
		}},
		{desc: "per user from a query parameter", yaml: `{rate: 10, burst: 1, key: "query:uin"}`, cases: []filtertest.Case{
			{Desc: "user 1", Req: u1},
			{Desc: "user 1 again", Req: u1, Want: limited, Check: retryIn(100*time.Millisecond, 2100*time.Millisecond)},
			{Desc: "user 2 has its own bucket", Req: u2},
			{Desc: "user 1 refilled", Req: u1, Advance: 100 * time.Millisecond},
		}},
		{desc: "per user from a cookie, missing key shared", yaml: `{rate: 10, burst: 1, key: "cookie:uin"}`, cases: []filtertest.Case{
			{Desc: "user 1", Req: filtertest.Req{Cookies: map[string]string{"uin": "1"}}},
			{Desc: "no cookie", Req: filtertest.Req{}},
			{Desc: "no cookie shares one bucket", Req: filtertest.Req{Cookies: map[string]string{"other": "1"}}, Want: limited},
			{Desc: "user 2", Req: filtertest.Req{Cookies: map[string]string{"uin": "2"}}},
		}},
		{desc: "per header, missing key passes", yaml: `{rate: 10, burst: 1, key: "header:X-Uin", missing_key: pass}`, cases: []filtertest.Case{
			{Desc: "user 1", Req: filtertest.Req{Headers: map[string]string{"X-Uin": "1"}}},
			{Desc: "user 1 again", Req: filtertest.Req{Headers: map[string]string{"X-Uin": "1"}}, Want: limited},
			{Desc: "no header", Req: filtertest.Req{}},
			{Desc: "no header, again", Req: filtertest.Req{}},
		}},
		{desc: "per IP, missing key rejected", yaml: `{rate: 10, burst: 1, key: "query:uin", missing_key: reject}`, cases: []filtertest.Case{
			{Desc: "no uin", Req: filtertest.Req{URI: "/lottery"}, Want: "token_bucket/missing_key", WantStatus: 400},
			{Desc: "empty uin", Req: filtertest.Req{URI: "/lottery?uin="}, Want: "token_bucket/missing_key"},
			{Desc: "uin", Req: u1},
		}},
		{desc: "per client IP", yaml: `{rate: 10, burst: 1, key: ip}`, cases: []filtertest.Case{
			{Desc: "client 1", Req: filtertest.Req{IP: "10.0.0.1"}},
			{Desc: "client 2", Req: filtertest.Req{IP: "10.0.0.2"}},
			{Desc: "client 1 again", Req: filtertest.Req{IP: "10.0.0.1"}, Want: limited},
			{Desc: "IPv6 client", Req: filtertest.Req{IP: "2001:db8::1"}},
		}},
		{desc: "queueing", yaml: `{rate: 10, burst: 1, wait: 250ms, status: 503}`, cases: []filtertest.Case{
			{Desc: "the token", Req: u1, Check: waits(0)},
			{Desc: "next token due in 100ms: reserved", Req: u1, Check: waits(100 * time.Millisecond)},
			{Desc: "due in 200ms: reserved", Req: u1, Check: waits(200 * time.Millisecond)},
			{Desc: "due in 300ms: too far", Req: u1, Want: limited, WantStatus: 503, Check: retryIn(300*time.Millisecond, 2300*time.Millisecond)},
			{Desc: "50ms later, due in 250ms: reserved", Advance: 50 * time.Millisecond, Req: u1, Check: waits(250 * time.Millisecond)},
		}},
		{desc: "no jitter", yaml: `{rate: 10, burst: 1, retry_jitter: 0s}`, cases: []filtertest.Case{
			{Desc: "the token", Req: u1},
			{Desc: "limited", Req: u1, Want: limited, Check: retryIn(100*time.Millisecond, 100*time.Millisecond+1)},
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			filtertest.Run(t, filtertest.Build(t, Name, tc.yaml, nil), tc.cases)
		})
	}
}

// TestExactness: 5x the rate offered evenly for 5 s (fake clock) admits at most
// ideal + 1 and at least 0.999 x ideal, ideal = burst + rate x 5s; route-wide, per key
// and global.
func TestExactness(t *testing.T) {
	for _, rate := range []int{10, 1000, 20000} {
		for _, mode := range []struct {
			name, yaml string
			instances  int64
		}{
			{"route", "", 1},
			{"per-user", "key: query:uin", 1},
			{"global/2", "global: true", 2},
		} {
			t.Run(fmt.Sprintf("%d/s/%s", rate, mode.name), func(t *testing.T) {
				env := filters.NewEnv()
				env.SetInstances(mode.instances)
				f, _ := filtertest.BuildWith(t, Name, fmt.Sprintf("{rate: %d, %s}", rate, mode.yaml), nil, filters.Route{Name: "test"}, env)
				req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=10001"})
				const period = 5 * time.Second
				offered := int64(5 * rate * 5)
				step := int64(period) / offered
				start := int64(time.Second)
				admitted := 0
				for i := range offered + 1 { // requests from 0 to 5s, both included
					req.Now = start + i*step
					if f.Decide(req).Action == filters.Continue {
						admitted++
					}
				}
				share := float64(rate) / float64(mode.instances)
				burst := max(1, (int64(rate)/10+mode.instances-1)/mode.instances)
				ideal := float64(burst) + share*period.Seconds()
				if float64(admitted) > ideal+1 || float64(admitted) < 0.999*ideal {
					t.Errorf("admitted %d, ideal %.1f", admitted, ideal)
				}
			})
		}
	}
}

// TestSimultaneous: n goroutines at the same instant against burst b admit exactly b,
// route-wide and for one user (known to the table or new).
func TestSimultaneous(t *testing.T) {
	for _, c := range []struct {
		yaml string
		n    int
		want int
	}{
		{`{rate: 1000, burst: 100}`, 1000, 100},
		{`{rate: 1000, burst: 100, key: "query:uin"}`, 1000, 100},
		{`{rate: 10, burst: 1, key: "query:uin"}`, 64, 1},
		{`{rate: 20000, burst: 5000}`, 4000, 4000},
	} {
		for round := range 10 {
			f := filtertest.Build(t, Name, c.yaml, nil)
			const workers = 8
			reqs := make([]*filters.Request, workers)
			for i := range reqs {
				reqs[i] = filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=777", Now: int64(5 * time.Second)})
			}
			var admitted atomic.Int64
			var ready, done sync.WaitGroup
			gate := make(chan struct{})
			for w := range workers {
				ready.Add(1)
				done.Add(1)
				go func() {
					defer done.Done()
					ready.Done()
					<-gate
					for i := w; i < c.n; i += workers {
						if f.Decide(reqs[w]).Action == filters.Continue {
							admitted.Add(1)
						}
					}
				}()
			}
			ready.Wait()
			close(gate)
			done.Wait()
			if got := admitted.Load(); got != int64(c.want) {
				t.Fatalf("%s, round %d: %d simultaneous requests admitted %d, want %d", c.yaml, round, c.n, got, c.want)
			}
		}
	}
}

// TestGlobal: each instance enforces rate/n and burst/n, n read on every request.
func TestGlobal(t *testing.T) {
	env := filters.NewEnv()
	f, _ := filtertest.BuildWith(t, Name, `{rate: 100, burst: 60, global: true}`, nil, filters.Route{Name: "test"}, env)
	req := filtertest.NewRequest(t, filtertest.Req{})
	now := int64(time.Second)
	burst := func() int {
		n := 0
		for f.Decide(req).Action == filters.Continue {
			n++
		}
		return n
	}
	req.Now = now
	if got := burst(); got != 60 {
		t.Fatalf("one instance: burst %d, want 60", got)
	}
	// Ten seconds later, four instances share the limit: 15 each, then 25/s each.
	env.SetInstances(4)
	now += int64(10 * time.Second)
	req.Now = now
	if got := burst(); got != 15 {
		t.Fatalf("four instances: burst %d, want 15", got)
	}
	req.Now = now + int64(40*time.Millisecond)
	if got := burst(); got != 1 {
		t.Fatalf("four instances, one interval (40ms) later: %d, want 1", got)
	}
	// An instance dies: three share it, at once (burst 20, interval 30ms); the bucket,
	// drained, stays drained (a 600ms window in both cases).
	env.SetInstances(3)
	req.Now = now + int64(50*time.Millisecond)
	if got := burst(); got != 0 {
		t.Fatalf("three instances, drained bucket: %d admitted, want 0", got)
	}
	req.Now = now + int64(80*time.Millisecond)
	if got := burst(); got != 1 {
		t.Fatalf("three instances, 30ms later: %d, want 1", got)
	}
}

// TestReload: a rebuilt filter with the same key and max_keys shares the buckets, so a
// reload is not a free burst; a new key or max_keys starts full.
func TestReload(t *testing.T) {
	u1 := filtertest.Req{URI: "/lottery?uin=10001", Now: int64(time.Second)}
	drain := func(f filters.Filter, r filtertest.Req) int {
		req := filtertest.NewRequest(t, r)
		n := 0
		for f.Decide(req).Action == filters.Continue {
			n++
		}
		return n
	}
	for _, c := range []struct {
		desc, before, after string
		wantCarried         bool
		wantAfter           int // admitted at once by the new filter after the old drained it
	}{
		{desc: "same config", before: `{rate: 1000, key: "query:uin"}`, after: `{rate: 1000, key: "query:uin"}`, wantCarried: true},
		{desc: "status and wait changed", before: `{rate: 1000, key: "query:uin"}`, after: `{rate: 1000, key: "query:uin", status: 503, retry_jitter: 0s}`, wantCarried: true},
		{desc: "rate cut, default burst (same window)", before: `{rate: 1000, key: "query:uin"}`, after: `{rate: 500, key: "query:uin"}`, wantCarried: true},
		{desc: "rate raised, default burst", before: `{rate: 1000}`, after: `{rate: 4000}`, wantCarried: true},
		// a drained bucket stays drained (ratelimit.Handover): no part of the burst is a gift
		{desc: "rate cut, fixed burst: still drained", before: `{rate: 1000, burst: 100}`, after: `{rate: 500, burst: 100}`, wantCarried: true},
		{desc: "burst raised: still drained", before: `{rate: 1000, burst: 10}`, after: `{rate: 1000, burst: 100}`, wantCarried: true},
		{desc: "global switched on", before: `{rate: 1000}`, after: `{rate: 1000, global: true}`, wantCarried: true},
		{desc: "key changed: fresh", before: `{rate: 1000, key: "query:uin"}`, after: `{rate: 1000, key: "header:X-Uin"}`, wantAfter: 100},
		{desc: "max_keys changed: fresh", before: `{rate: 1000, key: "query:uin"}`, after: `{rate: 1000, key: "query:uin", max_keys: 4096}`, wantAfter: 100},
		{desc: "key removed: fresh", before: `{rate: 1000, key: "query:uin"}`, after: `{rate: 1000}`, wantAfter: 100},
	} {
		old := filtertest.Build(t, Name, c.before, nil)
		if n := drain(old, u1); n == 0 {
			t.Fatalf("%s: old filter admitted nothing", c.desc)
		}
		nf := filtertest.Build(t, Name, c.after, old)
		if got := nf.(*TokenBucket).Carried(); got != c.wantCarried {
			t.Errorf("%s: carried %v, want %v", c.desc, got, c.wantCarried)
		}
		got := drain(nf, u1)
		if got != c.wantAfter {
			t.Errorf("%s: new filter admitted %d at once, want %d", c.desc, got, c.wantAfter)
		}
		// The old filter is untouched by the build: only requests change buckets.
		if c.wantCarried && drain(old, u1) != 0 {
			t.Errorf("%s: old filter admits again after the reload", c.desc)
		}
	}
}

// TestRetryAfterSpread: rejected clients get different Retry-After values (whole
// seconds: the default jitter of up to 2s spreads them over three seconds).
func TestRetryAfterSpread(t *testing.T) {
	f := filtertest.Build(t, Name, `{rate: 10, burst: 1, key: "query:uin"}`, nil)
	seconds := map[int64]int{}
	for u := range 1000 {
		req := filtertest.NewRequest(t, filtertest.Req{URI: fmt.Sprintf("/lottery?uin=%d", 10000+u)})
		f.Decide(req)
		res := f.Decide(req)
		if res.Action != filters.Reject {
			t.Fatalf("user %d: second request admitted", u)
		}
		seconds[int64((res.RetryAfter+time.Second-1)/time.Second)]++
	}
	if len(seconds) < 3 || seconds[1] > 600 || seconds[2] > 600 {
		t.Errorf("Retry-After seconds not spread: %v", seconds)
	}
}

func key(t *testing.T, s string) filters.KeySpec {
	k, err := filters.ParseKeySpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func cfgDur(d time.Duration) filters.Duration { return filters.Duration(d) }

// TestOverrides: rate and the other values are addressable by path (Consul key, plan).
func TestOverrides(t *testing.T) {
	doc, err := config.Parse("gw.yaml", []byte(`
pools:
  query: {addrs: ["127.0.0.1:18081"]}
routes:
  lottery:
    path: /lottery
    pool: query
    filters:
      token_bucket: {rate: 20000, key: "cookie:uin"}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(doc, []config.Override{
		{Path: "routes/lottery/token_bucket/rate", Value: "10000", Origin: "consul"},
		{Path: "routes/lottery/token_bucket/wait", Value: "100ms", Origin: "plan:midnight"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Routes["lottery"].Chain[0].Config.(*Config)
	if c.Rate != 10000 || c.Burst != 1000 || c.Wait.D() != 100*time.Millisecond || c.MaxKeys != DefaultMaxKeys {
		t.Errorf("after overrides: %+v", *c)
	}
	_, err = config.Load(doc, []config.Override{{Path: "routes/lottery/token_bucket/rate", Value: "0", Origin: "consul:floodgate/routes/lottery/token_bucket/rate"}})
	if err == nil || !strings.Contains(err.Error(), "consul:floodgate/routes/lottery/token_bucket/rate") {
		t.Errorf("rate 0: error %v, want one naming the Consul key", err)
	}
}

// TestKeySpellingsShareABucket: with a per-user bucket keyed "as number", every spelling
// of one user id in testdata/attacks/keys.txt takes from the same bucket (the attack
// admitted 16x the limit over 22 spellings), and bad spellings are rejected as bad keys.
func TestKeySpellingsShareABucket(t *testing.T) {
	data, err := os.ReadFile("../../testdata/attacks/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	f := filtertest.Build(t, Name, "{rate: 0.001, burst: 1, key: query:uin as number}", nil)
	cases := []filtertest.Case{{Desc: "the user's one token", Req: filtertest.Req{URI: "/lottery?uin=10001"}}}
	for _, line := range strings.Split(string(data), "\n") {
		fs := strings.Fields(line)
		if len(fs) != 2 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		switch fs[1] {
		case "10001":
			cases = append(cases, filtertest.Case{Desc: fs[0] + " is the same user", Req: filtertest.Req{URI: "/lottery?" + fs[0]}, Want: "token_bucket/limited"})
		case "bad":
			cases = append(cases, filtertest.Case{Desc: fs[0] + " is a bad key", Req: filtertest.Req{URI: "/lottery?" + fs[0]}, Want: "token_bucket/bad_key", WantStatus: 400})
		}
	}
	filtertest.Run(t, f, cases)
	t.Logf("%d spellings", len(cases))
}

// TestLiveBurstChange: the case - rate 300/s under 600-800/s offered, burst cut
// live from 300 to 30 - and the other direction. Admitted per 100 ms window after the
// change must stay at the new rate: no blackout (the cut admitted nothing for 0.9 s),
// and no free burst (a raise must not hand a drained bucket its new burst at once).
func TestLiveBurstChange(t *testing.T) {
	const ms = int64(time.Millisecond)
	run := func(f filters.Filter, from, to, every int64) (admitted int) {
		for now := from; now < to; now += every {
			req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery", Now: now})
			if f.Decide(req).Action == filters.Continue {
				admitted++
			}
		}
		return admitted
	}
	for _, tc := range []struct {
		desc, before, after string
		// admitted in the first 100 ms after the change, and in the second after it
		firstMin, firstMax, secondMin, secondMax int
	}{
		// 300/s: 30 per 100 ms; the cut bucket (full again 1 s ahead under burst 300)
		// must admit at the rate at once: 30 +- a token or two in the first 100 ms
		{"burst cut 300 -> 30", "{rate: 300, burst: 300}", "{rate: 300, burst: 30}", 28, 32, 295, 305},
		// drained under burst 30: the raise gives no tokens at once
		{"burst raised 30 -> 300", "{rate: 300, burst: 30}", "{rate: 300, burst: 300}", 28, 32, 295, 305},
		{"rate cut 300 -> 100, burst 30", "{rate: 300, burst: 30}", "{rate: 100, burst: 30}", 9, 11, 98, 102},
		{"rate raised 100 -> 300, burst 30", "{rate: 100, burst: 30}", "{rate: 300, burst: 30}", 28, 32, 295, 305},
	} {
		old := filtertest.Build(t, Name, tc.before, nil)
		// 700/s offered for 3 s: the bucket is drained and running at its rate
		start := int64(time.Second)
		run(old, start, start+3000*ms, 1428571)
		change := start + 3000*ms
		nf := filtertest.Build(t, Name, tc.after, old)
		first := run(nf, change, change+100*ms, 1428571)
		second := run(nf, change+100*ms, change+1100*ms, 1428571)
		if first < tc.firstMin || first > tc.firstMax {
			t.Errorf("%s: admitted %d in the first 100 ms after the change, want %d..%d", tc.desc, first, tc.firstMin, tc.firstMax)
		}
		if second < tc.secondMin || second > tc.secondMax {
			t.Errorf("%s: admitted %d in the second after, want %d..%d", tc.desc, second, tc.secondMin, tc.secondMax)
		}
		t.Logf("%-35s first 100 ms: %d, next second: %d", tc.desc, first, second)
	}
}

// TestLiveBurstChangePerKey is TestLiveBurstChange for buckets per key (token_bucket with
// a key): every key's bucket is carried over the change on its first request after it,
// so each key keeps to the new rate from the change on - no blackout after a cut, no free
// burst after a raise - whichever way rate or burst moved. Three users, each offered
// 700/s; every user's admitted count is checked.
func TestLiveBurstChangePerKey(t *testing.T) {
	const ms = int64(time.Millisecond)
	users := []string{"10001", "10002", "10003"}
	run := func(f filters.Filter, from, to, every int64) map[string]int {
		admitted := map[string]int{}
		for now := from; now < to; now += every {
			for i, u := range users {
				// the users' requests are spread over the period, not simultaneous
				req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=" + u, Now: now + int64(i)*every/int64(len(users))})
				if f.Decide(req).Action == filters.Continue {
					admitted[u]++
				}
			}
		}
		return admitted
	}
	for _, tc := range []struct {
		desc, before, after                      string
		firstMin, firstMax, secondMin, secondMax int
	}{
		{"burst cut 300 -> 30", `{rate: 300, burst: 300, key: "query:uin"}`, `{rate: 300, burst: 30, key: "query:uin"}`, 28, 32, 295, 305},
		{"burst raised 30 -> 300", `{rate: 300, burst: 30, key: "query:uin"}`, `{rate: 300, burst: 300, key: "query:uin"}`, 28, 32, 295, 305},
		{"rate cut 300 -> 100, burst 30", `{rate: 300, burst: 30, key: "query:uin"}`, `{rate: 100, burst: 30, key: "query:uin"}`, 9, 11, 98, 102},
		{"rate raised 100 -> 300, burst 30", `{rate: 100, burst: 30, key: "query:uin"}`, `{rate: 300, burst: 30, key: "query:uin"}`, 28, 32, 295, 305},
	} {
		old := filtertest.Build(t, Name, tc.before, nil)
		start := int64(time.Second)
		run(old, start, start+3000*ms, 1428571)
		change := start + 3000*ms
		nf := filtertest.Build(t, Name, tc.after, old)
		first := run(nf, change, change+100*ms, 1428571)
		second := run(nf, change+100*ms, change+1100*ms, 1428571)
		for _, u := range users {
			if first[u] < tc.firstMin || first[u] > tc.firstMax {
				t.Errorf("%s: user %s admitted %d in the first 100 ms after the change, want %d..%d", tc.desc, u, first[u], tc.firstMin, tc.firstMax)
			}
			if second[u] < tc.secondMin || second[u] > tc.secondMax {
				t.Errorf("%s: user %s admitted %d in the second after, want %d..%d", tc.desc, u, second[u], tc.secondMin, tc.secondMax)
			}
		}
		t.Logf("%-35s per user, first 100 ms: %v, next second: %v", tc.desc, first, second)
	}
}
