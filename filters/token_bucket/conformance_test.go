package tokenbucket

import (
	"testing"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestConformance(t *testing.T) {
	filtertest.RunConformance(t, filtertest.Conformance{
		Name:    Name,
		Minimal: `rate: 10`,
		Valid: `
rate: 10
burst: 5
key: query:uin
max_keys: 1024
missing_key: shared
wait: 0s
status: 429
global: false
retry_jitter: 1s
`,
		Decisions: []filtertest.Req{
			{URI: "/lottery?uin=10001"},
			{URI: "/lottery"},
		},
		// The bucket keeps its tokens: spent in prev, still spent in next.
		KeepsState: func(t *testing.T, prev, next filters.Filter) {
			spendAll(t, prev, filtertest.Req{URI: "/lottery?uin=10001", Now: 5e9})
			if r := next.Decide(filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=10001", Now: 5e9})); r.Action != filters.Reject {
				t.Error("the rebuilt filter admitted at once after prev spent the bucket: a reload gave a free burst")
			}
		},
	})
}

// spendAll decides rq until the filter rejects it (at most 1000 times).
func spendAll(t *testing.T, f filters.Filter, rq filtertest.Req) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if f.Decide(filtertest.NewRequest(t, rq)).Action == filters.Reject {
			return
		}
	}
	t.Fatal("1000 requests at one instant and no rejection")
}
