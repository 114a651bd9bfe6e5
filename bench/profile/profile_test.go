package profile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
name: t
rate: 1000
users: {size: 100, distribution: zipf, zipf_s: 1.2, param: {query: uin}}
tags: {param: {header: X-Adtag}, shares: {wechat: 0.5, qzone: 0.3}}
routes:
  - {name: lottery, path: /lottery, weight: 3}
  - {name: grant, method: POST, path: /grant, body: "{}"}
stages:
  - ramp: {from: 0, to: 1x, duration: 2s}
  - hold: {rate: 150%, duration: 1s}
  - spike: {rate: 2000, rise: 500ms, duration: 2s}
`

func TestParseGood(t *testing.T) {
	p, err := Parse("t.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Stages[0].Ramp.To != Rel(1) || p.Stages[1].Hold.Rate != Rel(1.5) || p.Stages[2].Spike.Rate != Abs(2000) {
		t.Fatalf("rates %+v %+v %+v", p.Stages[0].Ramp, p.Stages[1].Hold, p.Stages[2].Spike)
	}
	if p.TotalDuration() != 5*time.Second {
		t.Fatalf("total %v", p.TotalDuration())
	}
	if w, n := p.Tags.Param.Place(); w != InHeader || n != "X-Adtag" {
		t.Fatalf("tag place %v %q", w, n)
	}
	if s := p.Tags.Sorted(); len(s) != 2 || s[0].Tag != "qzone" {
		t.Fatalf("sorted shares %v", s)
	}
	// Marshal writes what Parse reads back.
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse("again", out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	if q.Stages[1].Hold.Rate != Rel(1.5) || q.Routes[1].Method != "POST" {
		t.Fatalf("round trip lost data:\n%s", out)
	}
}

func TestParseErrorsNameFieldAndLine(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level field", "rate: 10\nroutez: []\n", []string{"t.yaml: line 2: unknown field \"routez\""}},
		{"unknown nested field", "routes:\n  - name: a\n    path: /a\n    wieght: 2\nstages:\n  - hold: {rate: 1, duration: 1s}\n",
			[]string{"line 4: unknown field \"wieght\""}},
		{"bad rate", "routes: [{name: a, path: /a}]\nstages:\n  - hold: {rate: fast, duration: 1s}\n",
			[]string{"line 3", `bad rate "fast"`}},
		{"negative rate", "routes: [{name: a, path: /a}]\nstages:\n  - hold: {rate: -5, duration: 1s}\n",
			[]string{"line 3: stages[0].hold.rate: must not be negative, got -5"}},
		{"relative without plan", "routes: [{name: a, path: /a}]\nstages:\n  - hold: {rate: 2x, duration: 1s}\n",
			[]string{"rate: relative stage rates"}},
		{"bad duration", "routes: [{name: a, path: /a}]\nstages:\n  - hold: {rate: 1, duration: soon}\n",
			[]string{"line 3"}},
		{"zero duration", "routes: [{name: a, path: /a}]\nstages:\n  - hold: {rate: 1, duration: 0s}\n",
			[]string{"line 3: stages[0].hold.duration: must be positive"}},
		{"two kinds in a stage", "routes: [{name: a, path: /a}]\nstages:\n  - hold: {rate: 1, duration: 1s}\n    ramp: {from: 1, to: 2, duration: 1s}\n",
			[]string{"line 3: stages[0]: a stage is exactly one of ramp, hold or spike (got 2)"}},
		{"rise too long", "routes: [{name: a, path: /a}]\nstages:\n  - spike: {rate: 1, rise: 2s, duration: 1s}\n",
			[]string{"stages[0].spike.rise: must be at least 0 and shorter than the duration"}},
		{"duplicate route", "routes:\n  - {name: a, path: /a}\n  - {name: a, path: /b}\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"line 3: routes[1].name: \"a\" is already the name of routes[0]"}},
		{"bad path", "routes:\n  - {name: a, path: lottery}\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"line 2: routes[0].path: must start with /"}},
		{"no routes", "stages: [{hold: {rate: 1, duration: 1s}}]\n", []string{"routes: at least one route is needed"}},
		{"shares over 1", "tags: {param: {query: adtag}, shares: {a: 0.7, b: 0.6}}\nroutes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"line 1: tags.shares: shares add up to 1.3"}},
		{"share out of range", "tags: {param: {query: adtag}, shares: {a: 1.5}}\nroutes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"tags.shares.a: share must be in (0, 1], got 1.5"}},
		{"param twice", "users: {size: 10, param: {query: uin, header: X-Uin}}\nroutes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"users.param: name exactly one of query, header or cookie"}},
		{"bad distribution", "users: {size: 10, distribution: pareto, param: {query: uin}}\nroutes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"line 1: users.distribution: must be uniform or zipf, got \"pareto\""}},
		{"zipf exponent", "users: {size: 10, distribution: zipf, zipf_s: 0.5, param: {query: uin}}\nroutes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"users.zipf_s: must be greater than 1"}},
		{"bad target", "target: ftp://x\nroutes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n",
			[]string{"line 1: target: target \"ftp://x\": only http:// and https://"}},
		{"duplicate key", "rate: 1\nrate: 2\n", []string{"t.yaml:2", "given twice (lines 1 and 2)"}},
		{"too long", "routes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 2h}}]\n", []string{"stages: stages last 2h0m0s in all, more than 1h0m0s"}},
		{"two documents", "routes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n---\nrate: 1\n", []string{"more than one YAML document"}},
		{"empty", "", []string{"empty profile"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	_, err := Parse("t.yaml", []byte("routes:\n  - {name: a, path: x, weight: -1}\nstages:\n  - hold: {rate: -1, duration: 1s}\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"routes[0].path", "routes[0].weight", "stages[0].hold.rate"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q missing from\n%v", w, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"4000": Abs(4000), "1.6x": Rel(1.6), "160%": Rel(1.6), " 2X ": Rel(2), "0": Abs(0)} {
		got, err := ParseRate(in)
		if err != nil || got.Value-want.Value > 1e-12 || want.Value-got.Value > 1e-12 || got.Relative != want.Relative {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "fast", "NaN", "1.6y"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if got := Rel(1.6).PerSecond(4000); got != 6400 {
		t.Errorf("1.6x of 4000 = %v", got)
	}
}

func TestBuiltinsMatchConfigsAndParse(t *testing.T) {
	names := BuiltinNames()
	if len(names) < 2 || names[1] != "seed-night" {
		t.Fatalf("built-ins %v", names)
	}
	for _, n := range names {
		src, err := BuiltinSource(n)
		if err != nil {
			t.Fatal(err)
		}
		disk, err := os.ReadFile(filepath.Join("..", "..", "configs", "profiles", n+".yaml"))
		if err != nil {
			t.Fatalf("configs/profiles/%s.yaml: %v", n, err)
		}
		if !bytes.Equal(src, disk) {
			t.Errorf("configs/profiles/%s.yaml differs from the built-in bench/profile/builtin/%s.yaml: copy one over the other", n, n)
		}
		if _, err := Builtin(n); err != nil {
			t.Errorf("built-in %s: %v", n, err)
		}
	}
	if _, err := Builtin("nope"); err == nil || !strings.Contains(err.Error(), "seed-night") {
		t.Errorf("unknown built-in: %v", err)
	}
}

func TestSeedNight(t *testing.T) {
	p, err := Load("seed-night")
	if err != nil {
		t.Fatal(err)
	}
	if p.TotalDuration() != 60*time.Second {
		t.Errorf("seed-night lasts %v, want 60s", p.TotalDuration())
	}
	want := map[string]string{"lottery": "GET /lottery", "grant": "POST /grant", "info": "GET /info", "report": "GET /report"}
	for _, r := range p.Routes {
		m := r.Method
		if m == "" {
			m = "GET"
		}
		if want[r.Name] != m+" "+r.Path {
			t.Errorf("route %s: %s %s", r.Name, m, r.Path)
		}
		delete(want, r.Name)
	}
	if len(want) > 0 {
		t.Errorf("missing routes %v", want)
	}
	peak := 0.0
	for _, s := range p.Stages {
		if s.Spike != nil {
			peak = s.Spike.Rate.PerSecond(p.Rate) / p.Rate
		}
	}
	if peak < 1.55 || peak > 1.65 {
		t.Errorf("surge is %.2fx the plan, want about 1.6x (200k vs 126k)", peak)
	}
	q := p.ScaleTo(6 * time.Second)
	if q.TotalDuration() != 6*time.Second || p.TotalDuration() != 60*time.Second {
		t.Errorf("ScaleTo: %v (original now %v)", q.TotalDuration(), p.TotalDuration())
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(path, []byte("routes: [{name: a, path: /a}]\nstages: [{hold: {rate: 1, duration: 1s}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "mine" {
		t.Errorf("name %q, want the file name", p.Name)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := Load("no-such-profile"); err == nil || !strings.Contains(err.Error(), "built-in") {
		t.Errorf("unknown name: %v", err)
	}
}

func TestSplitTarget(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:8080": "127.0.0.1:8080 false", "http://localhost:9": "localhost:9 false",
		"https://gw.example:8443/": "gw.example:8443 true", "localhost": "localhost:80 false", "https://h": "h:443 true", "[::1]:80": "[::1]:80 false"} {
		a, tls, err := SplitTarget(in)
		if err != nil || a+" "+map[bool]string{true: "true", false: "false"}[tls] != want {
			t.Errorf("SplitTarget(%q) = %q %v %v, want %s", in, a, tls, err, want)
		}
	}
	for _, in := range []string{"", "ftp://x", "http://h/path", "h:1?x"} {
		if _, _, err := SplitTarget(in); err == nil {
			t.Errorf("SplitTarget(%q) accepted", in)
		}
	}
}

// Every example in configs/profiles/ stays valid.
func TestConfigsProfilesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "configs", "profiles", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := LoadFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestAdhoc(t *testing.T) {
	p := Adhoc("127.0.0.1:1", 500, 2*time.Second, Route{Name: "a", Path: "/a"}, Route{Name: "b", Path: "/b"})
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.TotalDuration() != 2*time.Second || p.Stages[0].Hold.Rate.PerSecond(p.Rate) != 500 {
		t.Fatalf("%+v", p)
	}
}

// TestAliasBombsRefused: a profile of nested aliases is refused before the decoder
// expands it.
func TestAliasBombsRefused(t *testing.T) {
	b, err := os.ReadFile("../../testdata/attacks/yaml/laughs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("laughs.yaml", b); err == nil || !strings.Contains(err.Error(), "anchors and aliases are not accepted") {
		t.Fatalf("got %v, want anchors refused", err)
	}
}
