//go:build !race

package tokenbucket

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// TestNoAllocs: Decide allocates nothing, whatever it decides.
func TestNoAllocs(t *testing.T) {
	for _, c := range []struct {
		desc, yaml string
		req        filtertest.Req
	}{
		{"route, admitted", `{rate: 1e9, burst: 1000000}`, filtertest.Req{}},
		{"route, limited", `{rate: 1, burst: 1}`, filtertest.Req{}},
		{"route, queued", `{rate: 0.001, burst: 1, wait: 10s}`, filtertest.Req{}},
		{"query key", `{rate: 10, key: "query:uin"}`, filtertest.Req{URI: "/lottery?adtag=x&uin=10001"}},
		{"cookie key", `{rate: 10, key: "cookie:uin"}`, filtertest.Req{Cookies: map[string]string{"uin": "10001", "sid": "x"}}},
		{"header key", `{rate: 10, key: "header:X-Uin"}`, filtertest.Req{Headers: map[string]string{"X-Uin": "10001"}}},
		{"ip key", `{rate: 10, key: ip}`, filtertest.Req{IP: "2001:db8::7"}},
		{"missing key, shared", `{rate: 10, key: "query:uin"}`, filtertest.Req{}},
		{"missing key, rejected", `{rate: 10, key: "query:uin", missing_key: reject}`, filtertest.Req{}},
	} {
		t.Run(c.desc, func(t *testing.T) {
			f := filtertest.Build(t, Name, c.yaml, nil)
			filtertest.AssertNoAllocs(t, f, filtertest.NewRequest(t, c.req))
		})
	}
	t.Run("global, instances changing", func(t *testing.T) {
		env := filters.NewEnv()
		f, _ := filtertest.BuildWith(t, Name, `{rate: 1000, global: true}`, nil, filters.Route{Name: "test"}, env)
		req := filtertest.NewRequest(t, filtertest.Req{})
		n := int64(0)
		filtertest.AssertNoAllocsFunc(t, func() {
			n++
			env.SetInstances(1 + n%5)
			req.Now += int64(time.Millisecond)
			f.Decide(req)
		})
	})
	t.Run("random users after a live burst change (keys carried)", func(t *testing.T) {
		prev := filtertest.Build(t, Name, `{rate: 10, burst: 5, key: "query:uin", max_keys: 65536}`, nil)
		f := filtertest.Build(t, Name, `{rate: 10, burst: 1, key: "query:uin", max_keys: 65536}`, prev)
		req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=10000000000"})
		rng := rand.New(rand.NewPCG(1, 2))
		var buf [20]byte
		set := func() {
			filtertest.SetQueryArg(req, "uin", strconv.AppendUint(buf[:0], 10_000_000_000+rng.Uint64N(1<<12), 10))
		}
		for range 1 << 12 { // the old table holds these users
			set()
			prev.Decide(req)
		}
		filtertest.AssertNoAllocsFunc(t, func() {
			set()
			req.Now += 1000
			f.Decide(req)
		})
	})
	t.Run("random users, clock moving", func(t *testing.T) {
		f := filtertest.Build(t, Name, `{rate: 10, burst: 1, key: "query:uin", max_keys: 65536}`, nil)
		req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=10000000000"})
		rng := rand.New(rand.NewPCG(1, 2))
		var buf [20]byte
		filtertest.AssertNoAllocsFunc(t, func() {
			filtertest.SetQueryArg(req, "uin", strconv.AppendUint(buf[:0], 10_000_000_000+rng.Uint64N(1<<20), 10))
			req.Now += 1000
			f.Decide(req)
		})
	})
}
