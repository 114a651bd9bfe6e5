package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/floodgate/floodgate/bench/report"
	"github.com/floodgate/floodgate/internal/itest"
)

func TestBenchThresholds(t *testing.T) {
	sum := func(sent, late, errs, client int64) *report.Summary {
		return &report.Summary{Sent: sent, Late: late, Totals: map[string]int64{"admitted": sent - errs - client, "error": errs, "client": client}}
	}
	for _, tc := range []struct {
		desc               string
		s                  *report.Summary
		maxErrors, maxLate float64
		fail               bool
	}{
		{desc: "no thresholds", s: sum(100, 50, 50, 0), maxErrors: -1, maxLate: -1},
		{desc: "errors within", s: sum(1000, 0, 5, 5), maxErrors: 0.01, maxLate: -1},
		{desc: "errors and no answers over", s: sum(1000, 0, 6, 5), maxErrors: 0.01, maxLate: -1, fail: true},
		{desc: "zero tolerance", s: sum(1000, 0, 0, 1), maxErrors: 0, maxLate: -1, fail: true},
		{desc: "late within", s: sum(1000, 10, 0, 0), maxErrors: -1, maxLate: 0.01},
		{desc: "late over", s: sum(1000, 11, 0, 0), maxErrors: -1, maxLate: 0.01, fail: true},
		{desc: "nothing sent", s: sum(0, 0, 0, 0), maxErrors: 0, maxLate: 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := benchThresholds(tc.s, tc.maxErrors, tc.maxLate)
			var ee exitError
			if tc.fail != (err != nil) || (err != nil && (!errors.As(err, &ee) || ee.code != 1 || ee.msg == "")) {
				t.Errorf("benchThresholds = %v, want failure %v (exit 1 with a message)", err, tc.fail)
			}
		})
	}
}

// TestPlanStrict: the seed's funnel has a backend that cannot support the plan at the
// safety factor; -strict turns that into exit 1, without it the plan exits 0.
func TestPlanStrict(t *testing.T) {
	funnel := filepath.Join(itest.ModuleRoot(), "configs", "funnel-seed.yaml")
	out := filepath.Join(t.TempDir(), "plan.txt")
	if err := runPlan([]string{"-funnel", funnel, "-o", out}); err != nil {
		t.Fatalf("plan without -strict: %v", err)
	}
	err := runPlan([]string{"-funnel", funnel, "-o", out, "-strict"})
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("plan -strict: %v, want exit 1 (the seed's funnel has a backend short of its margin)", err)
	}
	if b, _ := os.ReadFile(out); len(b) == 0 {
		t.Errorf("plan -strict wrote no plan before failing")
	}
}

// TestValidateJSON: validate -json prints the result as JSON, exit 0 or 1 as without it.
func TestValidateJSON(t *testing.T) {
	itest.RequireIntegration(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("server: {listne: x}\n"), 0o644)
	for _, tc := range []struct {
		desc, file string
		code       int
		valid      bool
		problem    string
	}{
		{desc: "valid", file: filepath.Join(itest.ModuleRoot(), "configs", "demo.yaml"), valid: true},
		{desc: "problems", file: bad, code: 1, problem: "server.listne"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cmd := exec.Command(itest.Binary(t), "validate", "-json", "-config", tc.file)
			out, _ := cmd.Output()
			var r struct {
				Valid    bool
				Problems []struct{ Where, Path, Msg string }
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if cmd.ProcessState.ExitCode() != tc.code || r.Valid != tc.valid || (tc.problem != "" && (len(r.Problems) == 0 || r.Problems[0].Path != tc.problem)) {
				t.Errorf("exit %d, %+v; want exit %d valid %v problem %q", cmd.ProcessState.ExitCode(), r, tc.code, tc.valid, tc.problem)
			}
		})
	}
}
