//go:build !race

package acl_test

import (
	"testing"

	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestNoAllocs(t *testing.T) {
	f := filtertest.Build(t, "acl", `{allow_methods: [GET], deny_networks: [10.0.0.0/8], deny_paths: [/admin], require_headers: [X-App], deny_user_agents: [sqlmap]}`, nil)
	req := filtertest.NewRequest(t, filtertest.Req{URI: "/lottery?uin=1", Headers: map[string]string{"X-App": "1", "User-Agent": "qq/8.9"}, IP: "203.0.113.1"})
	filtertest.AssertNoAllocs(t, f, req)
}

func BenchmarkDecide(b *testing.B) {
	f := filtertest.Build(b, "acl", `{allow_methods: [GET], deny_networks: [10.0.0.0/8, 172.16.0.0/12], deny_paths: [/admin], require_headers: [X-App], deny_user_agents: [sqlmap]}`, nil)
	req := filtertest.NewRequest(b, filtertest.Req{URI: "/lottery?uin=1", Headers: map[string]string{"X-App": "1", "User-Agent": "qq/8.9"}, IP: "203.0.113.1"})
	b.ReportAllocs()
	for b.Loop() {
		f.Decide(req)
	}
}
