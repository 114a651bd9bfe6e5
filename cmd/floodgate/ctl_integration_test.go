package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/floodgate/floodgate/gateway/consul"
	"github.com/floodgate/floodgate/internal/itest"
)

// The file the ctl tests validate against; {{QUERY}} is a backend address (the gateway
// test puts a real one there; validation does not connect).
const ctlGatewayConfig = `
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools:
  query: {addrs: ["{{QUERY}}"], max_conns: 64}
routes:
  lottery: {path: /lottery, pool: query, core: true, fallback: {status: 503, body: closed}}
  info:    {path: /info, pool: query, timeout: 300ms, fallback: {status: 200, body: degraded}}
  report:  {path: /report, pool: query, timeout: 100ms}
`

// ctlEnv is one Consul agent and a prefix of its own for each test.
type ctlEnv struct {
	consul *itest.Consul
	client *api.Client
	kv     *api.KV
	prefix string
	config string // the -config file
}

func newCtlEnv(t *testing.T, c *itest.Consul, cfgPath string) *ctlEnv {
	t.Helper()
	cl, err := consul.NewClient(consul.ClientOptions{Addr: c.Addr})
	if err != nil {
		t.Fatal(err)
	}
	e := &ctlEnv{consul: c, client: cl, kv: cl.KV(), config: cfgPath,
		prefix: "ctl-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "/"}
	if cfgPath == "" {
		e.config = filepath.Join(t.TempDir(), "gw.yaml")
		cfg := strings.NewReplacer("{{LISTEN}}", "127.0.0.1:18080", "{{ADMIN}}", "127.0.0.1:19901", "{{QUERY}}", "127.0.0.1:18081").Replace(ctlGatewayConfig)
		if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *ctlEnv) flags() []string {
	return []string{"-consul", e.consul.Addr, "-consul-prefix", e.prefix, "-config", e.config, "-who", "tester@itest"}
}

// ctl runs the binary: floodgate ctl <flags> args...; it returns stdout, stderr and the
// exit code.
func (e *ctlEnv) ctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(itest.Binary(t), append(append([]string{"ctl"}, e.flags()...), args...)...)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "FLOODGATE_CONFIG=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("floodgate ctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustCtl runs ctl and fails the test unless it exits 0.
func (e *ctlEnv) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code := e.ctl(t, args...)
	if code != 0 {
		t.Fatalf("floodgate ctl %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, stderr)
	}
	return out
}

// value returns a key's value (relative to the prefix) and whether it exists.
func (e *ctlEnv) value(t *testing.T, rel string) (string, bool) {
	t.Helper()
	p, _, err := e.kv.Get(e.prefix+rel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil {
		return "", false
	}
	return string(p.Value), true
}

// audits returns the audit records under the prefix, oldest first.
func (e *ctlEnv) audits(t *testing.T) []consul.AuditRecord {
	t.Helper()
	ps, _, err := e.kv.List(e.prefix+"audit/", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []consul.AuditRecord
	for _, p := range ps {
		var r consul.AuditRecord
		if err := json.Unmarshal(p.Value, &r); err != nil {
			t.Fatalf("audit record %s: %v", p.Key, err)
		}
		out = append(out, r)
	}
	return out
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: missing %q in:\n%s", what, w, got)
		}
	}
}

// TestCtl exercises every verb through the binary against a real Consul agent, without
// a gateway (TestCtlWithGateway covers what a gateway does with the writes).
func TestCtl(t *testing.T) {
	itest.RequireIntegration(t)
	c := itest.StartConsul(t)

	t.Run("set get unset", func(t *testing.T) {
		e := newCtlEnv(t, c, "")
		out := e.mustCtl(t, "set", "routes/info/timeout", "150ms")
		mustContain(t, "set", out,
			"routes/info/timeout: (not set) -> 150ms\n",
			"configuration changes (1):\n  routes.info.timeout: 300ms -> 150ms (consul:"+e.prefix+"routes/info/timeout)\n",
			"audit: "+e.prefix+"audit/")
		if got := e.mustCtl(t, "get", "routes/info/timeout"); got != "150ms\n" {
			t.Errorf("get = %q", got)
		}
		e.mustCtl(t, "set", "active_plan", "")
		out = e.mustCtl(t, "set", "routes/info/timeout", "200ms")
		mustContain(t, "second set", out, "routes/info/timeout: 150ms -> 200ms\n", "routes.info.timeout: 150ms -> 200ms")
		if out := e.mustCtl(t, "set", "routes/info/timeout", "200ms"); !strings.Contains(out, "routes/info/timeout is already 200ms; nothing written") {
			t.Errorf("same value: %s", out)
		}
		if got, want := e.mustCtl(t, "get"), "active_plan = \"\"\nroutes/info/timeout = 200ms\n"; got != want {
			t.Errorf("get (all) = %q, want %q (audit records hidden)", got, want)
		}
		if got, want := e.mustCtl(t, "-json", "get", "routes/info/timeout"), "{\n  \"key\": \"routes/info/timeout\",\n  \"value\": \"200ms\"\n}\n"; got != want {
			t.Errorf("get -json KEY = %q, want %q", got, want)
		}
		var all []struct{ Key, Value string }
		if err := json.Unmarshal([]byte(e.mustCtl(t, "-json", "get")), &all); err != nil || len(all) != 2 || all[1].Key != "routes/info/timeout" || all[1].Value != "200ms" {
			t.Errorf("get -json = %+v (%v), want the two keys", all, err)
		}
		if _, stderr, code := e.ctl(t, "-json", "set", "routes/info/timeout", "1s"); code != 2 || !strings.Contains(stderr, "-json applies to status, get and async") {
			t.Errorf("set -json: exit %d %q, want 2 and a clear error", code, stderr)
		}
		if got := e.mustCtl(t, "-audit", "get"); strings.Count(got, "audit/") != 3 {
			t.Errorf("get -audit lists %d audit records, want 3:\n%s", strings.Count(got, "audit/"), got)
		}
		out = e.mustCtl(t, "unset", "routes/info/timeout")
		mustContain(t, "unset", out, "routes/info/timeout: 200ms -> (deleted)\n", "routes.info.timeout: 200ms -> 300ms (")
		if _, ok := e.value(t, "routes/info/timeout"); ok {
			t.Error("key still there after unset")
		}
		_, stderr, code := e.ctl(t, "get", "routes/info/timeout")
		if code != 1 || !strings.Contains(stderr, "routes/info/timeout is not set under "+e.prefix) {
			t.Errorf("get of a deleted key: exit %d, %s", code, stderr)
		}
		_, stderr, code = e.ctl(t, "unset", "routes/info/timeout")
		if code != 1 || !strings.Contains(stderr, "nothing to unset") {
			t.Errorf("unset of a missing key: exit %d, %s", code, stderr)
		}
		_, stderr, code = e.ctl(t, "unset", "active_plan")
		if code != 1 || !strings.Contains(stderr, `refusing to delete active_plan: set it to "" instead`) {
			t.Errorf("unset active_plan: exit %d, %s", code, stderr)
		}
		// every write has its record: set, set, set, unset (not the no-op, not the refusals)
		recs := e.audits(t)
		var verbs []string
		for _, r := range recs {
			verbs = append(verbs, r.Verb+" "+strings.TrimPrefix(r.Key, e.prefix)+" "+r.Old+"->"+r.New)
			if r.Who != "tester@itest" || r.Time.IsZero() {
				t.Errorf("audit record %+v", r)
			}
		}
		want := "set routes/info/timeout ->150ms|set active_plan ->|set routes/info/timeout 150ms->200ms|unset routes/info/timeout 200ms->"
		if got := strings.Join(verbs, "|"); got != want {
			t.Errorf("audit records:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("bad values refused, nothing written", func(t *testing.T) {
		e := newCtlEnv(t, c, "")
		e.mustCtl(t, "set", "routes/lottery/enabled", "true")
		n := len(e.audits(t))
		for _, tc := range []struct{ key, value, want string }{
			{"routes/lottery/enabled", "yes-please", `routes.lottery.enabled: want a boolean`},
			{"routes/lottery/fallback/status", "999", `want an HTTP status 200-599, got 999`},
			{"routes/lottery/no_such_filter/rate", "10", `unknown filter "no_such_filter"`},
			{"rouets/lottery/enabled", "false", `unknown key "rouets/lottery/enabled"`},
			{"server/listen", "0.0.0.0:80", `unknown key "server/listen"`},
			{"active_plan", "nope", `names plan "nope", which does not exist`},
		} {
			_, stderr, code := e.ctl(t, "set", tc.key, tc.value)
			if code != 1 {
				t.Errorf("set %s %s: exit %d, want 1", tc.key, tc.value, code)
			}
			mustContain(t, "set "+tc.key, stderr, tc.key+" = "+strconv.Quote(tc.value)+" does not validate; nothing written", tc.want)
			if tc.key == "routes/lottery/enabled" {
				if v, _ := e.value(t, tc.key); v != "true" {
					t.Errorf("refused value written: %s = %q", tc.key, v)
				}
			} else if v, ok := e.value(t, tc.key); ok {
				t.Errorf("refused key written: %s = %q", tc.key, v)
			}
		}
		if got := len(e.audits(t)); got != n {
			t.Errorf("%d audit records after refusals, want %d", got, n)
		}
		// content that does not validate (written around ctl) cannot be confirmed
		c.Put(t, e.prefix+"routes/lottery/enabled", "maybe")
		_, stderr, code := e.ctl(t, "confirm")
		if code != 1 || !strings.Contains(stderr, "does not validate, so the gateways would reject it even if confirmed") ||
			!strings.Contains(stderr, "consul:"+e.prefix+"routes/lottery/enabled: routes.lottery.enabled: want a boolean") {
			t.Errorf("confirm of invalid content: exit %d, %s", code, stderr)
		}
		if _, ok := e.value(t, "confirm"); ok {
			t.Error("invalid content confirmed")
		}
		// ... but a write next to it that adds no problem is made (ctl must not lock
		// itself out), with a warning naming what is still wrong
		out, _, code := e.ctl(t, "set", "routes/info/enabled", "false")
		if code != 0 || !strings.Contains(out, "still does not validate") || !strings.Contains(out, "routes.lottery.enabled: want a boolean") {
			t.Errorf("set next to an invalid key: exit %d, %s", code, out)
		}
		e.mustCtl(t, "unset", "routes/info/enabled")
		// keys ctl writes only through their own verbs
		for _, tc := range []struct{ args, want string }{
			{"set confirm abc", "floodgate ctl confirm"},
			{"set plans/x a: b", "floodgate ctl plan put x FILE"},
			{"unset audit/1-x", "audit record"},
		} {
			_, stderr, code := e.ctl(t, strings.SplitN(tc.args, " ", 3)...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("%s: exit %d, %s", tc.args, code, stderr)
			}
		}
	})

	t.Run("usage", func(t *testing.T) {
		e := newCtlEnv(t, c, "")
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{nil, 2, "a verb is required"},
			{[]string{"frobnicate"}, 2, `unknown verb "frobnicate"`},
			{[]string{"set", "routes/info/enabled"}, 2, "set: want 2 argument(s) (set KEY VALUE), got 1"},
			{[]string{"plan"}, 2, "plan: a sub-verb is required"},
			{[]string{"plan", "remove", "x"}, 2, `unknown verb "plan remove"`},
			{[]string{"-nope", "get"}, 2, "flag provided but not defined: -nope"},
			{[]string{"-h"}, 0, "plan activate NAME"},
			{[]string{"set", "-h"}, 0, "check-and-set"},
			{[]string{"plan", "-h"}, 0, "plan deactivate      set active_plan"},
			{[]string{"plan", "put", "-h"}, 0, "as if it"},
		} {
			_, stderr, code := e.ctl(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("ctl %v: exit %d (want %d), stderr:\n%s\nwant %q", tc.args, code, tc.code, stderr, tc.want)
			}
		}
		// -config is required to write
		cmd := exec.Command(itest.Binary(t), "ctl", "-consul", c.Addr, "set", "routes/info/enabled", "false")
		cmd.Env = append(os.Environ(), "FLOODGATE_CONFIG=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-config FILE (or $FLOODGATE_CONFIG) is required") {
			t.Errorf("set without -config: %v\n%s", err, out)
		}
		// a negative number is a value, not a flag
		_, stderr, code := e.ctl(t, "set", "routes/info/fallback/status", "-1")
		if code != 1 || !strings.Contains(stderr, `routes/info/fallback/status = "-1" does not validate`) {
			t.Errorf("set to -1: exit %d, %s", code, stderr)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		e := newCtlEnv(t, c, "")
		out := e.mustCtl(t, "-dry-run", "set", "routes/report/enabled", "false")
		mustContain(t, "dry run", out, "routes/report/enabled: (not set) -> false", "routes.report.enabled: (not set) -> false", "dry run: valid; nothing written")
		if _, ok := e.value(t, "routes/report/enabled"); ok || len(e.audits(t)) != 0 {
			t.Error("dry run wrote")
		}
	})

	t.Run("check-and-set conflict", func(t *testing.T) {
		e := newCtlEnv(t, c, "")
		run := func(behind func(), args ...string) error {
			ctlBeforeWrite = behind
			defer func() { ctlBeforeWrite = nil }()
			cc := &ctlCmd{out: io.Discard}
			return cc.run(append(e.flags(), args...))
		}
		// a new key, created by someone else between ctl's read and its write
		err := run(func() { c.Put(t, e.prefix+"routes/lottery/enabled", "false") }, "set", "routes/lottery/enabled", "true")
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 || ee.msg != "routes/lottery/enabled changed by someone else since you read it: was (not set), now false; nothing written, retry" {
			t.Fatalf("conflict on a new key: %#v", err)
		}
		// an existing key changed behind ctl's back
		err = run(func() { c.Put(t, e.prefix+"routes/lottery/enabled", "true") }, "set", "routes/lottery/enabled", "true")
		if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(ee.msg, "was false, now true; nothing written, retry") {
			t.Fatalf("conflict on an existing key: %v", err)
		}
		// deleted behind ctl's back
		err = run(func() { c.Delete(t, e.prefix+"routes/lottery/enabled", false) }, "unset", "routes/lottery/enabled")
		if !errors.As(err, &ee) || !strings.Contains(ee.msg, "was true, now (not set)") {
			t.Fatalf("conflict on unset: %v", err)
		}
		if v, ok := e.value(t, "routes/lottery/enabled"); ok {
			t.Errorf("routes/lottery/enabled = %q, want the other writer's delete", v)
		}
		// the plan being activated changed after it was validated: not activated
		c.Put(t, e.prefix+"active_plan", "")
		c.Put(t, e.prefix+"plans/p", "routes/info/enabled: false\n")
		err = run(func() { c.Put(t, e.prefix+"plans/p", "routes/report/enabled: false\n") }, "plan", "activate", "p")
		if !errors.As(err, &ee) || !strings.Contains(ee.msg, "plans/p changed by someone else since you read it") {
			t.Fatalf("conflict on activate: %v", err)
		}
		if v, _ := e.value(t, "active_plan"); v != "" {
			t.Errorf("active_plan = %q after a failed activation", v)
		}
		if n := len(e.audits(t)); n != 0 {
			t.Errorf("%d audit records after failed writes, want 0 (the record is in the same transaction)", n)
		}
		// and without interference, the same write goes through
		if err := run(nil, "plan", "activate", "p"); err != nil {
			t.Fatal(err)
		}
		if n := len(e.audits(t)); n != 1 {
			t.Errorf("%d audit records, want 1", n)
		}
	})

	t.Run("plans", func(t *testing.T) {
		e := newCtlEnv(t, c, "")
		e.mustCtl(t, "set", "active_plan", "")
		e.mustCtl(t, "set", "routes/info/enabled", "true")
		dir := t.TempDir()
		good := filepath.Join(dir, "midnight.yaml")
		os.WriteFile(good, []byte("routes/info/enabled: false\nroutes:\n  report: {enabled: false}\n  lottery: {timeout: 1s}\n"), 0o644)
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte("routes/info/timeout: fast\nroutes/lottery/fallback/status: 999\n"), 0o644)

		out := e.mustCtl(t, "plan", "put", "midnight", good)
		mustContain(t, "plan put", out, "plans/midnight: (not set) -> plan of 3 entries", "configuration changes: none",
			"if activated (floodgate ctl plan activate midnight), against Consul's content (3):",
			"routes.info.enabled: true -> false (plan:midnight)")

		_, stderr, code := e.ctl(t, "plan", "put", "bad", bad)
		if code != 1 {
			t.Errorf("invalid plan put: exit %d", code)
		}
		mustContain(t, "invalid plan", stderr, `plan "bad" does not validate as if it were active`, "cannot be activated",
			`plan:bad: routes.info.timeout: not a duration`, "routes.lottery.fallback.status: want an HTTP status 200-599, got 999")
		if _, ok := e.value(t, "plans/bad"); ok {
			t.Error("an invalid plan was stored")
		}
		os.WriteFile(bad, []byte("routes/info/enabled: [false]\n"), 0o644)
		if _, stderr, code := e.ctl(t, "plan", "put", "bad", bad); code != 1 || !strings.Contains(stderr, "want a single value, not a list") {
			t.Errorf("plan with a list: exit %d, %s", code, stderr)
		}

		want := `activating plan "midnight" (Consul's content: file + overrides + no active plan) (3):
  routes.info.enabled: true -> false (plan:midnight)
  routes.lottery.timeout: (not set) -> 1s (plan:midnight)
  routes.report.enabled: (not set) -> false (plan:midnight)
note: no gateway is registered under service "floodgate"; the changes are against Consul's content, not against what the gateways serve
`
		if got := e.mustCtl(t, "plan", "diff", "midnight"); got != want {
			t.Errorf("plan diff:\n%s\nwant:\n%s", got, want)
		}
		if _, stderr, code := e.ctl(t, "plan", "diff", "nope"); code != 1 || !strings.Contains(stderr, `plan "nope" does not exist`) {
			t.Errorf("diff of a missing plan: exit %d, %s", code, stderr)
		}
		out = e.mustCtl(t, "plan", "activate", "midnight")
		mustContain(t, "activate", out, "active_plan: \"\" -> midnight", "configuration changes (3):")
		if got := e.mustCtl(t, "plan", "list"); !strings.Contains(got, "* midnight  3") || !strings.Contains(got, "(active)") {
			t.Errorf("plan list:\n%s", got)
		}
		// a per-key override under an active plan: written, changes nothing, says why
		out = e.mustCtl(t, "set", "routes/info/enabled", "false")
		mustContain(t, "set under a plan", out, "routes/info/enabled: true -> false", "configuration changes: none", `the active plan "midnight" sets routes/info/enabled too`)
		if _, stderr, code := e.ctl(t, "unset", "plans/midnight"); code != 1 || !strings.Contains(stderr, `names plan "midnight", which does not exist`) {
			t.Errorf("deleting the active plan: exit %d, %s", code, stderr)
		}
		out = e.mustCtl(t, "plan", "deactivate")
		mustContain(t, "deactivate", out, `active_plan: midnight -> ""`, "routes.report.enabled: false -> (not set)")
		if got := e.mustCtl(t, "plan", "deactivate"); !strings.Contains(got, "no plan is active; nothing written") {
			t.Errorf("second deactivate: %s", got)
		}
	})
}

// TestCtlWithGateway: what a running gateway does with ctl's writes - a plan activated
// and deactivated, a held empty read confirmed - and what status reports about it.
func TestCtlWithGateway(t *testing.T) {
	itest.RequireIntegration(t)
	c := itest.StartConsul(t)
	query, _ := itest.Backend(t, "query")
	prefix := "ctl-gw/"
	g := itest.StartGateway(t, strings.ReplaceAll(ctlGatewayConfig, "{{QUERY}}", query),
		"-consul", c.Addr, "-consul-prefix", prefix, "-snapshot", filepath.Join(t.TempDir(), "lkg.json"), "-instance-id", "gw-ctl")
	e := newCtlEnv(t, c, g.ConfigPath)
	e.prefix = prefix

	e.mustCtl(t, "set", "active_plan", "")
	e.mustCtl(t, "set", "routes/lottery/fallback/status", "429")
	e.mustCtl(t, "set", "routes/report/timeout", "50ms")
	waitUntil(t, "the overrides applied", func() bool {
		return gwSource(t, g, "routes.lottery.fallback.status") == "429 from consul:"+prefix+"routes/lottery/fallback/status"
	})

	plan := filepath.Join(t.TempDir(), "closed.yaml")
	os.WriteFile(plan, []byte("routes/lottery/enabled: false\n"), 0o644)
	e.mustCtl(t, "plan", "put", "closed", plan)
	if v := gwVerdict(t, g, "/lottery"); v != "" {
		t.Fatalf("a stored plan is in force before activation: verdict %q", v)
	}
	e.mustCtl(t, "plan", "activate", "closed")
	waitUntil(t, "the plan in force", func() bool { return gwVerdict(t, g, "/lottery") == "route/disabled" })
	if got := gwSource(t, g, "routes.lottery.enabled"); got != "false from plan:closed" {
		t.Errorf("/config: routes.lottery.enabled = %q", got)
	}

	// status: the gateway, its generation, in sync with the content
	var st consul.FleetStatus
	waitUntil(t, "status in sync", func() bool {
		out, stderr, code := e.ctl(t, "-json", "status")
		st = consul.FleetStatus{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -json: %v\n%s%s", err, out, stderr)
		}
		if (code == 0) != st.InSync || (code != 0 && code != 3) {
			t.Fatalf("status -json: exit %d with in_sync %v; want 0 in sync, 3 not", code, st.InSync)
		}
		gen := strconv.FormatUint(gwGeneration(t, g), 10)
		// the catalog meta is published just after each update: wait for it too
		return st.InSync && len(st.Instances) == 1 && st.Instances[0].Generation == gen && st.Instances[0].Meta["generation"] == gen &&
			st.Instances[0].Meta["fingerprint"] == st.Content.Fingerprint
	})
	in := st.Instances[0]
	if in.ID != "gw-ctl" || in.Addr != g.Addr || in.Health != "passing" || in.ActivePlan != "closed" || in.Fingerprint != st.Content.Fingerprint ||
		in.Meta["plan"] != "closed" || in.Meta["fingerprint"] != st.Content.Fingerprint || in.AdminURL != "http://"+g.Admin {
		t.Errorf("status: %+v, content %+v", in, st.Content)
	}
	table := e.mustCtl(t, "status")
	mustContain(t, "status table", table, "ID      ADDR", "gw-ctl  "+g.Addr+"  passing  "+in.Generation+" ", " closed ",
		"in sync: all 1 gateway(s) serve the current content")

	e.mustCtl(t, "plan", "deactivate")
	waitUntil(t, "the plan reverted", func() bool { return gwVerdict(t, g, "/lottery") == "" })

	// the prefix deleted while the gateway holds keys: held; confirm applies it
	e.consul.Delete(t, prefix, true)
	waitUntil(t, "the empty read held", func() bool { return gwLastEvent(t, g) == "held" })
	// confirm finds the gateway's admin API through its health check's output, which
	// the check fills when it has run once since the last (re-)registration
	waitUntil(t, "the gateway's admin address in its health check", func() bool {
		admins, err := consul.AdminURLs(e.client, "")
		return err == nil && admins["gw-ctl"] == "http://"+g.Admin
	})
	if got := gwSource(t, g, "routes.lottery.fallback.status"); !strings.HasPrefix(got, "429 ") {
		t.Fatalf("an empty read was applied: fallback.status = %q", got)
	}
	held, _, code := e.ctl(t, "status")
	mustContain(t, "status while held", held, "NOT in sync:", "gw-ctl holds an update: the read is empty")
	if code != 3 {
		t.Errorf("status while held: exit %d, want 3 (not in sync)", code)
	}
	out := e.mustCtl(t, "confirm")
	mustContain(t, "confirm", out, "current content of "+prefix+": 0 keys, no active plan, fingerprint ",
		"changes the gateways will apply, against what gw-ctl (generation ", "warning: gw-ctl (generation ", "holds an update and serves an older configuration than Consul's content: the read is empty",
		"routes.lottery.fallback.status: 429 -> 503 (file)", "routes.report.timeout: 50ms -> 100ms (file)",
		"confirm: (not set) -> ", "audit: "+prefix+"audit/")
	waitUntil(t, "the confirmed update applied", func() bool { return strings.HasPrefix(gwSource(t, g, "routes.lottery.fallback.status"), "503 ") })
	if out := e.mustCtl(t, "confirm"); !strings.Contains(out, "is already confirmed; nothing written") {
		t.Errorf("second confirm: %s", out)
	}
	waitUntil(t, "status in sync after confirm", func() bool {
		out, _, code := e.ctl(t, "status")
		return code == 0 && strings.Contains(out, "in sync:")
	})

	// the audit trail: one record per write, in the same transaction (the deleted
	// prefix took the earlier ones with it)
	recs := e.audits(t)
	if len(recs) != 1 || recs[0].Verb != "confirm" || recs[0].Key != prefix+"confirm" {
		t.Errorf("audit records after the confirm: %+v", recs)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var ctlHTTP = &http.Client{Timeout: 5 * time.Second}

func gwGet(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := ctlHTTP.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func gwVerdict(t *testing.T, g *itest.Gateway, path string) string {
	resp, _ := gwGet(t, g.URL(path))
	return resp.Header.Get("X-Floodgate-Verdict")
}

func gwSource(t *testing.T, g *itest.Gateway, path string) string {
	_, b := gwGet(t, g.AdminURL("/config"))
	var cfg struct {
		Sources []struct{ Path, Value, Source string } `json:"sources"`
	}
	json.Unmarshal(b, &cfg)
	for _, s := range cfg.Sources {
		if s.Path == path {
			return s.Value + " from " + s.Source
		}
	}
	return ""
}

func gwGeneration(t *testing.T, g *itest.Gateway) uint64 {
	_, b := gwGet(t, g.AdminURL("/readyz"))
	var r struct {
		Generation uint64 `json:"generation"`
	}
	json.Unmarshal(b, &r)
	return r.Generation
}

func gwLastEvent(t *testing.T, g *itest.Gateway) string {
	_, b := gwGet(t, g.AdminURL("/events"))
	var evs []struct {
		Result string `json:"result"`
	}
	json.Unmarshal(b, &evs)
	if len(evs) == 0 {
		return ""
	}
	return evs[len(evs)-1].Result
}

// TestCtlCannotLockItselfOut: one bad key written outside ctl (a folder key with a value,
// a value that does not validate) does not refuse the repair: unsetting the bad key and
// flipping a kill switch are written, with a warning naming what is still wrong; a write
// that adds a problem of its own is still refused.
func TestCtlCannotLockItselfOut(t *testing.T) {
	itest.RequireIntegration(t)
	e := newCtlEnv(t, itest.StartConsul(t), "")
	e.mustCtl(t, "set", "active_plan", "")
	// written behind ctl's back
	for k, v := range map[string]string{"routes/lottery/enabled/": "false", "routes/info/timeout": "soon"} {
		if _, err := e.kv.Put(&api.KVPair{Key: e.prefix + k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	out := e.mustCtl(t, "set", "routes/report/enabled", "false")
	mustContain(t, "kill switch beside bad keys", out, "still does not validate", "routes/lottery/enabled/", "routes.info.timeout")
	if v, _ := e.value(t, "routes/report/enabled"); v != "false" {
		t.Errorf("kill switch not written: %q", v)
	}
	// a write that adds a problem of its own is refused
	if _, stderr, code := e.ctl(t, "set", "routes/report/timeout", "never"); code != 1 || !strings.Contains(stderr, "does not validate") {
		t.Errorf("a new bad value: exit %d\n%s", code, stderr)
	}
	// the repairs
	out = e.mustCtl(t, "unset", "routes/lottery/enabled/")
	mustContain(t, "unset the folder key", out, "still does not validate", "routes.info.timeout")
	if _, ok := e.value(t, "routes/lottery/enabled/"); ok {
		t.Error("the bad folder key is still there")
	}
	out = e.mustCtl(t, "set", "routes/info/timeout", "250ms")
	if strings.Contains(out, "still does not validate") {
		t.Errorf("the last repair still warns:\n%s", out)
	}
}

// TestCtlDiffAgainstGateways: ctl shows a write's changes (and a plan's) against what the
// gateways serve - read from their admin APIs - not against Consul's content alone, one
// list per distinct served configuration, and warns when a gateway holds an update or
// composes with another file; ctl status follows a file reload (SIGHUP), in the catalog
// meta as well as from the admin API. Two real gateways, a real Consul agent.
func TestCtlDiffAgainstGateways(t *testing.T) {
	itest.RequireIntegration(t)
	c := itest.StartConsul(t)
	query, _ := itest.Backend(t, "query")
	prefix := "ctl-fleet/"
	cfg := strings.ReplaceAll(ctlGatewayConfig, "{{QUERY}}", query)
	start := func(id string) *itest.Gateway {
		return itest.StartGateway(t, cfg, "-consul", c.Addr, "-consul-prefix", prefix,
			"-snapshot", filepath.Join(t.TempDir(), "lkg.json"), "-instance-id", id)
	}
	ga, gb := start("gw-a"), start("gw-b")
	e := newCtlEnv(t, c, gb.ConfigPath) // ctl validates against gw-b's file
	e.prefix = prefix
	status := func() (consul.FleetStatus, map[string]consul.Member) {
		out, stderr, code := e.ctl(t, "-json", "status")
		var st consul.FleetStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil || (code != 0 && code != 3) {
			t.Fatalf("status -json: exit %d, %v\n%s%s", code, err, out, stderr)
		}
		byID := map[string]consul.Member{}
		for _, m := range st.Instances {
			byID[m.ID] = m
		}
		return st, byID
	}
	genOf := func(g *itest.Gateway) string { return strconv.FormatUint(gwGeneration(t, g), 10) }

	e.mustCtl(t, "set", "active_plan", "")
	e.mustCtl(t, "set", "routes/lottery/fallback/status", "429")
	e.mustCtl(t, "set", "routes/report/timeout", "50ms")
	e.mustCtl(t, "set", "routes/info/fallback/status", "429")
	plan := filepath.Join(t.TempDir(), "closed.yaml")
	os.WriteFile(plan, []byte("routes/lottery/enabled: false\n"), 0o644)
	e.mustCtl(t, "plan", "put", "closed", plan)
	waitUntil(t, "both gateways serve the overrides", func() bool {
		st, by := status()
		return st.InSync && len(by) == 2 && gwSource(t, ga, "routes.report.timeout") == "50ms from consul:"+prefix+"routes/report/timeout"
	})

	// a file reload on gw-a (routes.info.timeout 300ms -> 250ms): its new generation
	// shows in status, from its admin API and in its catalog meta
	before := genOf(ga)
	ga.WriteConfig(t, strings.Replace(cfg, "timeout: 300ms", "timeout: 250ms", 1))
	if err := ga.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "gw-a reloaded its file", func() bool { return strings.HasPrefix(gwSource(t, ga, "routes.info.timeout"), "250ms ") })
	after := genOf(ga)
	if after == before {
		t.Fatalf("generation %s unchanged by the reload", after)
	}
	waitUntil(t, "status and the catalog meta showing gw-a's reloaded generation "+after, func() bool {
		st, by := status()
		a := by["gw-a"]
		return st.InSync && a.Generation == after && a.Meta[consul.MetaGeneration] == after
	})

	// gw-a now composes with another file than -config: two served configurations, each
	// with the one change the write makes; the file difference is said, not counted
	out := e.mustCtl(t, "-dry-run", "set", "routes/lottery/fallback/status", "418")
	mustContain(t, "dry-run set against two configurations", out,
		"configuration changes for gw-a (generation "+after+") (1):\n  routes.lottery.fallback.status: 429 -> 418 (consul:"+prefix+"routes/lottery/fallback/status)\n",
		"configuration changes for gw-b (generation "+genOf(gb)+") (1):\n  routes.lottery.fallback.status: 429 -> 418 (consul:"+prefix+"routes/lottery/fallback/status)\n",
		"warning: the gateways serve 2 different configurations",
		"warning: gw-a: its file differs from -config at 1 value(s) (e.g. routes.info.timeout: 250ms there, 300ms in -config)",
		"dry run: valid; nothing written")
	if strings.Contains(out, "holds an update") {
		t.Errorf("a hold reported while none is held:\n%s", out)
	}
	ga.WriteConfig(t, cfg) // the same file again
	ga.Proc.Signal(syscall.SIGHUP)
	waitUntil(t, "gw-a reloaded the shared file", func() bool { return strings.HasPrefix(gwSource(t, ga, "routes.info.timeout"), "300ms ") })

	// most keys removed at once: both gateways hold and keep serving 429 and 50ms. A
	// write's diff against Consul's content would show one change; against what they
	// serve it shows what they will really change, with a warning for each hold
	e.consul.Delete(t, prefix+"routes/", true)
	waitUntil(t, "both gateways hold the update", func() bool {
		_, by := status()
		return by["gw-a"].Held != "" && by["gw-b"].Held != ""
	})
	out = e.mustCtl(t, "-dry-run", "set", "routes/info/enabled", "false")
	mustContain(t, "dry-run set while held", out,
		"configuration changes, against what gw-a (generation ",
		"routes.info.enabled: (not set) -> false (consul:"+prefix+"routes/info/enabled)",
		"routes.lottery.fallback.status: 429 -> 503 (file)",
		"routes.report.timeout: 50ms -> 100ms (file)",
		"routes.info.fallback.status: 429 -> 200 (file)",
		"warning: gw-a (generation ", "warning: gw-b (generation ",
		"holds an update and serves an older configuration than Consul's content: the read would remove 3 of the 5 keys in force")
	out = e.mustCtl(t, "plan", "diff", "closed")
	mustContain(t, "plan diff while held", out,
		`activating plan "closed" (Consul's content: file + overrides + no active plan), against what gw-a (generation `,
		"routes.lottery.enabled: (not set) -> false (plan:closed)",
		"routes.lottery.fallback.status: 429 -> 503 (file)",
		"holds an update")
	if strings.Contains(out, "against Consul's content, not against what the gateways serve") {
		t.Errorf("plan diff fell back to Consul's content with two readable gateways:\n%s", out)
	}
}
