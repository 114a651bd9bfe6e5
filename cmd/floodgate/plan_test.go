package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
