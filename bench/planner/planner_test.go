package planner

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func seed(t *testing.T) *Funnel {
	t.Helper()
	f, err := LoadFile(filepath.Join("..", "..", "configs", "funnel-seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// The seed's worked example: 100/s exposures -> 60/s -> 30/s; 30 visitors x 4 requests =
// 120/s, x3 = 360/s; 60 visitors x 3 = 180/s.
func TestSeedFunnelNumbers(t *testing.T) {
	p, err := Compute(seed(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.SafetyFactor != 3 || p.Instances != 1 || p.BurstRatio != 0.2 {
		t.Fatalf("settings %v %v %v", p.SafetyFactor, p.Instances, p.BurstRatio)
	}
	var exposures float64
	visitors := make([]float64, len(p.Steps))
	for _, c := range p.Channels {
		exposures += c.Exposures
		for i, v := range c.Visitors {
			visitors[i] += v
		}
	}
	if !near(exposures, 100) || !near(visitors[0], 60) || !near(visitors[1], 30) {
		t.Fatalf("funnel %v -> %v, want 100 -> 60 -> 30", exposures, visitors)
	}
	tests := []struct {
		route                string
		visitors, need, plan float64
		limit                float64
		perInstance, burst   int64
		tiers                map[string]int64
	}{
		{"lottery", 30, 120, 360, 360, 360, 72, map[string]int64{"wechat": 180, "qzone": 108, "banner": 72}},
		{"grant", 30, 30, 90, 90, 90, 18, map[string]int64{"wechat": 45, "qzone": 27, "banner": 18}},
		{"info", 60, 180, 540, 540, 540, 108, map[string]int64{"wechat": 270, "qzone": 162, "banner": 108}},
		// the reporting server carries 100/s: the non-core route is cut to it
		{"report", 60, 60, 180, 100, 100, 20, map[string]int64{"wechat": 50, "qzone": 30, "banner": 20}},
	}
	if len(p.Routes) != len(tests) {
		t.Fatalf("%d routes", len(p.Routes))
	}
	for i, tc := range tests {
		r := p.Routes[i]
		if r.Name != tc.route {
			t.Fatalf("route %d is %s, want %s (file order)", i, r.Name, tc.route)
		}
		if !near(r.Visitors, tc.visitors) || !near(r.Need, tc.need) || !near(r.Planned, tc.plan) || !near(r.Limit, tc.limit) ||
			r.PerInstance != tc.perInstance || r.Burst != tc.burst {
			t.Errorf("%s: visitors %v need %v x3 %v limit %v per instance %d burst %d; want %v %v %v %v %d %d",
				r.Name, r.Visitors, r.Need, r.Planned, r.Limit, r.PerInstance, r.Burst, tc.visitors, tc.need, tc.plan, tc.limit, tc.perInstance, tc.burst)
		}
		for _, tr := range r.Tiers {
			if tr.PerInstance != tc.tiers[tr.Channel] {
				t.Errorf("%s tier %s: %d, want %d", r.Name, tr.Channel, tr.PerInstance, tc.tiers[tr.Channel])
			}
		}
	}
	back := map[string]BackendPlan{}
	for _, b := range p.Backends {
		back[b.Name] = b
	}
	if b := back["query"]; !near(b.Need, 300) || !near(b.Planned, 900) || b.Status != OK || !near(b.Admitted, 900) {
		t.Errorf("query %+v", b)
	}
	if b := back["reporting"]; !near(b.Need, 60) || !near(b.Planned, 180) || b.Status != ShortOfMargin || !near(b.Admitted, 100) ||
		len(b.Abandonable) != 1 || b.Abandonable[0] != "report" {
		t.Errorf("reporting %+v", b)
	}
	w := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(w, "backend reporting cannot support the 3x margin") || !strings.Contains(w, "can be abandoned: report") {
		t.Errorf("warnings %q", w)
	}
}

func TestInstancesRoundUp(t *testing.T) {
	p, err := Compute(seed(t), Options{Instances: 7})
	if err != nil {
		t.Fatal(err)
	}
	lot := p.Routes[0]
	// 360 / 7 = 51.43 -> 52; burst 20% of 52 = 10.4 -> 11
	if lot.PerInstance != 52 || lot.Burst != 11 {
		t.Fatalf("per instance %d burst %d, want 52 and 11", lot.PerInstance, lot.Burst)
	}
	// wechat 180 / 7 = 25.7 -> 26
	if lot.Tiers[0].Channel != "wechat" || lot.Tiers[0].PerInstance != 26 {
		t.Fatalf("tier %+v", lot.Tiers[0])
	}
	half := 0.5
	p, err = Compute(seed(t), Options{Instances: 4, BurstRatio: &half, SafetyFactor: 2})
	if err != nil {
		t.Fatal(err)
	}
	if lot := p.Routes[0]; lot.PerInstance != 60 || lot.Burst != 30 {
		t.Fatalf("x2 over 4 instances: %d burst %d, want 60 and 30", lot.PerInstance, lot.Burst)
	}
}

func TestCutsCoreFirstAndAbandons(t *testing.T) {
	f := &Funnel{
		Channels: map[string]Channel{"wechat": {Exposures: 100}},
		Steps:    []Step{{Name: "s", Conversion: 1}},
		Routes: map[string]Route{
			"core":  {Step: "s", RequestsPerVisitor: 1, Backend: "b", Core: true},
			"extra": {Step: "s", RequestsPerVisitor: 1, Backend: "b"},
		},
		Backends: map[string]Backend{"b": {Capacity: 250}},
	}
	p, err := Compute(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// need 100 + 100, x3 = 300 + 300 against 250: core keeps... 250 (cut), extra gets nothing.
	core, extra := p.Routes[0], p.Routes[1]
	if core.Name != "core" || core.PerInstance != 250 || core.CutBy != "b" || !extra.Abandoned || extra.PerInstance != 0 {
		t.Fatalf("core %+v\nextra %+v", core, extra)
	}
	if p.Backends[0].Status != ShortOfMargin {
		t.Fatalf("status %v", p.Backends[0].Status)
	}
	var b bytes.Buffer
	if err := p.WritePlan(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "routes/extra/enabled: false\n") || !strings.Contains(b.String(), "routes/core/token_bucket/rate: 250\n") {
		t.Fatalf("plan:\n%s", b.String())
	}

	f.Backends["b"] = Backend{Capacity: 450}
	p, _ = Compute(f, Options{})
	if p.Routes[0].PerInstance != 300 || p.Routes[1].PerInstance != 150 {
		t.Fatalf("core %d extra %d, want 300 and the remaining 150", p.Routes[0].PerInstance, p.Routes[1].PerInstance)
	}
	p, _ = Compute(f, Options{NoCap: true})
	if p.Routes[0].PerInstance != 300 || p.Routes[1].PerInstance != 300 || !strings.Contains(strings.Join(p.Warnings(), ""), "NOT cut") {
		t.Fatalf("uncapped: %d %d %v", p.Routes[0].PerInstance, p.Routes[1].PerInstance, p.Warnings())
	}
	f.Backends["b"] = Backend{Capacity: 50}
	p, _ = Compute(f, Options{})
	if p.Backends[0].Status != ShortOfEstimate || p.Routes[0].PerInstance != 50 {
		t.Fatalf("below the estimate: %v core %d", p.Backends[0].Status, p.Routes[0].PerInstance)
	}
}

func TestChannelConversionOverride(t *testing.T) {
	f := &Funnel{
		Channels: map[string]Channel{"wechat": {Exposures: 100, Conversion: map[string]float64{"land": 0.9}}, "banner": {Exposures: 100}},
		Steps:    []Step{{Name: "land", Conversion: 0.1}},
		Routes:   map[string]Route{"r": {Step: "land", RequestsPerVisitor: 2, Backend: "b", Filters: []string{PromoThrottle}}},
		Backends: map[string]Backend{"b": {Capacity: 1e6}},
	}
	p, err := Compute(f, Options{SafetyFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Routes[0]
	// wechat 90 visitors x 2 = 180, banner 10 x 2 = 20
	if !near(r.Need, 200) || r.Tiers[0].Channel != "banner" || r.Tiers[0].PerInstance != 20 || r.Tiers[1].PerInstance != 180 {
		t.Fatalf("%+v", r)
	}
	var b bytes.Buffer
	_ = p.WritePlan(&b)
	if strings.Contains(b.String(), "token_bucket") || !strings.Contains(b.String(), "routes/r/promo_throttle/tiers/wechat/rate: 180") {
		t.Fatalf("filters: [promo_throttle] only:\n%s", b.String())
	}
}

func TestEmittedYAML(t *testing.T) {
	p, err := Compute(seed(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var plan, conf bytes.Buffer
	if err := p.WritePlan(&plan); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteConfig(&conf); err != nil {
		t.Fatal(err)
	}
	var flat map[string]any
	if err := yaml.Unmarshal(plan.Bytes(), &flat); err != nil {
		t.Fatalf("plan is not YAML: %v\n%s", err, plan.String())
	}
	want := map[string]any{
		"routes/lottery/token_bucket/rate":                360,
		"routes/lottery/token_bucket/burst":               72,
		"routes/lottery/promo_throttle/tiers/wechat/rate": 180,
		"routes/report/token_bucket/rate":                 100,
	}
	for k, v := range want {
		if flat[k] != v {
			t.Errorf("plan[%s] = %v, want %v", k, flat[k], v)
		}
	}
	// lottery: token_bucket rate and burst, 3 tiers; grant, info, report: token_bucket
	// only (the funnel's filters:, as configs/demo.yaml carries them)
	if len(flat) != 11 {
		t.Errorf("%d keys in the plan, want 11 (lottery: rate, burst, 3 tiers; 3 routes x (rate, burst))", len(flat))
	}
	// The config fragment says the same thing, nested.
	var nested struct {
		Routes map[string]struct {
			Filters struct {
				TokenBucket struct {
					Rate  int64 `yaml:"rate"`
					Burst int64 `yaml:"burst"`
				} `yaml:"token_bucket"`
				PromoThrottle struct {
					Tiers map[string]struct {
						Rate int64 `yaml:"rate"`
					} `yaml:"tiers"`
				} `yaml:"promo_throttle"`
			} `yaml:"filters"`
		} `yaml:"routes"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(conf.Bytes()))
	dec.KnownFields(true)
	if err := dec.Decode(&nested); err != nil {
		t.Fatalf("config fragment: %v\n%s", err, conf.String())
	}
	n := 0
	for route, r := range nested.Routes {
		tb := r.Filters.TokenBucket
		if flat["routes/"+route+"/token_bucket/rate"] != int(tb.Rate) || flat["routes/"+route+"/token_bucket/burst"] != int(tb.Burst) {
			t.Errorf("%s: config %+v differs from the plan", route, tb)
		}
		n += 2
		for tier, tr := range r.Filters.PromoThrottle.Tiers {
			if flat["routes/"+route+"/promo_throttle/tiers/"+tier+"/rate"] != int(tr.Rate) {
				t.Errorf("%s tier %s: config %d differs from the plan", route, tier, tr.Rate)
			}
			n++
		}
	}
	if n != len(flat) {
		t.Errorf("config has %d values, plan %d", n, len(flat))
	}
	var table bytes.Buffer
	if err := p.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"lottery (core)", "360", "100 (cut)", "CANNOT SUPPORT x3", "can be abandoned: report", "wechat 180"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
}

func TestValidationNamesFieldAndValue(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "configs", "funnel-seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to string
		want           []string
	}{
		{"negative exposures", "wechat: {exposures: 50}", "wechat: {exposures: -50}", []string{"channels.wechat.exposures: must be exposures per second >= 0, got -50"}},
		{"conversion over 1", "{name: landing, conversion: 0.6}", "{name: landing, conversion: 1.5}", []string{"funnel[0].conversion: must be a share between 0 and 1, got 1.5"}},
		{"unknown backend", "backend: delivery, core: true,", "backend: deliveryy, core: true,", []string{`routes.grant.backend: unknown backend "deliveryy" (backends: query, delivery, reporting)`}},
		{"unknown step", "{step: landing, requests_per_visitor: 3", "{step: lnding, requests_per_visitor: 3", []string{`routes.info.step: unknown step "lnding"`}},
		{"negative capacity", "query:     {capacity: 1000}", "query:     {capacity: -1}", []string{"backends.query.capacity: must be requests per second >= 0, got -1"}},
		{"negative requests", "requests_per_visitor: 4,", "requests_per_visitor: -4,", []string{"routes.lottery.requests_per_visitor: must be >= 0, got -4"}},
		{"unknown field", "safety_factor: 3", "safety_factr: 3", []string{`unknown field "safety_factr"`}},
		{"bad safety", "safety_factor: 3", "safety_factor: 0.5", []string{"safety_factor: must be between 1 and 100, got 0.5"}},
		{"bad burst ratio", "burst_ratio: 0.2", "burst_ratio: -0.2", []string{"burst_ratio: must be between 0 and 10, got -0.2"}},
		{"unknown filter", "backend: reporting, filters: [token_bucket]}", "backend: reporting, filters: [sample]}", []string{`routes.report.filters: the planner writes limits for token_bucket and promo_throttle only, got "sample"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(base), tc.from, tc.to, 1)
			if src == string(base) {
				t.Fatalf("%q not in the seed funnel", tc.from)
			}
			_, err := Parse("funnel.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "funnel.yaml: line ") {
				t.Errorf("error %q names no line", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
	if _, err := Parse("f.yaml", []byte("channels: {}\n")); err == nil || !strings.Contains(err.Error(), "channels: at least one") {
		t.Errorf("empty funnel: %v", err)
	}
}

func TestCeilIgnoresFloatNoise(t *testing.T) {
	conv, n := 0.1, 3.0  // variables: a constant expression would be computed exactly
	x := conv * n * 1000 // 300.00000000000006 in float64
	if x == 300 {
		t.Fatal("the float noise this test is about is gone")
	}
	if got := ceilInt(x); got != 300 {
		t.Fatalf("ceil(%v) = %d, want 300", x, got)
	}
	if ceilInt(360.01) != 361 || ceilInt(0) != 0 || ceilInt(0.2) != 1 {
		t.Fatal("ceilInt")
	}
}

// TestFunnelAliasBombRefused: a funnel of nested aliases is refused before the decoder
// expands it.
func TestFunnelAliasBombRefused(t *testing.T) {
	b, err := os.ReadFile("../../testdata/attacks/yaml/laughs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("laughs.yaml", b); err == nil || !strings.Contains(err.Error(), "anchors and aliases are not accepted") {
		t.Fatalf("got %v, want anchors refused", err)
	}
}
