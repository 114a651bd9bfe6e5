package gateway

import (
	"testing"
)

// TestFallbackPerVerdict: fallback.verdicts answers chosen verdicts with their own status
// and body - an exact reason before its filter's "*" - and every other verdict with the
// route's fallback; a verdict entry without a status keeps the verdict's own.
func TestFallbackPerVerdict(t *testing.T) {
	r := newRig(t, `
server: {listen: 127.0.0.1:0}
pools:
  q:    {addrs: [q1:1], max_conns: 8}
  dead: {addrs: [dead:1], max_conns: 8, eject: {failures: 0}}
routes:
  members:
    path: /members
    pool: q
    filters: {acl: {allow_methods: [GET]}}
    fallback:
      status: 503
      body: general
      verdicts:
        acl: {method_not_allowed: {body: only GET}, "*": {status: 403, body: any acl}}
        upstream: {"*": {body: service unavailable}}
  members_down:
    path: /down
    pool: dead
    fallback:
      status: 503
      body: general
      verdicts:
        upstream: {unavailable: {status: 502, body: the service is unavailable}, "*": {body: other upstream}}
  off:
    path: /off
    pool: q
    enabled: false
    fallback: {status: 503, body: general, verdicts: {upstream: {"*": {body: service unavailable}}}}
`)
	r.upstream("q1:1", echoUpstream)
	for _, tc := range []struct {
		desc, method, uri, verdict string
		status                     int
		body                       string
	}{
		{desc: "proxied: the upstream's answer", method: "GET", uri: "/members", status: 200, body: "ok"},
		{desc: "exact reason, no status: the verdict's own (405)", method: "POST", uri: "/members", verdict: "acl/method_not_allowed", status: 405, body: "only GET"},
		{desc: "exact reason with a status", method: "GET", uri: "/down", verdict: "upstream/unavailable", status: 502, body: "the service is unavailable"},
		{desc: "a verdict not listed: the route's fallback", method: "GET", uri: "/off", verdict: "route/disabled", status: 503, body: "general"},
	} {
		resp := r.do(tc.method, tc.uri, nil)
		if resp.StatusCode() != tc.status || string(resp.Body()) != tc.body || string(resp.Header.Peek(VerdictHeader)) != tc.verdict {
			t.Errorf("%s: %d %q verdict %q, want %d %q verdict %q", tc.desc, resp.StatusCode(), resp.Body(), resp.Header.Peek(VerdictHeader), tc.status, tc.body, tc.verdict)
		}
	}
	// "*" of a filter, and a status given for it, through forReason (the acl's denied
	// verdict needs a denied network, upstream/timeout a slow server)
	st := r.gw.state.Load()
	for _, tc := range []struct {
		route, filter, reason string
		status                int
		wantStatus            int
		wantBody              string
	}{
		{"members", "acl", "denied", 0, 403, "any acl"},
		{"members", "upstream", "timeout", 0, 0, "service unavailable"},
		{"members_down", "upstream", "timeout", 0, 0, "other upstream"},
		{"members_down", "token_bucket", "limited", 429, 429, "general"},
	} {
		rt := st.byName(tc.route)
		reason := gatewayReason(tc.route, tc.filter, tc.reason, tc.status)
		status, body := rt.fallback.forReason(reason)
		if status != tc.wantStatus || string(body) != tc.wantBody {
			t.Errorf("%s %s/%s: %d %q, want %d %q", tc.route, tc.filter, tc.reason, status, body, tc.wantStatus, tc.wantBody)
		}
	}
}
