package gateway

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/adaptive"
)

// overloadConfig: pool q has adaptive protection with a pinned level of `pin`; lottery is
// core (priority 6), info non-core with promotion tiers, report non-core priority 1.
func overloadConfig(pin int, extra string) string {
	return fmt.Sprintf(`
server: {listen: 127.0.0.1:0}
pools:
  q: {addrs: [q1:1], max_conns: 16, adaptive: {enabled: true, pinned_level: %d, user_key: "query:uin"%s}}
  gone: {addrs: [nowhere:1], max_conns: 4, adaptive: {enabled: true}}
routes:
  lottery: {path: /lottery, pool: q, core: true}
  info:
    path: /info
    pool: q
    fallback: {status: 200, body: '{"info":"basic"}'}
    filters:
      promo_throttle:
        source: query:adtag
        default_tier: organic
        tiers:
          organic: {priority: 100, rate: 100000}
          banner:  {priority: 10, rate: 100000, match: [banner]}
  report: {path: /report, pool: q, priority: 1, fallback: {status: 204, body: ""}}
  down: {path: /down, pool: gone}
`, pin, extra)
}

// TestOverloadShedsByLevel: with the level pinned, requests below it get the route's
// fallback with overload/shed, the others are proxied; shed requests never reach the
// upstream nor the latency samples.
func TestOverloadShedsByLevel(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		pin      int
		uri      string
		want     int
		shed     bool
		wantBody string
	}{
		{"level 0 admits everything", 0, "/report?uin=1", 200, false, "ok"},
		{"priority 1 below a priority-2 level", int(adaptive.MakeLevel(2, 0, 0)), "/report?uin=1", 204, true, ""},
		{"priority 2 at its level is admitted", int(adaptive.MakeLevel(2, 0, 0)), "/info?uin=1", 200, false, "ok"},
		{"banner tier (rank 0 of 2) shed below the organic tier", int(adaptive.MakeLevel(2, 4, 0)), "/info?uin=1&adtag=banner", 200, true, `{"info":"basic"}`},
		{"organic tier (rank 1 of 2 -> tier 4) admitted", int(adaptive.MakeLevel(2, 4, 0)), "/info?uin=1", 200, false, "ok"},
		{"core above every non-core level", int(adaptive.MakeLevel(3, 0, 0)), "/lottery?uin=1", 200, false, "ok"},
		{"everything shed at the top level, core too", adaptive.NumLevels, "/lottery?uin=1", 503, true, `{"ok":false,"error":"busy, please retry later"}`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRig(t, overloadConfig(tc.pin, ""))
			hits := 0
			r.upstream("q1:1", func(ctx *fasthttp.RequestCtx) { hits++; ctx.SetBodyString("ok") })
			ctl := r.gw.state.Load().pools["q"].ctl
			before := ctl.Snapshot()
			for i := 0; i < 20; i++ {
				resp := r.do("GET", tc.uri, nil)
				if resp.StatusCode() != tc.want || string(resp.Body()) != tc.wantBody {
					t.Fatalf("status %d body %q, want %d %q", resp.StatusCode(), resp.Body(), tc.want, tc.wantBody)
				}
				v := string(resp.Header.Peek(VerdictHeader))
				if tc.shed != (v == "overload/shed") {
					t.Fatalf("verdict %q, shed %v", v, tc.shed)
				}
			}
			ctl.Update()
			after := ctl.Snapshot()
			shed := after.ShedLevel - before.ShedLevel
			samples := after.Samples - before.Samples
			if tc.shed && (shed != 20 || samples != 0 || hits != 0) {
				t.Errorf("shed %d (want 20), samples %d (want 0), upstream hits %d (want 0)", shed, samples, hits)
			}
			if !tc.shed && (shed != 0 || samples != 20 || hits != 20) {
				t.Errorf("shed %d (want 0), samples %d (want 20), upstream hits %d (want 20)", shed, samples, hits)
			}
			if after.InFlight != 0 {
				t.Errorf("in flight %d after all answers, want 0", after.InFlight)
			}
		})
	}
}

