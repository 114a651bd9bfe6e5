package acl_test

import (
	"strings"
	"testing"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"

	_ "github.com/floodgate/floodgate/filters/acl"
)

func TestDecide(t *testing.T) {
	f := filtertest.Build(t, "acl", `
allow_methods: [GET, POST]
deny_networks: [10.0.0.0/8, "192.0.2.7"]
deny_paths: [/lottery/admin]
require_headers: [X-App]
deny_user_agents: [sqlmap]
`, nil)
	app := map[string]string{"X-App": "qq"}
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "plain request passes", Req: filtertest.Req{URI: "/lottery", Headers: app, IP: "203.0.113.9"}},
		{Desc: "method not in the allow list", Req: filtertest.Req{Method: "DELETE", URI: "/lottery", Headers: app}, Want: "acl/method_not_allowed", WantStatus: 405},
		{Desc: "client in a denied network", Req: filtertest.Req{URI: "/lottery", Headers: app, IP: "10.1.2.3"}, Want: "acl/denied", WantStatus: 403},
		{Desc: "single denied address", Req: filtertest.Req{URI: "/lottery", Headers: app, IP: "192.0.2.7"}, Want: "acl/denied"},
		{Desc: "neighbour of the denied address passes", Req: filtertest.Req{URI: "/lottery", Headers: app, IP: "192.0.2.8"}},
		{Desc: "IPv4-mapped IPv6 form of a denied address", Req: filtertest.Req{URI: "/lottery", Headers: app, IP: "::ffff:10.0.0.1"}, Want: "acl/denied"},
		{Desc: "denied path prefix", Req: filtertest.Req{URI: "/lottery/admin/reset", Headers: app}, Want: "acl/denied"},
		{Desc: "denied path itself", Req: filtertest.Req{URI: "/lottery/admin", Headers: app}, Want: "acl/denied"},
		{Desc: "path that only shares a prefix string passes", Req: filtertest.Req{URI: "/lottery/administrator", Headers: app}},
		{Desc: "dot-segments are resolved before judging", Req: filtertest.Req{URI: "/lottery/x/../admin", Headers: app}, Want: "acl/denied"},
		{Desc: "missing required header", Req: filtertest.Req{URI: "/lottery"}, Want: "acl/denied"},
		{Desc: "denied user agent", Req: filtertest.Req{URI: "/lottery", Headers: map[string]string{"X-App": "qq", "User-Agent": "sqlmap/1.7"}}, Want: "acl/denied"},
	})
}

func TestAllowNetworks(t *testing.T) {
	f := filtertest.Build(t, "acl", `allow_networks: [127.0.0.0/8, "2001:db8::/32"]`, nil)
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "loopback allowed", Req: filtertest.Req{IP: "127.0.0.5"}},
		{Desc: "v6 network allowed", Req: filtertest.Req{IP: "2001:db8::1"}},
		{Desc: "anything else denied", Req: filtertest.Req{IP: "198.51.100.1"}, Want: "acl/denied"},
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		desc, yaml, want string
	}{
		{"lower-case method", `allow_methods: [get]`, `allow_methods.0: not an HTTP method`},
		{"bad network", `deny_networks: [10.0.0.0/33]`, `deny_networks.0: not an address or network`},
		{"relative path", `deny_paths: [admin]`, `deny_paths.0: must start with '/'`},
		{"encoded path", `deny_paths: [/adm%69n]`, `deny_paths.0: must be a plain, normalized path`},
		{"header with a slash", `require_headers: [X/App]`, `require_headers.0: not a header name`},
		{"empty agent", `deny_user_agents: [""]`, `deny_user_agents.0: must not be empty`},
		{"2xx status", `status: 200`, `status: want a 4xx or 5xx status, or 0 for 403 (got 200)`},
		{"unknown field", `deny_ips: [1.2.3.4]`, `unknown field "deny_ips"`},
		{"list given a scalar", `deny_paths: /admin`, `deny_paths: want a list`},
	} {
		err := filtertest.DecodeErr(t, "acl", tc.yaml)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.desc, err, tc.want)
		}
	}
}

// TestMethodOverride: method-override headers are stripped (every line) and a _method
// query parameter is refused, so allow_methods cannot be got round at an upstream that
// honours them.
func TestMethodOverride(t *testing.T) {
	f := filtertest.Build(t, "acl", "allow_methods: [GET]\nstrip_headers: [X-HTTP-Method-Override, X-HTTP-Method]\ndeny_query_params: [_method]", nil)
	stripped := func(t *testing.T, _ filters.Result, r *filters.Request) {
		for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method"} {
			if v := r.Ctx.Request.Header.Peek(h); v != nil {
				t.Errorf("%s survived: %q", h, v)
			}
		}
		if v := r.Ctx.Request.Header.Peek("X-Other"); string(v) != "1" {
			t.Errorf("another header was stripped: %q", v)
		}
	}
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "override headers stripped", Req: filtertest.Req{URI: "/grant", Headers: map[string]string{"X-HTTP-Method-Override": "DELETE", "x-http-method": "PUT", "X-Other": "1"}}, Check: stripped},
		{Desc: "_method refused", Req: filtertest.Req{URI: "/grant?_method=DELETE"}, Want: "acl/denied", WantStatus: 403},
		{Desc: "_method percent-encoded refused", Req: filtertest.Req{URI: "/grant?%5Fmethod=DELETE"}, Want: "acl/denied"},
		{Desc: "other parameters pass", Req: filtertest.Req{URI: "/grant?method=x"}},
	})
	if err := filtertest.DecodeErr(t, "acl", "strip_headers: ['a b']\ndeny_query_params: ['a=b']"); err == nil || !strings.Contains(err.Error(), "strip_headers.0") || !strings.Contains(err.Error(), "deny_query_params.0") {
		t.Errorf("bad names: %v", err)
	}
}
