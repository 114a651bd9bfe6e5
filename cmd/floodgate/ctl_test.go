package main

import (
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
)

func TestDescribeChange(t *testing.T) {
	old := []config.Leaf{{Path: "routes.info.fallback.body", Value: "", Source: "file"}, {Path: "routes.info.timeout", Value: "300ms", Source: "file"}}
	for _, tc := range []struct {
		desc string
		ch   config.Change
		want string
	}{
		{"changed by a plan", config.Change{Path: "routes.info.timeout", Old: "300ms", New: "100ms", Source: "plan:midnight"},
			"routes.info.timeout: 300ms -> 100ms (plan:midnight)"},
		{"set where nothing was", config.Change{Path: "routes.lottery.enabled", New: "false", Source: "consul:fg/routes/lottery/enabled"},
			"routes.lottery.enabled: (not set) -> false (consul:fg/routes/lottery/enabled)"},
		{"an empty value that was set is shown quoted", config.Change{Path: "routes.info.fallback.body", New: "closed for now", Source: "plan:p"},
			`routes.info.fallback.body: "" -> "closed for now" (plan:p)`},
		{"removed", config.Change{Path: "routes.info.timeout", Old: "300ms", Source: "(removed)"},
			"routes.info.timeout: 300ms -> (not set)"},
		{"same value from another source", config.Change{Path: "routes.info.timeout", Old: "300ms", New: "300ms", Source: "consul:fg/routes/info/timeout"},
			"routes.info.timeout: 300ms -> 300ms (consul:fg/routes/info/timeout, value unchanged)"},
	} {
		if got := describeChange(tc.ch, old); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.desc, got, tc.want)
		}
	}
}
