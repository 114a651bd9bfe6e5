package promothrottle

import (
	"testing"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestConformance(t *testing.T) {
	filtertest.RunConformance(t, filtertest.Conformance{
		Name: Name,
		Minimal: `source: query:adtag
default_tier: organic
tiers: {organic: {priority: 1, rate: 50}}`,
		Valid: `
source: query:adtag
default_tier: organic
unknown_tier: unknown
pressure: 0
tiers:
  organic: {priority: 100, rate: 50, burst: 5}
  wechat: {priority: 50, rate: 20, match: [wechat, wx], prefix: [wx_]}
  unknown: {priority: 1, rate: 1}
global: false
status: 429
shed_status: 0
shed_retry_after: 10s
retry_jitter: 2s
`,
		Decisions: []filtertest.Req{
			{URI: "/lottery"},
			{URI: "/lottery?adtag=wechat"},
			{URI: "/lottery?adtag=wx_moments"},
			{URI: "/lottery?adtag=zz"},
		},
		// Each tier's bucket keeps its tokens: spent in prev, still spent in next.
		KeepsState: func(t *testing.T, prev, next filters.Filter) {
			rq := filtertest.Req{URI: "/lottery?adtag=wechat", Now: 5e9}
			spent := false
			for i := 0; i < 1000 && !spent; i++ {
				spent = prev.Decide(filtertest.NewRequest(t, rq)).Action == filters.Reject
			}
			if !spent {
				t.Fatal("1000 requests at one instant and no rejection")
			}
			if r := next.Decide(filtertest.NewRequest(t, rq)); r.Action != filters.Reject {
				t.Error("the rebuilt filter admitted at once after prev spent the tier: a reload gave a free burst")
			}
		},
	})
}
