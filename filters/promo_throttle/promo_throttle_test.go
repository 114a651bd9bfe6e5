package promothrottle

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/metrics"
)

// sketch is the configuration of the issue: organic traffic plus two promotion channels.
const sketch = `
source: query:adtag
default_tier: organic
pressure: 0
tiers:
  organic: {priority: 100, rate: 5000, burst: 500}
  wechat:  {priority: 50, rate: 2000, match: [wechat, wx], prefix: [wx_]}
  banner:  {priority: 10, rate: 500, prefix: [bn_]}
`

func TestConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c := filtertest.Decode(t, Name, sketch).(*Config)
		if c.Status != 429 || c.ShedStatus != 0 || c.ShedRetryAfter.D() != 10*time.Second || c.RetryJitter.D() != 2*time.Second {
			t.Errorf("defaults: %+v", c)
		}
		for name, want := range map[string]int64{"organic": 500, "wechat": 200, "banner": 50} {
			if got := c.Tiers[name].Burst; got != want {
				t.Errorf("tier %s: burst %d, want %d", name, got, want)
			}
		}
	})
	tiers := "tiers: {a: {priority: 1, rate: 10}, b: {priority: 2, rate: 10}}"
	for _, c := range []struct {
		desc    string
		yaml    string
		wantErr []string // substrings: field and value
	}{
		{"source missing", "default_tier: a\n" + tiers, []string{"source", "want query:NAME"}},
		{"source is the IP", "source: ip\ndefault_tier: a\n" + tiers, []string{"source", "got ip"}},
		{"no tiers", "source: query:adtag\ndefault_tier: a", []string{"tiers", "at least one tier", "default_tier", `got a`}},
		{"default_tier not a tier", "source: query:adtag\ndefault_tier: organic\n" + tiers, []string{"default_tier", "must name a tier (tiers: a, b)", "got organic"}},
		{"default_tier missing", "source: query:adtag\n" + tiers, []string{"default_tier", "must name a tier"}},
		{"pressure above the number of tiers", "source: query:adtag\ndefault_tier: a\npressure: 3\n" + tiers, []string{"pressure", "(2: shed all)", "got 3"}},
		{"pressure negative", "source: query:adtag\ndefault_tier: a\npressure: -1\n" + tiers, []string{"pressure", "got -1"}},
		{"rate zero", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 0}}", []string{"tiers.a.rate", "> 0", "got 0"}},
		{"rate missing", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1}}", []string{"tiers.a.rate"}},
		{"burst negative", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5, burst: -2}}", []string{"tiers.a.burst", "got -2"}},
		{"duplicate match value", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5, match: [wx]}, b: {priority: 2, rate: 5, match: [qq, wx]}}",
			[]string{"tiers.b.match.1", `already matched by tier "a"`, "got wx"}},
		{"duplicate prefix", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5, prefix: [wx_]}, b: {priority: 2, rate: 5, prefix: [wx_]}}",
			[]string{"tiers.b.prefix.0", `already a prefix of tier "a"`, "got wx_"}},
		{"empty match value", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5, match: ['']}}", []string{"tiers.a.match.0", "must not be empty"}},
		{"empty prefix", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5, prefix: ['']}}", []string{"tiers.a.prefix.0", "must not be empty"}},
		{"same priority", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 7, rate: 5}, b: {priority: 7, rate: 5}}", []string{"tiers.b.priority", `tier "a" has the same priority`, "got 7"}},
		{"bad tier name", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5}, 'we chat': {priority: 2, rate: 5}}", []string{"tiers.we chat", "tier names use"}},
		{"empty tier", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5}, b: {}}", []string{"tiers.b.rate"}},
		{"unknown tier field", "source: query:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5, weight: 3}}", []string{`unknown field "weight"`}},
		{"status", "source: query:adtag\ndefault_tier: a\nstatus: 302\nshed_status: 200\n" + tiers, []string{"status", "got 302", "shed_status", "got 200"}},
		{"shed_retry_after too long", "source: query:adtag\ndefault_tier: a\nshed_retry_after: 1h\n" + tiers, []string{"shed_retry_after", "got 1h0m0s"}},
	} {
		err := filtertest.DecodeErr(t, Name, c.yaml)
		for _, w := range c.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.desc, err, w)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	f := filtertest.Build(t, Name, sketch+`  wx_vip: {priority: 60, rate: 100, prefix: [wx_vip_]}`, nil).(*PromoThrottle)
	for _, c := range []struct {
		desc, uri, want string
	}{
		{"no tag: organic", "/lottery", "organic"},
		{"empty tag: organic", "/lottery?adtag=", "organic"},
		{"unknown tag: organic", "/lottery?adtag=qqmail", "organic"},
		{"exact", "/lottery?adtag=wechat", "wechat"},
		{"second exact value", "/lottery?uin=1&adtag=wx", "wechat"},
		{"prefix", "/lottery?adtag=wx_moments", "wechat"},
		{"longest prefix wins", "/lottery?adtag=wx_vip_1", "wx_vip"},
		{"other tier's prefix", "/lottery?adtag=bn_top", "banner"},
		{"exact ignores case", "/lottery?adtag=WeChat", "wechat"},
		{"in capitals", "/lottery?adtag=BN_TOP", "banner"},
		{"surrounding whitespace (percent-encoded) is ignored", "/lottery?adtag=wechat%20", "wechat"},
		{"a plus (space) before the tag is ignored", "/lottery?adtag=+wx", "wechat"},
		{"only whitespace is no tag", "/lottery?adtag=%20%09", "organic"},
		{"the tag given twice has no tier", "/lottery?adtag=zz&adtag=bn_top", ""},
		{"prefix alone is not the prefix's tier", "/lottery?adtag=bn", "organic"},
		{"url-encoded value is decoded", "/lottery?adtag=wx%5Fa", "wechat"},
	} {
		if got := f.Tier(filtertest.NewRequest(t, filtertest.Req{URI: c.uri})); got != c.want {
			t.Errorf("%s (%s): tier %s, want %s", c.desc, c.uri, got, c.want)
		}
	}
	h := filtertest.Build(t, Name, "source: header:X-Adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5}, b: {priority: 2, rate: 5, match: [x]}}", nil).(*PromoThrottle)
	if got := h.Tier(filtertest.NewRequest(t, filtertest.Req{Headers: map[string]string{"X-Adtag": "x"}, URI: "/?adtag=y"})); got != "b" {
		t.Errorf("header source: tier %s, want b", got)
	}
	k := filtertest.Build(t, Name, "source: cookie:adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5}, b: {priority: 2, rate: 5, prefix: [x]}}", nil).(*PromoThrottle)
	if got := k.Tier(filtertest.NewRequest(t, filtertest.Req{Cookies: map[string]string{"adtag": "xyz"}})); got != "b" {
		t.Errorf("cookie source: tier %s, want b", got)
	}
}

