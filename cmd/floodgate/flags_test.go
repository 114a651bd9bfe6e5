package main

import (
	"errors"
	"strings"
	"testing"
)

// TestExplicitZeroRefused: a flag whose zero value stands for "the default" given as 0
// is a usage error naming it (bench -rate 0 ran at 1000/s, plan -safety 0 used 3).
func TestExplicitZeroRefused(t *testing.T) {
	for _, tc := range []struct {
		desc string
		run  func([]string) error
		args []string
		want string
	}{
		{"bench -rate 0", runBench, []string{"-route", "x=/x", "-rate", "0", "-duration", "1s"}, "-rate 0"},
		{"bench -duration 0s", runBench, []string{"-route", "x=/x", "-rate", "10", "-duration", "0s"}, "-duration 0s"},
		{"plan -safety 0", runPlan, []string{"-funnel", "../../configs/funnel-seed.yaml", "-safety", "0"}, "-safety 0"},
		{"plan -instances 0", runPlan, []string{"-funnel", "../../configs/funnel-seed.yaml", "-instances", "0"}, "-instances 0"},
	} {
		err := tc.run(tc.args)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(ee.msg, tc.want) {
			t.Errorf("%s: %v, want a usage error naming %s", tc.desc, err, tc.want)
		}
	}
}
