package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
)

const layersBase = `
pools:
  q: {addrs: [127.0.0.1:8081]}
routes:
  lottery:
    path: /lottery
    pool: q
    filters:
      acl: {allow_methods: [GET]}
`

func TestLayers(t *testing.T) {
	doc, err := config.Parse("base.yaml", []byte(layersBase))
	if err != nil {
		t.Fatal(err)
	}
	ov := func(path, value, origin string) config.Override {
		return config.Override{Path: path, Value: value, Origin: origin}
	}
	for _, tc := range []struct {
		desc      string
		overrides []config.Override
		plan      []config.Override
		wantErr   string
		check     func(t *testing.T, c *config.Config)
		source    [2]string // path, expected "value from source"
	}{
		{desc: "kill switch from consul", overrides: []config.Override{ov("routes/lottery/enabled", "false", "consul:fg/routes/lottery/enabled")},
			check:  func(t *testing.T, c *config.Config) { expect(t, !c.Routes["lottery"].Enabled, "route disabled") },
			source: [2]string{"routes.lottery.enabled", "false from consul:fg/routes/lottery/enabled"}},
		{desc: "plan beats override", overrides: []config.Override{ov("routes/lottery/timeout", "1s", "consul:k")}, plan: []config.Override{ov("routes/lottery/timeout", "250ms", "plan:night")},
			check: func(t *testing.T, c *config.Config) {
				expect(t, c.Routes["lottery"].Timeout.D().Milliseconds() == 250, "plan timeout")
			},
			source: [2]string{"routes.lottery.timeout", "250ms from plan:night"}},
		{desc: "filter parameter path maps under filters", overrides: []config.Override{ov("routes/lottery/acl/status", "451", "consul:k")},
			source: [2]string{"routes.lottery.filters.acl.status", "451 from consul:k"}},
		{desc: "adaptive protection switched on live, per pool", overrides: []config.Override{
			ov("pools/q/adaptive/enabled", "true", "consul:fg/pools/q/adaptive/enabled"),
			ov("pools/q/adaptive/pinned_level", "768", "consul:fg/pools/q/adaptive/pinned_level"),
			ov("routes/lottery/priority", "5", "consul:fg/routes/lottery/priority")},
			check: func(t *testing.T, c *config.Config) {
				a := c.Pools["q"].Adaptive
				expect(t, a.Enabled && a.PinnedLevel == 768 && a.MinLimit == 4 && a.MaxLimit == 512, "adaptive enabled, pinned 768, default bounds")
				expect(t, c.Routes["lottery"].Priority == 5, "route priority 5")
			},
			source: [2]string{"pools.q.adaptive.enabled", "true from consul:fg/pools/q/adaptive/enabled"}},
		{desc: "a bad adaptive value names the consul key", overrides: []config.Override{ov("pools/q/adaptive/max_limit", "2", "consul:fg/pools/q/adaptive/max_limit")},
			wantErr: `consul:fg/pools/q/adaptive/max_limit: pools.q.adaptive.max_limit: must be at least min_limit (4), got 2`},
		{desc: "a verdict's own answer and a pool's health check set by keys", overrides: []config.Override{
			ov("routes/lottery/fallback/verdicts/upstream/*/body", "down", "consul:k1"),
			ov("routes/lottery/fallback/verdicts/acl/method_not_allowed/status", "403", "consul:k2"),
			ov("pools/q/health_check/interval", "250ms", "consul:k3")},
			check: func(t *testing.T, c *config.Config) {
				v := c.Routes["lottery"].Fallback.Verdicts
				expect(t, v["upstream"]["*"].Body == "down" && v["acl"]["method_not_allowed"].Status == 403, "verdict answers set")
				expect(t, c.Pools["q"].HealthCheck.Interval.D().Milliseconds() == 250 && c.Pools["q"].HealthCheck.Enabled, "health check interval 250ms, still enabled")
			},
			source: [2]string{"routes.lottery.fallback.verdicts.upstream.*.body", "down from consul:k1"}},
		{desc: "a verdict answer for a filter the route does not have names the key", overrides: []config.Override{ov("routes/lottery/fallback/verdicts/token_bukcet/limited/body", "x", "consul:k")},
			wantErr: `consul:k: routes.lottery.fallback.verdicts.token_bukcet: no filter "token_bukcet" on this route`},
		{desc: "file values keep file:line", source: [2]string{"routes.lottery.path", "/lottery from base.yaml:6"}},
		{desc: "bad value names the consul key", overrides: []config.Override{ov("routes/lottery/enabled", "nah", "consul:fg/routes/lottery/enabled")},
			wantErr: `consul:fg/routes/lottery/enabled: routes.lottery.enabled: want a boolean (true or false), got "nah"`},
		{desc: "a scalar cannot replace a section", overrides: []config.Override{ov("routes/lottery/fallback", "x", "consul:k")},
			wantErr: `consul:k: routes.lottery.fallback: want a mapping of field: value, got a value "x"`},
		{desc: "a value cannot go inside a list", overrides: []config.Override{ov("routes/lottery/acl/allow_methods/x", "GET", "consul:k")},
			wantErr: `is a list, cannot set "x" inside it`},
		{desc: "unknown filter parameter", overrides: []config.Override{ov("routes/lottery/acl/bogus", "1", "consul:k")},
			wantErr: `consul:k: routes.lottery.filters.acl.bogus: unknown field "bogus"`},
		{desc: "server settings are not live", overrides: []config.Override{ov("server/listen", "0.0.0.0:80", "consul:k")},
			wantErr: `only routes/... and pools/... can be overridden live`},
	} {
		c, err := config.Load(doc, tc.overrides, tc.plan)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.desc, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.desc, err)
			continue
		}
		if tc.check != nil {
			tc.check(t, c)
		}
		if tc.source[0] != "" {
			got := ""
			for _, l := range c.Sources {
				if l.Path == tc.source[0] {
					got = l.Value + " from " + l.Source
				}
			}
			if got != tc.source[1] {
				t.Errorf("%s: source of %s = %q, want %q", tc.desc, tc.source[0], got, tc.source[1])
			}
		}
	}
	// the document itself is never modified by overrides
	again, err := config.Load(doc)
	if err != nil || !again.Routes["lottery"].Enabled {
		t.Errorf("overrides leaked into the file document: %v", err)
	}
}

