package numberpack

import (
	"testing"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestConformance(t *testing.T) {
	filtertest.RunConformance(t, filtertest.Conformance{
		Name:    Name,
		Minimal: "packs: {vip: {file: " + yamlQuote(vipFile) + "}}",
		Valid: `
source: file
mode: require
key: query:uin
packs:
  vip: {file: ` + yamlQuote(vipFile) + `}
  new_users: {file: ` + yamlQuote(newUsersFile) + `}
on_unknown: closed
status: 403
unknown_status: 0
header: X-Floodgate-Packs
reload_every: 10s
`,
		Decisions: []filtertest.Req{
			{URI: "/lottery?uin=7"},   // in no pack
			{URI: "/lottery?uin=abc"}, // not a number
			{URI: "/lottery"},         // no key
		},
		Ready: func(t *testing.T, f filters.Filter) { waitLoaded(t, f.(*Filter)) },
		// The loaded packs are kept: the rebuilt filter answers from prev's generation at
		// once, without loading the files again.
		KeepsState: func(t *testing.T, prev, next filters.Filter) {
			g := waitLoaded(t, prev.(*Filter))
			v := next.(*Filter).files.current()
			if v == nil || v.gen != g {
				t.Errorf("the rebuilt filter does not serve prev's loaded generation")
			}
		},
	})
}