// TestDecideSetsRank: Decide leaves the request's tier rank in shedding order (1: shed
// first) for adaptive overload protection, also when it rejects the request.
func TestDecideSetsRank(t *testing.T) {
	f := filtertest.Build(t, Name, strings.Replace(sketch, "pressure: 0", "pressure: 1", 1), nil).(*PromoThrottle)
	if f.Tiers() != 3 {
		t.Fatalf("Tiers() = %d, want 3", f.Tiers())
	}
	for _, c := range []struct {
		desc, uri string
		want      int
	}{
		{"banner (priority 10, shed by pressure 1)", "/lottery?adtag=bn_top", 1},
		{"wechat (priority 50)", "/lottery?adtag=wx", 2},
		{"organic (priority 100)", "/lottery", 3},
		{"tag given twice: rejected, ranks lowest", "/lottery?adtag=wx&adtag=bn_top", 1},
	} {
		r := filtertest.NewRequest(t, filtertest.Req{URI: c.uri})
		f.Decide(r)
		if r.Rank != c.want {
			t.Errorf("%s: rank %d, want %d", c.desc, r.Rank, c.want)
		}
	}
}

func TestDecide(t *testing.T) {
	small := `
source: query:adtag
default_tier: organic
tiers:
  organic: {priority: 100, rate: 10, burst: 2}
  wechat:  {priority: 50, rate: 10, burst: 1, match: [wx]}
  banner:  {priority: 10, rate: 10, burst: 1, prefix: [bn_]}
`
	organic := filtertest.Req{URI: "/lottery"}
	wechat := filtertest.Req{URI: "/lottery?adtag=wx"}
	banner := filtertest.Req{URI: "/lottery?adtag=bn_1"}
	retryIn := func(lo, hi time.Duration) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, res filters.Result, _ *filters.Request) {
			if res.RetryAfter < lo || res.RetryAfter >= hi {
				t.Errorf("RetryAfter %v, want in [%v, %v)", res.RetryAfter, lo, hi)
			}
		}
	}
	const limited, shed = "promo_throttle/limited", "promo_throttle/shed"
	for _, tc := range []struct {
		desc  string
		yaml  string
		cases []filtertest.Case
	}{
		{"each tier has its own limit", small, []filtertest.Case{
			{Desc: "banner", Req: banner},
			{Desc: "banner used up", Req: banner, Want: limited, WantStatus: 429, Check: retryIn(100*time.Millisecond, 2100*time.Millisecond)},
			{Desc: "wechat unaffected", Req: wechat},
			{Desc: "wechat used up", Req: wechat, Want: limited},
			{Desc: "organic 1", Req: organic},
			{Desc: "organic 2", Req: organic},
			{Desc: "organic used up", Req: organic, Want: limited},
			{Desc: "banner refilled", Req: banner, Advance: 100 * time.Millisecond},
		}},
		{"pressure 1 sheds banner", small + "pressure: 1", []filtertest.Case{
			{Desc: "banner shed", Req: banner, Want: shed, WantStatus: 0, Check: retryIn(10*time.Second, 12*time.Second)},
			{Desc: "banner shed, whatever its bucket", Req: banner, Advance: time.Hour, Want: shed},
			{Desc: "wechat limited by its rate", Req: wechat},
			{Desc: "wechat used up", Req: wechat, Want: limited},
			{Desc: "organic", Req: organic},
		}},
		{"pressure 3 sheds all", small + "pressure: 3\nshed_status: 503\nshed_retry_after: 0s", []filtertest.Case{
			{Desc: "organic shed", Req: organic, Want: shed, WantStatus: 503, Check: retryIn(0, 1)},
			{Desc: "wechat shed", Req: wechat, Want: shed},
			{Desc: "banner shed", Req: banner, Want: shed},
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			filtertest.Run(t, filtertest.Build(t, Name, tc.yaml, nil), tc.cases)
		})
	}
}