// TestOverloadFallbacksAreNotSampled: answers the gateway makes itself for a forwarded
// request (upstream unavailable, a 5xx) are not latency samples, and leave nothing in
// flight.
func TestOverloadFallbacksAreNotSampled(t *testing.T) {
	r := newRig(t, overloadConfig(-1, ""))
	r.upstream("q1:1", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(500) })
	st := r.gw.state.Load()
	for _, tc := range []struct{ pool, uri, verdict string }{
		{"gone", "/down", "upstream/unavailable"},
		{"q", "/lottery", ""},
	} {
		ctl := st.pools[tc.pool].ctl
		for i := 0; i < 10; i++ {
			resp := r.do("GET", tc.uri, nil)
			if v := string(resp.Header.Peek(VerdictHeader)); v != tc.verdict {
				t.Fatalf("%s: verdict %q, want %q", tc.uri, v, tc.verdict)
			}
		}
		ctl.Update()
		if s := ctl.Snapshot(); s.Samples != 0 || s.InFlight != 0 {
			t.Errorf("%s: samples %d, in flight %d; want 0 and 0", tc.uri, s.Samples, s.InFlight)
		}
	}
}

// TestOverloadSwitchesLive: adaptive settings change by reload without rebuilding the
// pool (its connections and its controller survive), and turning protection off stops
// shedding at once.
func TestOverloadSwitchesLive(t *testing.T) {
	r := newRig(t, overloadConfig(adaptive.NumLevels, ""))
	r.upstream("q1:1", echoUpstream)
	p := r.gw.state.Load().pools["q"]
	// the initial limit (20), cut to max_limit (the pool's max_conns: 16)
	if l, want := p.ctl.Snapshot().Limit, int64(min(adaptive.DefaultParams().InitialLimit, 16)); l != want {
		t.Errorf("a new pool's limit is %d, want %d", l, want)
	}
	if v := string(r.do("GET", "/lottery", nil).Header.Peek(VerdictHeader)); v != "overload/shed" {
		t.Fatalf("pinned at the top: verdict %q, want overload/shed", v)
	}
	cfg := strings.Replace(overloadConfig(adaptive.NumLevels, ""), "enabled: true, pinned_level", "enabled: false, pinned_level", 1)
	if err := r.apply(cfg); err != nil {
		t.Fatal(err)
	}
	if v := string(r.do("GET", "/lottery", nil).Header.Peek(VerdictHeader)); v != "" {
		t.Errorf("protection off: verdict %q, want none", v)
	}
	if err := r.apply(overloadConfig(-1, ", min_limit: 7, max_limit: 9, shadow: true")); err != nil {
		t.Fatal(err)
	}
	q := r.gw.state.Load().pools["q"]
	if q != p {
		t.Errorf("the pool was rebuilt by an adaptive-only change")
	}
	s := q.ctl.Snapshot()
	if !s.Shadow || s.MinLimit != 7 || s.MaxLimit != 9 || s.Pinned || s.Limit < 7 || s.Limit > 9 {
		t.Errorf("settings not applied: %+v", s)
	}
	// a pool rebuilt for another reason keeps its controller
	if err := r.apply(strings.Replace(overloadConfig(-1, ""), "max_conns: 16", "max_conns: 17", 1)); err != nil {
		t.Fatal(err)
	}
	if q2 := r.gw.state.Load().pools["q"]; q2 == q || q2.ctl != q.ctl {
		t.Errorf("rebuilt pool: new pool %v, same controller %v; want a new pool with the same controller", q2 != q, q2.ctl == q.ctl)
	}
	views := r.gw.Overload()
	if len(views) != 2 || views[1].Pool != "q" || len(views[1].Routes) != 3 || views[1].Routes[0].Route != "info" || views[1].Routes[1].Priority != 6 {
		t.Errorf("Overload() = %+v", views)
	}
}

