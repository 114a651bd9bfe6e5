package bench_test

import (
	"os"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/bench/profile"
	_ "github.com/floodgate/floodgate/filters/all" // token_bucket, as the gateway binary has it
	"github.com/floodgate/floodgate/gateway/config"
)

// TestShedBenchConfigs keeps make bench's shedding part runnable: bench/compare.sh runs
// floodgate bench with configs/shed-profile.yaml against the gateway on
// configs/gateway-shed.yaml, and rewrites the token_bucket line of that file to set the
// limit (it stops with an error when the line is missing), and the nginx and haproxy
// templates' placeholders.
func TestShedBenchConfigs(t *testing.T) {
	p, err := profile.Load("configs/shed-profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routes) != 1 || p.Routes[0].Path != "/lottery" || p.Users == nil || p.Users.Size < 100000 {
		t.Errorf("shed-profile.yaml: want one route /lottery and a large random user population, got routes %+v users %+v", p.Routes, p.Users)
	}

	doc, err := config.ParseFile("configs/gateway-shed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(doc)
	if err != nil {
		t.Fatalf("gateway-shed.yaml does not load: %v", err)
	}
	rt, ok := cfg.Routes["lottery"]
	if !ok || rt.Path != "/lottery" {
		t.Fatalf("gateway-shed.yaml: want route lottery on /lottery, got %+v", cfg.Routes)
	}
	raw, err := os.ReadFile("configs/gateway-shed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "token_bucket: {rate: 1000, burst: 100}") {
		t.Error("gateway-shed.yaml: compare.sh sets the limit by rewriting the line 'token_bucket: {rate: 1000, burst: 100}', which is missing")
	}

	for file, marks := range map[string][]string{
		"configs/nginx-shed.conf.tmpl":  {"@LISTEN@", "@BACKEND@", "@DIR@", "@LIMIT@", "@BURST@", "limit_req zone=flood burst=@BURST@ nodelay", "limit_req_status 429"},
		"configs/haproxy-shed.cfg.tmpl": {"@LISTEN@", "@BACKEND@", "@LIMIT@", "sc-inc-gpc0(0)", "deny_status 429"},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range marks {
			if !strings.Contains(string(b), m) {
				t.Errorf("%s: %q missing (compare.sh fills in the placeholders; the limit must be equivalent to the gateway's)", file, m)
			}
		}
	}
}