// TestSheddingOrder: at pressure p the p tiers of lowest priority are shed, whatever
// the order the configuration lists them in; the others are limited by their rates.
func TestSheddingOrder(t *testing.T) {
	// Priorities deliberately out of name order.
	tiers := "tiers:\n" +
		"  a: {priority: 30, rate: 1000, match: [a]}\n" +
		"  b: {priority: 10, rate: 1000, match: [b]}\n" +
		"  c: {priority: 40, rate: 1000, match: [c]}\n" +
		"  d: {priority: 20, rate: 1000, match: [d]}\n"
	order := []string{"b", "d", "a", "c"} // lowest priority first
	for p := 0; p <= len(order); p++ {
		f := filtertest.Build(t, Name, fmt.Sprintf("source: query:adtag\ndefault_tier: c\npressure: %d\n%s", p, tiers), nil)
		for i, name := range order {
			res := f.Decide(filtertest.NewRequest(t, filtertest.Req{URI: "/?adtag=" + name}))
			gotShed := res.Action == filters.Reject && res.Reason.Name == "shed"
			if wantShed := i < p; gotShed != wantShed {
				t.Errorf("pressure %d, tier %s (priority rank %d): shed=%v, want %v", p, name, i, gotShed, wantShed)
			}
			if !gotShed && res.Action != filters.Continue {
				t.Errorf("pressure %d, tier %s: %v, want admitted", p, name, res.Reason.Verdict)
			}
		}
	}
}

// TestExactness: each tier, offered 5x its rate for 5 s (fake clock) while the others
// are offered theirs, admits at most ideal + 1 and at least 0.999 x ideal,
// ideal = burst + rate x 5s.
func TestExactness(t *testing.T) {
	f := filtertest.Build(t, Name, `
source: query:adtag
default_tier: organic
tiers:
  organic: {priority: 100, rate: 20000}
  wechat:  {priority: 50, rate: 1000, burst: 50, match: [wx]}
  banner:  {priority: 10, rate: 10, burst: 1, prefix: [bn_]}
`, nil)
	type load struct {
		tag   string
		rate  int
		burst int
		req   *filters.Request
		next  int64 // ns of its next request
		step  int64
		count int
	}
	loads := []*load{
		{tag: "", rate: 20000, burst: 2000},
		{tag: "wx", rate: 1000, burst: 50},
		{tag: "bn_7", rate: 10, burst: 1},
	}
	start := int64(time.Second)
	const period = int64(5 * time.Second)
	for _, l := range loads {
		l.req = filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?adtag=" + l.tag})
		l.step = period / int64(5*l.rate*5)
		l.next = start
	}
	// Interleave the three loads in time order, from 0 to 5s, both included.
	for {
		var l *load
		for _, c := range loads {
			if c.next <= start+period && (l == nil || c.next < l.next) {
				l = c
			}
		}
		if l == nil {
			break
		}
		l.req.Now = l.next
		if f.Decide(l.req).Action == filters.Continue {
			l.count++
		}
		l.next += l.step
	}
	for _, l := range loads {
		ideal := float64(l.burst) + float64(l.rate)*5
		if float64(l.count) > ideal+1 || float64(l.count) < 0.999*ideal {
			t.Errorf("tier of tag %q (%d/s): admitted %d, ideal %.0f", l.tag, l.rate, l.count, ideal)
		}
	}
}