func TestOverloadConfigErrors(t *testing.T) {
	for _, tc := range []struct{ desc, extra, route, want string }{
		{"min above max", ", min_limit: 10, max_limit: 5", "", "pools.q.adaptive.max_limit: must be at least min_limit (10), got 5"},
		{"zero min", ", min_limit: 0", "", "pools.q.adaptive.min_limit: must be at least 1 (got 0)"},
		{"bad key", `, user_key: "body:uin"`, "", `unknown source "body"`},
		{"zero window", ", user_window: 0s", "", "pools.q.adaptive.user_window: must be > 0"},
		{"priority out of range", "", "priority: 9", "routes.x.priority: want a business priority 0-7 (higher is shed later), got 9"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRig(t, overloadConfig(-1, ""))
			cfg := strings.Replace(overloadConfig(-1, ""), `user_key: "query:uin"`, `user_key: "query:uin"`+tc.extra, 1)
			if strings.Contains(tc.extra, "user_key") {
				cfg = strings.Replace(overloadConfig(-1, ""), `user_key: "query:uin"`, strings.TrimPrefix(tc.extra, ", "), 1)
			}
			if tc.route != "" {
				cfg += "  x: {path: /x, pool: q, " + tc.route + "}\n"
			}
			err := r.apply(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// overloadTickers counts the goroutines running the adaptive protection's window ticker.
func overloadTickers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "gateway.(*Gateway).runOverload(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestOverloadTickerLifecycle: the window ticker runs only while the configuration in
// force has a pool with adaptive protection on; it stops when the last such pool is
// switched off or removed, and on Close, and leaves no goroutine behind (goleak-style:
// goroutines counted before and after, each wait ends as soon as the count is right).
//
// Counts are absolute: every gateway of this package's tests is closed when its test
// ends (newRigOpts), so none is left over from earlier tests - the first wait checks
// that too (a ticker that has been stopped may take a moment to exit).
func TestOverloadTickerLifecycle(t *testing.T) {
	const before = 0
	want := func(n int, what string) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%s: %d window tickers", what, before+n), func() bool { return overloadTickers() == before+n })
	}
	want(0, "no ticker left by earlier tests")
	off := strings.ReplaceAll(overloadConfig(-1, ""), "adaptive: {enabled: true", "adaptive: {enabled: false")
	removed := `
server: {listen: 127.0.0.1:0}
pools: {plain: {addrs: [q1:1], max_conns: 4}}
routes: {lottery: {path: /lottery, pool: plain, core: true}}
`
	r := newRig(t, removed)
	want(0, "no pool with adaptive protection")
	if err := r.apply(overloadConfig(-1, "")); err != nil {
		t.Fatal(err)
	}
	want(1, "two pools with adaptive protection")
	ctl := r.gw.state.Load().pools["q"].ctl
	waitFor(t, "the ticker closing windows", func() bool { return ctl.Snapshot().WindowCount > 0 })
	if err := r.apply(off); err != nil {
		t.Fatal(err)
	}
	want(0, "protection switched off on both pools")
	if err := r.apply(overloadConfig(-1, ", shadow: true")); err != nil {
		t.Fatal(err)
	}
	want(1, "shadow mode on again")
	if err := r.apply(removed); err != nil {
		t.Fatal(err)
	}
	want(0, "the pools with protection removed")
	if err := r.apply(overloadConfig(-1, "")); err != nil {
		t.Fatal(err)
	}
	want(1, "pools with protection back")
	r.gw.Close()
	want(0, "gateway closed")
	if err := r.apply(overloadConfig(-1, ", min_limit: 5")); err != nil {
		t.Fatal(err)
	}
	if n := overloadTickers(); n != before {
		t.Errorf("a closed gateway started a window ticker again (%d, want %d)", n, before)
	}
	r.gw.Close() // twice is fine
}