func TestDiff(t *testing.T) {
	old := []config.Leaf{{Path: "a", Value: "1", Source: "f:1"}, {Path: "b", Value: "2", Source: "f:2"}, {Path: "c", Value: "3", Source: "f:3"}}
	new := []config.Leaf{{Path: "a", Value: "1", Source: "f:1"}, {Path: "b", Value: "9", Source: "consul:b"}, {Path: "d", Value: "4", Source: "plan:p"}}
	got := config.Diff(old, new)
	want := []config.Change{{Path: "b", Old: "2", New: "9", Source: "consul:b"}, {Path: "c", Old: "3", Source: "(removed)"}, {Path: "d", New: "4", Source: "plan:p"}}
	if len(got) != len(want) {
		t.Fatalf("diff %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("change %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func expect(t *testing.T, ok bool, what string) {
	t.Helper()
	if !ok {
		t.Errorf("expected %s", what)
	}
}

// TestEveryBadOverrideNamed: an update with several bad keys names each of them, decode
// errors and validation errors of one filter alike.
func TestEveryBadOverrideNamed(t *testing.T) {
	doc, err := config.Parse("base.yaml", []byte(layersBase+"      token_bucket: {rate: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(doc, []config.Override{
		{Path: "routes/lottery/enabled", Value: "yes", Origin: "consul:fg/routes/lottery/enabled"},
		{Path: "routes/lottery/timeout", Value: "3", Origin: "consul:fg/routes/lottery/timeout"},
		{Path: "routes/lottery/token_bucket/rate", Value: "-10", Origin: "consul:fg/routes/lottery/token_bucket/rate"},
		{Path: "routes/lottery/token_bucket/burst", Value: "1e30", Origin: "consul:fg/routes/lottery/token_bucket/burst"},
	})
	if err == nil {
		t.Fatal("accepted")
	}
	t.Log(err)
	for _, key := range []string{"routes/lottery/enabled", "routes/lottery/timeout", "routes/lottery/token_bucket/rate", "routes/lottery/token_bucket/burst"} {
		if !strings.Contains(err.Error(), "consul:fg/"+key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

// TestTypoInRouteKey: a key naming a route or pool the file does not define says so
// (it said "a path prefix is needed").
func TestTypoInRouteKey(t *testing.T) {
	doc, err := config.Parse("base.yaml", []byte(layersBase))
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(doc, []config.Override{
		{Path: "routes/lotery/enabled", Value: "false", Origin: "consul:fg/routes/lotery/enabled"},
		{Path: "pools/qq/max_conns", Value: "5", Origin: "consul:fg/pools/qq/max_conns"},
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`consul:fg/routes/lotery/enabled: routes.lotery: no route named "lotery" (routes: lottery)`, `no pool named "qq" (pools: q)`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "path prefix") || strings.Contains(err.Error(), "addrs") {
		t.Errorf("%v\nsays what follows from the typo", err)
	}
}

// TestFallbackHeadersBounded: thousands of fallback headers (each fallback answer took
// seconds) are refused, from the file or from Consul keys.
func TestFallbackHeadersBounded(t *testing.T) {
	doc, err := config.Parse("base.yaml", []byte(layersBase))
	if err != nil {
		t.Fatal(err)
	}
	var ov []config.Override
	for i := range 2000 {
		ov = append(ov, config.Override{Path: fmt.Sprintf("routes/lottery/fallback/headers/X-H%d", i), Value: "v", Origin: "consul:k"})
	}
	if _, err := config.Load(doc, ov); err == nil || !strings.Contains(err.Error(), "2000 headers") {
		t.Fatalf("2000 fallback headers: %v", err)
	}
	if _, err := config.Load(doc, ov[:32]); err != nil {
		t.Fatalf("32 fallback headers: %v", err)
	}
}
