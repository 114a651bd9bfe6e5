//go:build !race

package promothrottle

import (
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// TestNoAllocs: Decide allocates nothing, whatever the tag and the verdict.
func TestNoAllocs(t *testing.T) {
	for _, c := range []struct {
		desc, yaml string
		req        filtertest.Req
	}{
		{"no tag", sketch, filtertest.Req{URI: "/lottery?uin=1"}},
		{"exact tag", sketch, filtertest.Req{URI: "/lottery?adtag=wechat"}},
		{"prefix tag", sketch, filtertest.Req{URI: "/lottery?adtag=bn_top_banner"}},
		{"unknown tag", sketch, filtertest.Req{URI: "/lottery?adtag=somewhere_else"}},
		{"limited", sketch, filtertest.Req{URI: "/lottery?adtag=bn_x"}}, // the fixed time drains it
		{"shed", strings.Replace(sketch, "pressure: 0", "pressure: 2", 1), filtertest.Req{URI: "/lottery?adtag=wx"}},
		{"header source", "source: header:X-Adtag\ndefault_tier: a\ntiers: {a: {priority: 1, rate: 5}, b: {priority: 2, rate: 5, match: [x]}}",
			filtertest.Req{Headers: map[string]string{"X-Adtag": "x"}}},
	} {
		t.Run(c.desc, func(t *testing.T) {
			f := filtertest.Build(t, Name, c.yaml, nil)
			filtertest.AssertNoAllocs(t, f, filtertest.NewRequest(t, c.req))
		})
	}
	t.Run("after a live rate change (tokens carried), global", func(t *testing.T) {
		env := filters.NewEnv()
		env.SetInstances(3)
		prev, _ := filtertest.BuildWith(t, Name, sketch+"global: true", nil, filters.Route{Name: "test"}, env)
		f, _ := filtertest.BuildWith(t, Name, strings.Replace(sketch, "rate: 2000", "rate: 1000", 1)+"global: true", prev, filters.Route{Name: "test"}, env)
		req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?adtag=wx"})
		filtertest.AssertNoAllocsFunc(t, func() {
			req.Now += int64(time.Microsecond)
			f.Decide(req)
		})
	})
	t.Run("tags changing, global, clock moving", func(t *testing.T) {
		env := filters.NewEnv()
		env.SetInstances(3)
		f, _ := filtertest.BuildWith(t, Name, sketch+"global: true", nil, filters.Route{Name: "test"}, env)
		req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?adtag=wx_000"})
		i := 0
		filtertest.AssertNoAllocsFunc(t, func() {
			i++
			filtertest.SetQueryArg(req, "adtag", tags[i%len(tags)])
			req.Now += int64(time.Microsecond)
			f.Decide(req)
		})
	})
}
