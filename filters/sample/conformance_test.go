package sample_test

import (
	"testing"

	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestConformance(t *testing.T) {
	filtertest.RunConformance(t, filtertest.Conformance{
		Name:    "sample",
		Minimal: `ratio: 0.5`,
		Valid: `
ratio: 0.5
key: query:uin
window: 30s
`,
		Decisions: []filtertest.Req{
			{URI: "/info?uin=10001"},
			{URI: "/info?uin=10002"},
			{URI: "/info"},
		},
		// KeepsState: nil - a user's draw depends only on the key, the ratio and the
		// window, so there is no state to carry over.
	})
}
