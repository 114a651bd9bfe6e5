package consul

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
)

const ctlTestConfig = `
server: {listen: "127.0.0.1:8080"}
admin: {listen: "127.0.0.1:9901"}
pools:
  query: {addrs: ["127.0.0.1:8081"]}
routes:
  lottery: {path: /lottery, pool: query, core: true, timeout: 2s}
  info:    {path: /info, pool: query, timeout: 300ms}
`

func ctlForTest(t *testing.T) *Ctl {
	t.Helper()
	doc, err := config.Parse("gw.yaml", []byte(ctlTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	return &Ctl{Prefix: "fg", Doc: doc}
}

func TestCtlEvaluate(t *testing.T) {
	c := ctlForTest(t)
	base := kvs("fg/active_plan", "", "fg/routes/info/enabled", "false",
		"fg/plans/midnight", "routes/lottery/enabled: false\nroutes/info/timeout: 100ms\n",
		"fg/audit/1-alice", "{}")

	ev, err := c.Evaluate(base, "")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Snapshot.Keys != 3 || ev.Config.Routes["info"].Enabled {
		t.Fatalf("keys %d, info enabled %v", ev.Snapshot.Keys, ev.Config.Routes["info"].Enabled)
	}
	// the plan composed as if active, without being active
	as, err := c.Evaluate(base, "midnight")
	if err != nil {
		t.Fatal(err)
	}
	chs := config.Diff(ev.Config.Sources, as.Config.Sources)
	var lines []string
	for _, ch := range chs {
		lines = append(lines, fmt.Sprintf("%s: %q -> %q (%s)", ch.Path, ch.Old, ch.New, ch.Source))
	}
	want := []string{
		`routes.info.timeout: "300ms" -> "100ms" (plan:midnight)`,
		`routes.lottery.enabled: "" -> "false" (plan:midnight)`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if _, err := c.Evaluate(base, "nope"); err == nil || !strings.Contains(err.Error(), `plan "nope" does not exist under fg/plans/`) {
		t.Errorf("missing plan: %v", err)
	}

	// a bad value is reported with the key that set it
	_, err = c.Evaluate(with(base, "fg/routes/lottery/timeout", []byte("soon"), false), "")
	if err == nil || !strings.Contains(err.Error(), "consul:fg/routes/lottery/timeout: routes.lottery.timeout") {
		t.Errorf("bad value: %v", err)
	}
	// deleting the active plan's key is refused by Convert
	_, err = c.Evaluate(with(with(base, "fg/active_plan", []byte("midnight"), false), "fg/plans/midnight", nil, true), "")
	if err == nil || !strings.Contains(err.Error(), `names plan "midnight", which does not exist`) {
		t.Errorf("active plan deleted: %v", err)
	}
	// no file, no validation
	if _, err := (&Ctl{}).Evaluate(base, ""); err == nil {
		t.Error("Evaluate without a Doc succeeded")
	}
}

func TestCtlRefusals(t *testing.T) {
	for _, tc := range []struct{ key, verb, want string }{
		{"", "set", "empty key"},
		{"confirm", "set", "floodgate ctl confirm"},
		{"audit/1-bob", "unset", "audit record"},
		{"plans/midnight", "set", "floodgate ctl plan put midnight FILE"},
	} {
		err := checkWritable(tc.key, tc.verb)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: %v, want a refusal with %q", tc.verb, tc.key, err, tc.want)
		}
	}
	// checkWritable lets these keys be unset; Unset itself refuses active_plan (below)
	for _, ok := range []string{"routes/lottery/enabled", "active_plan", "confirm"} {
		if err := checkWritable(ok, "unset"); err != nil {
			t.Errorf("unset %s: %v", ok, err)
		}
	}
	c := ctlForTest(t)
	if _, err := c.Unset("active_plan"); err == nil || !strings.Contains(err.Error(), `set it to "" instead`) {
		t.Errorf("unset active_plan: %v", err)
	}
	for _, bad := range []string{"", "a/b", "mid night", "ünï"} {
		if CheckPlanName(bad) == nil {
			t.Errorf("plan name %q accepted", bad)
		}
	}
	if err := CheckPlanName("midnight-2.v1_x"); err != nil {
		t.Error(err)
	}
}

func TestCtlHelpers(t *testing.T) {
	c := ctlForTest(t)
	if got := c.RelKey("/fg/routes/lottery/enabled"); got != "routes/lottery/enabled" {
		t.Errorf("RelKey = %q", got)
	}
	if got := auditWho("alice smith/ops@host-1"); got != "alice_smith_ops@host-1" {
		t.Errorf("auditWho = %q", got)
	}
	if got := auditWho(""); got != "unknown" {
		t.Errorf("auditWho(\"\") = %q", got)
	}
	st := &State{Prefix: "fg/", KVs: kvs("fg/active_plan", "b", "fg/plans/a", "routes/x/enabled: false", "fg/plans/b", "routes:\n  x: {enabled: false, timeout: 1s}\n", "fg/plans/c", "[")}
	ps := st.Plans()
	if len(ps) != 3 || ps[0].Entries != 1 || ps[1].Entries != 2 || !ps[1].Active || ps[0].Active || ps[2].Error == "" {
		t.Errorf("plans %+v", ps)
	}
	ce := &ConflictError{Key: "routes/lottery/enabled", Was: "true", WasSet: true, Now: "false", NowSet: true}
	if got := ce.Error(); got != "routes/lottery/enabled changed by someone else since you read it: was true, now false; nothing written, retry" {
		t.Errorf("conflict message %q", got)
	}
	ce = &ConflictError{Key: "k", Now: "", NowSet: true}
	if got := ce.Error(); !strings.Contains(got, `was (not set), now ""`) {
		t.Errorf("conflict message %q", got)
	}
}