// TestReload: a new pressure (or rate) keeps each tier's bucket, so a reload is not a
// free burst; a new tier starts full.
func TestReload(t *testing.T) {
	base := "source: query:adtag\ndefault_tier: organic\ntiers:\n  organic: {priority: 100, rate: 100, burst: 10}\n  wechat: {priority: 50, rate: 100, burst: 10, match: [wx]}\n"
	drain := func(f filters.Filter, tag string) int {
		req := filtertest.NewRequest(t, filtertest.Req{URI: "/?adtag=" + tag})
		n := 0
		for f.Decide(req).Action == filters.Continue {
			n++
		}
		return n
	}
	old := filtertest.Build(t, Name, base, nil)
	if drain(old, "wx") != 10 || drain(old, "") != 10 {
		t.Fatal("old filter: want a burst of 10 per tier")
	}
	// The operator raises the pressure (wechat shed), then lowers it again.
	up := filtertest.Build(t, Name, base+"pressure: 1", old)
	if n := drain(up, "wx"); n != 0 {
		t.Errorf("pressure 1: wechat admitted %d, want shed", n)
	}
	down := filtertest.Build(t, Name, base+"pressure: 0", up)
	if n := drain(down, "wx"); n != 0 {
		t.Errorf("pressure back to 0: wechat admitted %d at once, want 0 (its bucket is still drained)", n)
	}
	if n := drain(down, ""); n != 0 {
		t.Errorf("pressure back to 0: organic admitted %d at once, want 0", n)
	}
	// A new tier starts full; a live rate change keeps the bucket.
	more := filtertest.Build(t, Name, base+"  banner: {priority: 10, rate: 100, burst: 10, match: [bn]}\n", down)
	if n := drain(more, "bn"); n != 10 {
		t.Errorf("new tier: admitted %d, want its burst of 10", n)
	}
	if n := drain(more, "wx"); n != 0 {
		t.Errorf("wechat after adding a tier: admitted %d, want 0", n)
	}
}

