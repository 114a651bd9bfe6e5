package main

import (
	"context"
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
	t.Logf("%s\n%s\n%s", log.String(), static.line(), adaptive.line())
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
