package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestPlanCommand runs `floodgate plan` on the night's NIC funnel: the emitted plan
// carries the NIC warning as a comment, -json writes the whole plan beside it.
func TestPlanCommand(t *testing.T) {
	dir := t.TempDir()
	nic := filepath.Join("..", "..", "configs", "funnel-night-nic.yaml")
	out, js := filepath.Join(dir, "night.yaml"), filepath.Join(dir, "night.json")
	if err := runPlan([]string{"-funnel", nic, "-emit", "plan", "-o", out, "-json", js}); err != nil {
		t.Fatal(err)
	}
	plan, _ := os.ReadFile(out)
	if !strings.Contains(string(plan), "# WARNING: CANNOT SUPPORT: query->cmem 6.22 Gbit/s at x3 > 5.1 Gbit/s") ||
		!strings.Contains(string(plan), "\nroutes/lottery/token_bucket/rate: 18000\n") {
		t.Errorf("plan:\n%s", plan)
	}
	data, _ := os.ReadFile(js)
	var doc struct {
		Links []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"links"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	flagged := []string{}
	for _, l := range doc.Links {
		if l.Status != "ok" {
			flagged = append(flagged, l.Name+" "+l.Status)
		}
	}
	if strings.Join(flagged, ",") != "query->cmem short_of_margin" {
		t.Errorf("flagged links %v", flagged)
	}

	for _, tc := range []struct {
		desc string
		args []string
		want string
	}{
		{"-json and -o the same file", []string{"-funnel", nic, "-o", out, "-json", out}, "-json and -o name the same file"},
		{"bad funnel", []string{"-funnel", planTestFile(t, dir, "bad.yaml", "gateway_link: fast\n")}, "bad.yaml: line 1: gateway_link: not a bandwidth"},
	} {
		err := runPlan(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.desc, err, tc.want)
		}
	}
}

func planTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A drill's JSON summary sizes the funnel's routes: `floodgate bench -json` against a
// real server on 127.0.0.1, then `floodgate plan -drill` on a funnel whose lottery route
// gives no sizes; the gateway->query link carries the measured answers.
func TestPlanFromDrill(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 5000)
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.SetBody(body) }}
	go srv.Serve(ln)
	defer srv.Shutdown()

	dir := t.TempDir()
	drill := filepath.Join(dir, "drill.json")
	if err := runBench([]string{"-route", "lottery=/lottery", "-target", ln.Addr().String(), "-rate", "100", "-duration", "1s", "-quiet", "-json", drill}); err != nil {
		t.Fatal(err)
	}
	nic, err := os.ReadFile(filepath.Join("..", "..", "configs", "funnel-night-nic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	funnel := strings.Replace(string(nic), "backend: query, core: true, request_bytes: 800, response_bytes: 1200}", "backend: query, core: true}", 1)
	if funnel == string(nic) {
		t.Fatal("the lottery route of funnel-night-nic.yaml changed: update this test")
	}
	js := filepath.Join(dir, "plan.json")
	if err := runPlan([]string{"-funnel", planTestFile(t, dir, "f.yaml", funnel), "-drill", drill, "-json", js, "-o", filepath.Join(dir, "table.txt")}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(js)
	var doc struct {
		Links []struct {
			Name string  `json:"name"`
			In   float64 `json:"in_bits_per_s_planned"`
		} `json:"links"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	for _, l := range doc.Links {
		if l.Name != "gateway->query" {
			continue
		}
		// 24,000 lottery requests/s x3 x 8 bits x (5000 body + a head of 40-400 bytes)
		if perAnswer := l.In / (3 * 8 * 24000); perAnswer < 5040 || perAnswer > 5400 {
			t.Errorf("gateway->query carries %.0f bytes per answer, want the drill's ~5000-byte answers", perAnswer)
		}
		return
	}
	t.Fatalf("no gateway->query link: %s", data)
}