// TestMetrics: every decision is counted by route, tier and verdict.
func TestMetrics(t *testing.T) {
	route := filters.Route{Name: "metrics-test"}
	f, _ := filtertest.BuildWith(t, Name, "source: query:adtag\ndefault_tier: organic\npressure: 1\ntiers:\n  organic: {priority: 100, rate: 10, burst: 2}\n  banner: {priority: 1, rate: 10, match: [bn]}\n", nil, route, nil)
	before := counters(t, route.Name)
	for _, uri := range []string{"/", "/", "/", "/?adtag=bn", "/?adtag=bn"} {
		f.Decide(filtertest.NewRequest(t, filtertest.Req{URI: uri}))
	}
	want := map[string]float64{"organic/admitted": 2, "organic/limited": 1, "banner/shed": 2}
	got := map[string]float64{}
	for k, v := range counters(t, route.Name) {
		if d := v - before[k]; d != 0 {
			got[k] = d
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counters %v, want %v", got, want)
	}
}

// counters reads floodgate_promo_throttle_requests_total of route, by "tier/verdict".
func counters(t *testing.T, route string) map[string]float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_promo_throttle_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["route"] == route {
				out[l["tier"]+"/"+l["verdict"]] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestOverrides: every value an operator tunes live has a path (Consul key or plan).
func TestOverrides(t *testing.T) {
	doc, err := config.Parse("gw.yaml", []byte(`
pools:
  query: {addrs: ["127.0.0.1:18081"]}
routes:
  lottery:
    path: /lottery
    pool: query
    filters:
      promo_throttle:
`+indent(sketch, "        ")))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(doc, []config.Override{
		{Path: "routes/lottery/promo_throttle/pressure", Value: "2", Origin: "consul"},
		{Path: "routes/lottery/promo_throttle/tiers/wechat/rate", Value: "500", Origin: "consul"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Routes["lottery"].Chain[0].Config.(*Config)
	if c.Pressure != 2 || c.Tiers["wechat"].Rate != 500 || c.Tiers["wechat"].Burst != 50 || c.Tiers["banner"].Rate != 500 {
		t.Errorf("after overrides: pressure %d, wechat %+v, banner %+v", c.Pressure, *c.Tiers["wechat"], *c.Tiers["banner"])
	}
	_, err = config.Load(doc, []config.Override{{Path: "routes/lottery/promo_throttle/pressure", Value: "4", Origin: "consul:floodgate/routes/lottery/promo_throttle/pressure"}})
	if err == nil || !strings.Contains(err.Error(), "consul:floodgate/routes/lottery/promo_throttle/pressure") || !strings.Contains(err.Error(), "pressure") {
		t.Errorf("pressure 4 of 3 tiers: error %v, want one naming the Consul key", err)
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// TestUnknownTierAndBadKey: unknown tags go to unknown_tier, missing ones to
// default_tier; a tag given twice is rejected with promo_throttle/bad_key, and a shed
// tier cannot be escaped by another spelling of its tag.
func TestUnknownTierAndBadKey(t *testing.T) {
	cfg := strings.Replace(sketch, "pressure: 0", "pressure: 2\nunknown_tier: banner", 1)
	f := filtertest.Build(t, Name, cfg, nil).(*PromoThrottle)
	for _, c := range []struct{ uri, want string }{
		{"/lottery", "organic"},
		{"/lottery?adtag=", "organic"},
		{"/lottery?adtag=zz", "banner"},
		{"/lottery?adtag=bn_x", "banner"},
	} {
		if got := f.Tier(filtertest.NewRequest(t, filtertest.Req{URI: c.uri})); got != c.want {
			t.Errorf("%s: tier %s, want %s", c.uri, got, c.want)
		}
	}
	// pressure 2 sheds banner and wechat: no spelling of their tags reaches organic
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "Banner prefix in capitals is shed", Req: filtertest.Req{URI: "/lottery?adtag=BN_top"}, Want: "promo_throttle/shed"},
		{Desc: "WX with a trailing space is shed", Req: filtertest.Req{URI: "/lottery?adtag=WX%20"}, Want: "promo_throttle/shed"},
		{Desc: "an invented tag is shed (unknown_tier: banner)", Req: filtertest.Req{URI: "/lottery?adtag=zz"}, Want: "promo_throttle/shed"},
		{Desc: "two tags are a bad key", Req: filtertest.Req{URI: "/lottery?adtag=zz&adtag=wx"}, Want: "promo_throttle/bad_key", WantStatus: 400},
		{Desc: "no tag is organic", Req: filtertest.Req{URI: "/lottery"}},
	})
	if err := filtertest.DecodeErr(t, Name, strings.Replace(sketch, "pressure: 0", "unknown_tier: nope", 1)); err == nil || !strings.Contains(err.Error(), "unknown_tier") {
		t.Errorf("unknown_tier naming no tier: %v", err)
	}
	if err := filtertest.DecodeErr(t, Name, sketch+"  other: {priority: 5, rate: 1, match: [WeChat]}\n"); err == nil || !strings.Contains(err.Error(), `already matched by tier`) {
		t.Errorf("a match differing only in case: %v", err)
	}
}

// TestLiveTierChange: a tier's rate or burst changed live (ctl set
// routes/lottery/promo_throttle/tiers/wechat/burst 30) carries the tier's tokens over the
// change (ratelimit.Handover, as token_bucket does): no blackout after a burst cut, no
// free burst after a raise, the new rate from the change on. The tier is offered 700/s.
func TestLiveTierChange(t *testing.T) {
	const ms = int64(time.Millisecond)
	run := func(f filters.Filter, from, to, every int64) (admitted int) {
		for now := from; now < to; now += every {
			req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?adtag=wx", Now: now})
			if f.Decide(req).Action == filters.Continue {
				admitted++
			}
		}
		return admitted
	}
	cfg := func(rate, burst int) string {
		return fmt.Sprintf("source: query:adtag\ndefault_tier: organic\ntiers:\n  organic: {priority: 100, rate: 1000}\n  wechat: {priority: 50, rate: %d, burst: %d, match: [wx]}\n", rate, burst)
	}
	for _, tc := range []struct {
		desc                                     string
		before, after                            string
		firstMin, firstMax, secondMin, secondMax int
	}{
		{"burst cut 300 -> 30", cfg(300, 300), cfg(300, 30), 28, 32, 295, 305},
		{"burst raised 30 -> 300", cfg(300, 30), cfg(300, 300), 28, 32, 295, 305},
		{"rate cut 300 -> 100, burst 30", cfg(300, 30), cfg(100, 30), 9, 11, 98, 102},
		{"rate raised 100 -> 300, burst 30", cfg(100, 30), cfg(300, 30), 28, 32, 295, 305},
	} {
		old := filtertest.Build(t, Name, tc.before, nil)
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
