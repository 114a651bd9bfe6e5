package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestDrillOverloadSmoke is a short `make drill-overload` (about 30 s): the same
// processes and load, phases of 2 s healthy, 6 s slow, 3 s recovered. With the backend
// slowed tenfold under twice its capacity, static limits must lose core requests
// (upstream/busy takes them like any other), and adaptive protection must keep the core
// route whole while it sheds non-core with overload/shed.
func TestDrillOverloadSmoke(t *testing.T) {
	itest.RequireIntegration(t)
	o := defaultOptions()
	o.bin = itest.Binary(t)
	o.dir = t.TempDir()
	o.healthy, o.slow, o.after = 2*time.Second, 6*time.Second, 3*time.Second
	var log strings.Builder
	o.log = &log
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rs, err := run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	static, adaptive := rs[0], rs[1]
	t.Logf("%s\n%s\n%s\n%s", log.String(), static.line(), adaptive.line(), ratioLine(static, adaptive))
	checkLines(t, static, adaptive)
	if static.coreSuccess > 0.9 {
		t.Errorf("static limits kept %.1f%% of core requests; the scenario must make them lose core requests", 100*static.coreSuccess)
	}
	if adaptive.coreSuccess < 0.99 {
		t.Errorf("adaptive protection kept %.1f%% of core requests, want >= 99%%", 100*adaptive.coreSuccess)
	}
	if adaptive.coreShedSlow != 0 {
		t.Errorf("adaptive protection shed %d core requests while non-core was left", adaptive.coreShedSlow)
	}
	if adaptive.verdicts["info overload/shed"] == 0 || adaptive.verdicts["report overload/shed"] == 0 {
		t.Errorf("adaptive protection shed no non-core request: %v", adaptive.verdicts)
	}
}

// The result lines of issue 9, exactly: one per mode, then the ratio.
var (
	modeLineRE  = regexp.MustCompile(`^overload: (static|adaptive) core_success=[0-9]+\.[0-9]% core_p99_ms=[0-9]+ noncore_admitted=[0-9]+\.[0-9]% recovery_s=([0-9]+\.[0-9]|inf)$`)
	ratioLineRE = regexp.MustCompile(`^ratio core-success adaptive/static = [0-9]+\.[0-9]{2}$`)
)

func checkLines(t *testing.T, static, adaptive modeResult) {
	t.Helper()
	for _, l := range []string{static.line(), adaptive.line()} {
		if !modeLineRE.MatchString(l) {
			t.Errorf("result line %q does not match %s", l, modeLineRE)
		}
	}
	if l := ratioLine(static, adaptive); !ratioLineRE.MatchString(l) {
		t.Errorf("ratio line %q does not match %s", l, ratioLineRE)
	}
}

// TestResultLines: the lines `make drill-overload` ends with have the format,
// for a drill that recovered and one that did not.
func TestResultLines(t *testing.T) {
	for _, tc := range []struct {
		desc             string
		static, adaptive modeResult
		want             []string
	}{
		{"recovered",
			modeResult{mode: "static", coreSuccess: 0.477, coreP99ms: 639.4, noncoreAdmitted: 0.471, recoveryS: 3},
			modeResult{mode: "adaptive", coreSuccess: 1, coreP99ms: 242, noncoreAdmitted: 0.191, recoveryS: 1},
			[]string{"overload: static core_success=47.7% core_p99_ms=639 noncore_admitted=47.1% recovery_s=3.0",
				"overload: adaptive core_success=100.0% core_p99_ms=242 noncore_admitted=19.1% recovery_s=1.0",
				"ratio core-success adaptive/static = 2.10"}},
		{"not recovered within the phase",
			modeResult{mode: "static", coreSuccess: 0.5, coreP99ms: 1000, noncoreAdmitted: 0.5, recoveryS: -1},
			modeResult{mode: "adaptive", coreSuccess: 0.995, coreP99ms: 300, noncoreAdmitted: 0, recoveryS: 0},
			[]string{"overload: static core_success=50.0% core_p99_ms=1000 noncore_admitted=50.0% recovery_s=inf",
				"overload: adaptive core_success=99.5% core_p99_ms=300 noncore_admitted=0.0% recovery_s=0.0",
				"ratio core-success adaptive/static = 1.99"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := []string{tc.static.line(), tc.adaptive.line(), ratioLine(tc.static, tc.adaptive)}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("line %d: %q, want %q", i, got[i], tc.want[i])
				}
			}
			checkLines(t, tc.static, tc.adaptive)
		})
	}
}
