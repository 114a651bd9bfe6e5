// Package contrib holds the Grafana dashboard and the Prometheus rules shipped with
// floodgate; its tests check them against the metrics the gateway exports.
package contrib

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/itest"
)

// promtool finds promtool: $FLOODGATE_PROMTOOL (set by make test), PATH, then the tool
// cache that scripts/install-promtool.sh fills. The tests fail without it.
func promtool(t *testing.T) string {
	if p := os.Getenv("FLOODGATE_PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	cache := os.Getenv("FLOODGATE_TOOLS")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err == nil {
			cache = filepath.Join(dir, "floodgate", "tools")
		}
	}
	p := filepath.Join(cache, "prometheus-deb", "usr", "bin", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatal("no promtool: run scripts/install-promtool.sh (make test does) or set FLOODGATE_PROMTOOL")
	}
	return p
}

var (
	declRE = []*regexp.Regexp{
		// metrics.NewCounterVec("requests_total", ...), Group.NewGauge(...): floodgate_<name>
		regexp.MustCompile(`\bNew(CounterVec|GaugeVec|Gauge|Counter|HistogramVec|Histogram)\(\s*"([a-z0-9_]+)"`),
		// prometheus.NewDesc("floodgate_upstream_healthy", ...)
		regexp.MustCompile(`NewDesc\(\s*"floodgate_([a-z0-9_]+)"()`),
		// prometheus.GaugeOpts{Namespace: "floodgate", Name: "open_connections", ...}
		regexp.MustCompile(`Namespace:\s*"floodgate",\s*Name:\s*"([a-z0-9_]+)"()`),
	}
	// metrics.NewGauge("reconcile_"+n.name, ...): every floodgate_reconcile_<x> is declared
	prefixRE = regexp.MustCompile(`\bNew(?:CounterVec|GaugeVec|Gauge|Counter|HistogramVec|Histogram)\(\s*"([a-z0-9_]+)"\s*\+`)
	metricRE = regexp.MustCompile(`\bfloodgate_[a-z0-9_]+\b`)
)

// known says whether name is declared, exactly or under a declared prefix.
type known struct {
	names    map[string]bool
	prefixes []string
}

func (k known) has(name string) bool {
	if k.names[name] {
		return true
	}
	for _, p := range k.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// declared returns every metric name the gateway's source declares (histograms with
// their _bucket, _sum and _count series).
func declared(t *testing.T) known {
	names := map[string]bool{}
	var prefixes []string
	root := itest.ModuleRoot()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range prefixRE.FindAllStringSubmatch(string(src), -1) {
			prefixes = append(prefixes, "floodgate_"+m[1])
		}
		for i, re := range declRE {
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				name, kind := m[len(m)-1], ""
				if i == 0 {
					name, kind = m[2], m[1]
				} else {
					name = m[1]
				}
				names["floodgate_"+name] = true
				if strings.HasPrefix(kind, "Histogram") {
					for _, s := range []string{"_bucket", "_sum", "_count"} {
						names["floodgate_"+name+s] = true
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"floodgate_requests_total", "floodgate_config_updates_total", "floodgate_config_generation",
		"floodgate_request_duration_seconds_bucket", "floodgate_upstream_healthy", "floodgate_open_connections"} {
		if !names[must] {
			t.Fatalf("the source scan missed %s: fix the patterns in declared()", must)
		}
	}
	return known{names, prefixes}
}

// exprs returns every query string of the dashboard: panel targets and variables.
func exprs(t *testing.T, v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && (k == "expr" || k == "definition" || k == "query") {
				*out = append(*out, s)
				continue
			}
			exprs(t, val, out)
		}
	case []any:
		for _, val := range x {
			exprs(t, val, out)
		}
	}
}

func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	names := declared(t)
	raw, err := os.ReadFile("grafana/floodgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string           `json:"title"`
		UID    string           `json:"uid"`
		Panels []map[string]any `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/floodgate.json: %v", err)
	}
	var doc any
	json.Unmarshal(raw, &doc)
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard %q uid %q with %d panels: want a titled dashboard with its panels", dash.Title, dash.UID, len(dash.Panels))
	}
	ids := map[float64]bool{}
	for _, p := range dash.Panels {
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		if p["type"] != "row" {
			if targets, _ := p["targets"].([]any); len(targets) == 0 {
				t.Errorf("panel %q has no query", p["title"])
			}
		}
	}
	var qs []string
	exprs(t, doc, &qs)
	used := 0
	for _, q := range qs {
		for _, m := range metricRE.FindAllString(q, -1) {
			used++
			if !names.has(m) {
				t.Errorf("dashboard query names %s, which the gateway does not export: %s", m, q)
			}
		}
	}
	if used < 20 {
		t.Errorf("only %d metric references found in the dashboard's queries", used)
	}
}

func TestPrometheusRules(t *testing.T) {
	names := declared(t)
	bin := promtool(t)
	for _, args := range [][]string{{"check", "rules", "prometheus/alerts.yml"}, {"test", "rules", "prometheus/alerts_test.yml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	src, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metricRE.FindAllString(string(src), -1) {
		if !names.has(m) {
			t.Errorf("alerts.yml names %s, which the gateway does not export", m)
		}
	}
}

// TestMetricsOfARealGateway scrapes a real gateway process (after traffic of every
// outcome) and runs promtool check metrics on the text; every floodgate_ series it
// exports is one the source declares (so the dashboard check above sees them all).
func TestMetricsOfARealGateway(t *testing.T) {
	itest.RequireIntegration(t)
	names := declared(t)
	bin := promtool(t)
	query, _ := itest.Backend(t, "query")
	gw := itest.StartGateway(t, strings.ReplaceAll(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
access_log: {enabled: true, path: "`+filepath.Join(t.TempDir(), "access.log")+`"}
pools:
  q: {addrs: ["{{QUERY}}"], max_conns: 8}
routes:
  lottery: {path: /lottery, pool: q, core: true, filters: {token_bucket: {rate: 1, burst: 1}}}
  promo:   {path: /promo, pool: q, filters: {promo_throttle: {source: "query:tag", default_tier: organic, tiers: {organic: {priority: 1, rate: 100}}}}}
  info:    {path: /info, pool: q, filters: {sample: {ratio: 0.5, key: none}}}
  off:     {path: /off, pool: q, enabled: false}
`, "{{QUERY}}", query))
	for i := 0; i < 5; i++ {
		for _, p := range []string{"/lottery", "/promo", "/info", "/off", "/nothing"} {
			itest.Get(t, gw.URL(p))
		}
	}
	code, text, _ := itest.Get(t, gw.AdminURL("/metrics"))
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "floodgate_") {
			name := line[:strings.IndexAny(line, "{ ")]
			seen[name] = true
		}
	}
	var unknown []string
	for n := range seen {
		if !names.has(n) {
			unknown = append(unknown, n)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("the gateway exports series the source scan does not find: %v", unknown)
	}
	for _, want := range []string{"floodgate_request_duration_seconds_bucket", "floodgate_filter_limit", "floodgate_upstream_healthy",
		"floodgate_pool_max_conns", "floodgate_build_info", "floodgate_active_plan_info"} {
		if !seen[want] {
			t.Errorf("/metrics has no %s", want)
		}
	}
	for n := range seen {
		if strings.HasPrefix(n, "floodgate_consul_") || n == "floodgate_instances_live" {
			t.Errorf("/metrics has %s without Consul configured", n)
		}
	}
}
