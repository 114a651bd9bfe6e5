package acl_test

import (
	"testing"

	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestConformance(t *testing.T) {
	filtertest.RunConformance(t, filtertest.Conformance{
		Name:    "acl",
		Minimal: `status: 403`,
		Valid: `
allow_methods: [GET, POST]
allow_networks: [0.0.0.0/0]
deny_networks: [10.0.0.0/8]
deny_paths: [/admin]
require_headers: [X-App]
deny_user_agents: [sqlmap]
status: 403
`,
		Decisions: []filtertest.Req{
			{URI: "/lottery", Headers: map[string]string{"X-App": "1"}, IP: "8.8.8.8"},
			{URI: "/lottery", IP: "10.1.2.3"},
			{URI: "/admin/x", Headers: map[string]string{"X-App": "1"}},
			{Method: "DELETE", URI: "/lottery"},
		},
		// KeepsState: nil - the acl keeps no state.
	})
}
