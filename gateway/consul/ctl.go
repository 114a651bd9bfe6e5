package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/floodgate/floodgate/gateway/config"
)

// Ctl is the library behind `floodgate ctl`: it reads the keys under a prefix and makes
// validated, check-and-set writes, each one with an audit record in the same Consul
// transaction.
//
// Every write is validated as a gateway would validate the read that follows it: the
// would-be content of the prefix is converted (Convert) and composed with the gateways'
// configuration file (config.Load). A write that fails is refused with every problem and
// nothing is written.
//
// A write is conditional on the key's ModifyIndex as read (0 for a key that did not
// exist): if someone else changed it in between, the transaction fails as a whole and
// the caller gets a *ConflictError saying what it was and what it is now. Activating a
// plan is also conditional on the plan's key being unchanged, so the plan that was
// validated is the plan that goes live.
type Ctl struct {
	Client *api.Client
	// Prefix is the key prefix (default "floodgate/"); a trailing slash is added.
	Prefix string
	// Doc is the gateways' configuration file. Writes, plan diffs and confirm need it.
	Doc *config.Document
	// Who names the operator in audit records.
	Who string
	// DryRun validates and reports a write without writing anything.
	DryRun bool
	// Timeout bounds each call to Consul (default 10s).
	Timeout time.Duration
	// Now is the clock of audit records (default time.Now).
	Now func() time.Time
	// BeforeWrite, if set, runs after the prefix was read and the write validated, just
	// before the transaction (tests change a key behind ctl's back here).
	BeforeWrite func()
	// ReadFleet, if set, reads what the gateways serve (DiscoverFleet) just before a
	// write (or instead of it, with DryRun), so that its changes can be shown against
	// what they serve rather than against Consul's content alone (Result.Fleet).
	ReadFleet func() ([]Member, error)
}

// State is one read of the prefix.
type State struct {
	Prefix string
	// KVs is every key under the prefix (full keys), sorted by key.
	KVs []KV
	// Index is the Consul index of the read.
	Index uint64
}

// Lookup returns the key rel (relative to the prefix).
func (s *State) Lookup(rel string) (KV, bool) {
	for _, kv := range s.KVs {
		if kv.Key == s.Prefix+rel {
			return kv, true
		}
	}
	return KV{}, false
}

// Rel returns a full key relative to the prefix.
func (s *State) Rel(key string) string { return strings.TrimPrefix(key, s.Prefix) }

// IsAudit reports whether a full key is an audit record.
func (s *State) IsAudit(key string) bool { return strings.HasPrefix(s.Rel(key), "audit/") }

// PlanInfo describes one stored plan.
type PlanInfo struct {
	Name    string `json:"name"`
	Entries int    `json:"entries"`
	Bytes   int    `json:"bytes"`
	Active  bool   `json:"active"`
	Error   string `json:"error,omitempty"`
}

// Plans lists the stored plans (each parsed on its own, so that one bad plan does not
// hide the others).
func (s *State) Plans() []PlanInfo {
	active := ""
	if kv, ok := s.Lookup("active_plan"); ok {
		active = strings.TrimSpace(string(kv.Value))
	}
	var out []PlanInfo
	for _, kv := range s.KVs {
		rel := s.Rel(kv.Key)
		if !strings.HasPrefix(rel, "plans/") || rel == "plans/" {
			continue
		}
		name := strings.TrimPrefix(rel, "plans/")
		p := PlanInfo{Name: name, Bytes: len(kv.Value), Active: name == active}
		ov, err := ParsePlan(name, kv.Value, "plan:"+name)
		if err != nil {
			p.Error = err.Error()
		}
		p.Entries = len(ov)
		out = append(out, p)
	}
	return out
}

func (c *Ctl) prefix() string {
	p := c.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return SlashPrefix(p)
}

func (c *Ctl) context() (context.Context, context.CancelFunc) {
	d := c.Timeout
	if d == 0 {
		d = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), d)
}

// explain turns a call that ran out of time into a message saying so: a hung agent
// (stopped, overloaded) answers nothing, and "context deadline exceeded" says too little.
func (c *Ctl) explain(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		d := c.Timeout
		if d == 0 {
			d = 10 * time.Second
		}
		return fmt.Errorf("consul did not answer within %s (-timeout): the agent is hung, overloaded or unreachable: %w", d, err)
	}
	return err
}

func (c *Ctl) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// RelKey turns what an operator typed into a key relative to the prefix: a leading slash
// and the prefix itself (a full key pasted from the Consul UI) are removed.
func (c *Ctl) RelKey(key string) string {
	key = strings.TrimLeft(strings.TrimSpace(key), "/")
	return strings.TrimPrefix(key, c.prefix())
}

// Read lists every key under the prefix.
func (c *Ctl) Read() (*State, error) {
	ctx, cancel := c.context()
	defer cancel()
	kvs, index, err := (&KVLister{KV: c.Client.KV()}).List(ctx, c.prefix(), 0, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s from consul: %w", c.prefix(), c.explain(ctx, err))
	}
	st := &State{Prefix: c.prefix(), Index: index, KVs: kvs}
	sort.Slice(st.KVs, func(i, j int) bool { return st.KVs[i].Key < st.KVs[j].Key })
	return st, nil
}

// Eval is one content of the prefix, converted and composed with the file.
type Eval struct {
	Snapshot *Snapshot
	Config   *config.Config
}

// Evaluate converts kvs (full keys) and composes them with the file, as a gateway does
// with a read. asPlan, if not empty, composes that plan as if it were the active one.
// The error lists every problem (config.Errors when the values are at fault).
func (c *Ctl) Evaluate(kvs []KV, asPlan string) (*Eval, error) {
	if c.Doc == nil {
		return nil, errors.New("no configuration file to validate against (-config or $FLOODGATE_CONFIG)")
	}
	snap, err := Convert(c.prefix(), kvs)
	if err != nil {
		return nil, err
	}
	plan := snap.Plan()
	if asPlan != "" {
		p, ok := snap.Plans[asPlan]
		if !ok {
			return nil, fmt.Errorf("plan %q does not exist under %splans/", asPlan, c.prefix())
		}
		plan = p
	}
	cfg, err := config.Load(c.Doc, snap.Overrides, plan)
	if err != nil {
		return nil, err
	}
	return &Eval{Snapshot: snap, Config: cfg}, nil
}

// Write is one change of one key.
type Write struct {
	Verb string `json:"verb"`
	// Key is relative to the prefix.
	Key     string `json:"key"`
	Old     string `json:"old"`
	New     string `json:"new"`
	Existed bool   `json:"existed"`
	Delete  bool   `json:"delete,omitempty"`
	// Index is the key's ModifyIndex as read (0: the key did not exist).
	Index uint64 `json:"index"`
	// Checks are other keys (full, with the ModifyIndex read) that must be unchanged for
	// the write to happen.
	Checks []KV `json:"-"`
}

// AuditRecord is the value of <prefix>audit/<unixnano>-<who>.
type AuditRecord struct {
	Time time.Time `json:"time"`
	Who  string    `json:"who"`
	Verb string    `json:"verb"`
	Key  string    `json:"key"`
	Old  string    `json:"old"`
	New  string    `json:"new"`
}

// Result is what a write did, or would do under DryRun.
type Result struct {
	Write Write
	// Noop says why nothing was written (e.g. the value is already in place).
	Noop string
	// Before is the current content evaluated; nil when it does not validate
	// (BeforeErr), in which case the gateways serve an older configuration.
	Before    *Eval
	BeforeErr error
	// After is the content after the write, evaluated.
	After *Eval
	// Changes are the configuration changes the gateways will apply.
	Changes []config.Change
	// IfActivated (plan put) are the changes if the stored plan were activated.
	IfActivated []config.Change
	// Held is why the gateways will hold this update until `floodgate ctl confirm`.
	Held string
	// StillInvalid lists the problems the content has before and after this write: a
	// repair (or a kill switch) is written even when other keys are bad, and the
	// gateways keep their last good configuration until those are fixed too.
	StillInvalid error
	AuditKey     string
	Audit        *AuditRecord
	// Written is true once the transaction succeeded; Index is its Consul index.
	Written bool
	Index   uint64
	// Fleet is what the gateways served just before the write (Ctl.ReadFleet), when read:
	// FleetRead is true, FleetErr says why it could not be.
	Fleet     []Member
	FleetErr  error
	FleetRead bool

	state *State // the read the write is conditional on (PrepareConfirm)
}

// RefusedError is a write that was not made: it does not validate or is not allowed.
type RefusedError struct {
	Msg string
	Err error // the problems, if any (config.Errors when values are at fault)
}

func (e *RefusedError) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ":\n  " + strings.ReplaceAll(e.Err.Error(), "\n", "\n  ")
}

func (e *RefusedError) Unwrap() error { return e.Err }

// ConflictError is a check-and-set that failed: the key changed since it was read.
type ConflictError struct {
	Key            string // relative
	Was, Now       string
	WasSet, NowSet bool
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s changed by someone else since you read it: was %s, now %s; nothing written, retry",
		e.Key, showValue(e.Was, e.WasSet), showValue(e.Now, e.NowSet))
}

func showValue(v string, set bool) string {
	if !set {
		return "(not set)"
	}
	if len(v) > 80 || strings.Contains(v, "\n") {
		return fmt.Sprintf("(%d bytes)", len(v))
	}
	return scalar(v)
}

// ShowValue formats a key's value for messages: as is (quoted when empty or with
// spaces), "(not set)" when absent, a size for long or multi-line values.
func ShowValue(v string, set bool) string { return showValue(v, set) }

// checkWritable refuses keys that ctl writes only through their own verbs.
func checkWritable(rel, verb string) error {
	switch {
	case rel == "":
		return &RefusedError{Msg: "empty key: want a key relative to the prefix, e.g. routes/lottery/enabled"}
	case rel == "confirm" && verb == "set":
		return &RefusedError{Msg: "confirm is written by `floodgate ctl confirm`, which validates the content and computes its fingerprint"}
	case strings.HasPrefix(rel, "audit/"):
		return &RefusedError{Msg: fmt.Sprintf("%s is an audit record; ctl writes them and does not edit them (prune old ones with `consul kv delete`)", rel)}
	case strings.HasPrefix(rel, "plans/") && verb == "set":
		return &RefusedError{Msg: fmt.Sprintf("%s is a plan: store it with `floodgate ctl plan put %s FILE`, which validates it as if it were active", rel, strings.TrimPrefix(rel, "plans/"))}
	}
	return nil
}

// CheckPlanName refuses plan names that are not one path segment of letters, digits,
// '-', '_' and '.'.
func CheckPlanName(name string) error {
	if name == "" {
		return &RefusedError{Msg: "empty plan name"}
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return &RefusedError{Msg: fmt.Sprintf("plan name %q: use letters, digits, '-', '_' and '.' only", name)}
		}
	}
	return nil
}

// with returns kvs with key set to val (or removed).
func with(kvs []KV, key string, val []byte, del bool) []KV {
	out := make([]KV, 0, len(kvs)+1)
	found := false
	for _, kv := range kvs {
		if kv.Key == key {
			found = true
			if !del {
				out = append(out, KV{Key: key, Value: val, ModifyIndex: kv.ModifyIndex})
			}
			continue
		}
		out = append(out, kv)
	}
	if !found && !del {
		out = append(out, KV{Key: key, Value: val})
	}
	return out
}

// compare fills Before, BeforeErr, Changes and Held of res for after.
func (c *Ctl) compare(st *State, after *Eval, res *Result) {
	res.After = after
	res.Before, res.BeforeErr = c.Evaluate(st.KVs, "")
	if res.Before != nil {
		res.Changes = config.Diff(res.Before.Config.Sources, after.Config.Sources)
		res.Held = suspicious(res.Before.Snapshot, after.Snapshot)
	}
}

// Set writes rel = value.
func (c *Ctl) Set(key, value string) (*Result, error) {
	rel := c.RelKey(key)
	if err := checkWritable(rel, "set"); err != nil {
		return nil, err
	}
	st, err := c.Read()
	if err != nil {
		return nil, err
	}
	old, existed := st.Lookup(rel)
	w := Write{Verb: "set", Key: rel, Old: string(old.Value), New: value, Existed: existed, Index: old.ModifyIndex}
	res := &Result{Write: w}
	if existed && string(old.Value) == value {
		res.Noop = fmt.Sprintf("%s is already %s", rel, showValue(value, true))
		return res, nil
	}
	kvs := with(st.KVs, st.Prefix+rel, []byte(value), false)
	after, err := c.Evaluate(kvs, "")
	if err != nil {
		if !c.repair(st, kvs, err, res) {
			return nil, &RefusedError{Msg: fmt.Sprintf("%s = %q does not validate; nothing written", rel, value), Err: err}
		}
		return res, c.commit(st, res)
	}
	if rel == "active_plan" && strings.TrimSpace(value) != "" {
		plan, _ := st.Lookup("plans/" + strings.TrimSpace(value))
		res.Write.Checks = []KV{plan}
	}
	c.compare(st, after, res)
	return res, c.commit(st, res)
}

// Unset deletes rel. active_plan is never deleted (set it to "" instead): a prefix
// without it can become empty, and an empty read is held by the gateways.
func (c *Ctl) Unset(key string) (*Result, error) {
	rel := c.RelKey(key)
	if err := checkWritable(rel, "unset"); err != nil {
		return nil, err
	}
	if rel == "active_plan" {
		return nil, &RefusedError{Msg: "refusing to delete active_plan: set it to \"\" instead (`floodgate ctl plan deactivate`). " +
			"Keeping the key present means the prefix never reads empty: the gateways hold an empty read " +
			"(prefix deleted or ACL-filtered) until an operator runs `floodgate ctl confirm`"}
	}
	st, err := c.Read()
	if err != nil {
		return nil, err
	}
	old, existed := st.Lookup(rel)
	if !existed {
		return nil, &RefusedError{Msg: fmt.Sprintf("%s is not set under %s; nothing to unset", rel, st.Prefix)}
	}
	// delete-cas succeeds on a key that is already gone; check-index does not, so a key
	// deleted (or rewritten) by someone else since the read is a conflict too
	res := &Result{Write: Write{Verb: "unset", Key: rel, Old: string(old.Value), Existed: true, Delete: true, Index: old.ModifyIndex, Checks: []KV{old}}}
	kvs := with(st.KVs, old.Key, nil, true)
	after, err := c.Evaluate(kvs, "")
	if err != nil {
		if !c.repair(st, kvs, err, res) {
			return nil, &RefusedError{Msg: fmt.Sprintf("without %s the configuration does not validate; nothing deleted", rel), Err: err}
		}
		return res, c.commit(st, res)
	}
	c.compare(st, after, res)
	return res, c.commit(st, res)
}

// PutPlan stores the plan document doc as plans/<name>. It is validated as if it were
// active (file + current overrides + this plan): a plan that does not validate cannot be
// activated, so it is not stored either.
func (c *Ctl) PutPlan(name string, doc []byte) (*Result, error) {
	if err := CheckPlanName(name); err != nil {
		return nil, err
	}
	if _, err := ParsePlan(name, doc, "plan:"+name); err != nil {
		return nil, &RefusedError{Msg: fmt.Sprintf("plan %q not stored", name), Err: err}
	}
	st, err := c.Read()
	if err != nil {
		return nil, err
	}
	rel := "plans/" + name
	old, existed := st.Lookup(rel)
	res := &Result{Write: Write{Verb: "plan put", Key: rel, Old: string(old.Value), New: string(doc), Existed: existed, Index: old.ModifyIndex}}
	if existed && string(old.Value) == string(doc) {
		res.Noop = fmt.Sprintf("plan %q is already stored with this content", name)
		return res, nil
	}
	kvs := with(st.KVs, st.Prefix+rel, doc, false)
	asActive, err := c.Evaluate(kvs, name)
	if err != nil {
		return nil, &RefusedError{Msg: fmt.Sprintf("plan %q does not validate as if it were active (file + current overrides + the plan); a plan that does not validate cannot be activated, so it is not stored", name), Err: err}
	}
	after, err := c.Evaluate(kvs, "")
	if err != nil {
		return nil, &RefusedError{Msg: fmt.Sprintf("with plan %q stored, the content of %s does not validate; nothing written", name, st.Prefix), Err: err}
	}
	c.compare(st, after, res)
	if res.Before != nil {
		res.IfActivated = config.Diff(res.Before.Config.Sources, asActive.Config.Sources)
	}
	return res, c.commit(st, res)
}

// DiffPlan returns the current content (file + current overrides + current active plan)
// and the content with plan name activated, evaluated, and what changes between them.
func (c *Ctl) DiffPlan(name string) (before, after *Eval, changes []config.Change, err error) {
	if err := CheckPlanName(name); err != nil {
		return nil, nil, nil, err
	}
	st, err := c.Read()
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := st.Lookup("plans/" + name); !ok {
		return nil, nil, nil, &RefusedError{Msg: fmt.Sprintf("plan %q does not exist under %splans/ (see `floodgate ctl plan list`)", name, st.Prefix)}
	}
	before, err = c.Evaluate(st.KVs, "")
	if err != nil {
		return nil, nil, nil, &RefusedError{Msg: fmt.Sprintf("the current content of %s does not validate, so there is no running configuration to compare with (the gateways keep serving their last good one)", st.Prefix), Err: err}
	}
	after, err = c.Evaluate(st.KVs, name)
	if err != nil {
		return nil, nil, nil, &RefusedError{Msg: fmt.Sprintf("plan %q does not validate as if it were active; it cannot be activated", name), Err: err}
	}
	return before, after, config.Diff(before.Config.Sources, after.Config.Sources), nil
}

// ActivatePlan sets active_plan = name, conditional on both active_plan and the plan's
// key being as read.
func (c *Ctl) ActivatePlan(name string) (*Result, error) {
	if err := CheckPlanName(name); err != nil {
		return nil, err
	}
	st, err := c.Read()
	if err != nil {
		return nil, err
	}
	plan, ok := st.Lookup("plans/" + name)
	if !ok {
		return nil, &RefusedError{Msg: fmt.Sprintf("plan %q does not exist under %splans/ (see `floodgate ctl plan list`); nothing activated", name, st.Prefix)}
	}
	return c.setActive(st, "plan activate", name, []KV{plan})
}

// DeactivatePlan sets active_plan = "".
func (c *Ctl) DeactivatePlan() (*Result, error) {
	st, err := c.Read()
	if err != nil {
		return nil, err
	}
	return c.setActive(st, "plan deactivate", "", nil)
}

func (c *Ctl) setActive(st *State, verb, name string, checks []KV) (*Result, error) {
	old, existed := st.Lookup("active_plan")
	res := &Result{Write: Write{Verb: verb, Key: "active_plan", Old: string(old.Value), New: name, Existed: existed, Index: old.ModifyIndex, Checks: checks}}
	cur := strings.TrimSpace(string(old.Value))
	switch {
	case name != "" && cur == name:
		res.Noop = fmt.Sprintf("plan %q is already active", name)
		return res, nil
	case name == "" && existed && cur == "":
		res.Noop = "no plan is active"
		return res, nil
	}
	after, err := c.Evaluate(with(st.KVs, st.Prefix+"active_plan", []byte(name), false), "")
	if err != nil {
		msg := fmt.Sprintf("with active_plan = %q the configuration does not validate; nothing written", name)
		if name != "" {
			msg = fmt.Sprintf("plan %q does not validate as the active plan; not activated", name)
		}
		return nil, &RefusedError{Msg: msg, Err: err}
	}
	c.compare(st, after, res)
	return res, c.commit(st, res)
}

// PrepareConfirm reads and validates the current content and returns the confirm write
// without making it (Commit makes it), so that a caller can show what the gateways will
// apply before they apply it.
func (c *Ctl) PrepareConfirm() (*Result, error) {
	st, err := c.Read()
	if err != nil {
		return nil, err
	}
	ev, err := c.Evaluate(st.KVs, "")
	if err != nil {
		return nil, &RefusedError{Msg: fmt.Sprintf("the current content of %s does not validate, so the gateways would reject it even if confirmed; fix it first; nothing written", st.Prefix), Err: err}
	}
	old, existed := st.Lookup("confirm")
	res := &Result{Write: Write{Verb: "confirm", Key: "confirm", Old: string(old.Value), New: ev.Snapshot.Fingerprint, Existed: existed, Index: old.ModifyIndex}, After: ev, state: st}
	if existed && strings.TrimSpace(string(old.Value)) == ev.Snapshot.Fingerprint {
		res.Noop = fmt.Sprintf("the current content (fingerprint %s) is already confirmed", ev.Snapshot.Fingerprint)
	}
	return res, nil
}

// Commit makes a write prepared by PrepareConfirm.
func (c *Ctl) Commit(res *Result) error {
	if res.state == nil {
		return errors.New("consul: Commit of a result that was not prepared")
	}
	return c.commit(res.state, res)
}

// auditWho makes who safe as part of a key.
func auditWho(who string) string {
	if who == "" {
		who = "unknown"
	}
	b := []byte(who)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == '@') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// commit writes res.Write and its audit record in one transaction (unless DryRun).
func (c *Ctl) commit(st *State, res *Result) error {
	w := res.Write
	now := c.now().UTC()
	key := st.Prefix + w.Key
	res.Audit = &AuditRecord{Time: now, Who: c.Who, Verb: w.Verb, Key: key, Old: w.Old, New: w.New}
	res.AuditKey = fmt.Sprintf("%saudit/%d-%s", st.Prefix, now.UnixNano(), auditWho(c.Who))
	if c.ReadFleet != nil && res.After != nil && res.After.Config != nil {
		res.Fleet, res.FleetErr = c.ReadFleet()
		res.FleetRead = true
	}
	if c.DryRun {
		return nil
	}
	audit, err := json.Marshal(res.Audit)
	if err != nil {
		return err
	}
	if c.BeforeWrite != nil {
		c.BeforeWrite()
	}
	var ops api.KVTxnOps
	for _, ck := range w.Checks {
		ops = append(ops, &api.KVTxnOp{Verb: api.KVCheckIndex, Key: ck.Key, Index: ck.ModifyIndex})
	}
	main := len(ops)
	if w.Delete {
		ops = append(ops, &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: key, Index: w.Index})
	} else {
		ops = append(ops, &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: []byte(w.New), Index: w.Index})
	}
	ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: res.AuditKey, Value: audit})
	ctx, cancel := c.context()
	defer cancel()
	ok, resp, meta, err := c.Client.KV().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		var se api.StatusError
		if errors.As(err, &se) && (se.Code == http.StatusForbidden || se.Code == http.StatusUnauthorized) {
			return fmt.Errorf("consul refused the write of %s (ACL): the token (-consul-token-file) needs key write on %s: %w", key, st.Prefix, err)
		}
		return fmt.Errorf("consul transaction writing %s failed; nothing written (unless consul applied it before it stopped answering: check with `floodgate ctl get %s`): %w", key, strings.TrimPrefix(key, st.Prefix), c.explain(ctx, err))
	}
	if !ok {
		return c.conflict(st, res, ops, main, resp)
	}
	res.Written = true
	if meta != nil {
		res.Index = meta.LastIndex
	}
	return nil
}

// conflict explains a failed transaction.
func (c *Ctl) conflict(st *State, res *Result, ops api.KVTxnOps, main int, resp *api.KVTxnResponse) error {
	var whats []string
	failed := -1
	if resp != nil {
		for _, e := range resp.Errors {
			whats = append(whats, e.What)
			if strings.Contains(strings.ToLower(e.What), "permission denied") {
				return fmt.Errorf("consul refused the write of %s (ACL): the token (-consul-token-file) needs key write on %s: %s", st.Prefix+res.Write.Key, st.Prefix, e.What)
			}
			if failed < 0 && e.OpIndex < len(ops) {
				failed = e.OpIndex
			}
		}
	}
	if failed < 0 || failed > main {
		return fmt.Errorf("consul transaction writing %s failed; nothing written: %s", st.Prefix+res.Write.Key, strings.Join(whats, "; "))
	}
	key := ops[failed].Key
	ce := &ConflictError{Key: st.Rel(key)}
	if failed == main {
		ce.Was, ce.WasSet = res.Write.Old, res.Write.Existed
	} else {
		ck := res.Write.Checks[failed]
		ce.Was, ce.WasSet = string(ck.Value), ck.ModifyIndex != 0
	}
	ctx, cancel := c.context()
	defer cancel()
	if kv, _, err := c.Client.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx)); err == nil && kv != nil {
		ce.Now, ce.NowSet = string(kv.Value), true
	}
	return ce
}

// scalar shows a value as is, quoted when it is empty or has spaces or quotes.
func scalar(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\n\"'") || len(v) > 120 {
		if len(v) > 120 {
			v = v[:117] + "..."
		}
		return fmt.Sprintf("%q", v)
	}
	return v
}

// repair decides a write whose result does not validate: it is made when the content
// already did not validate and the write adds no problem of its own (it removes or fixes
// a bad key, or flips a switch beside one). ctl must never lock itself out: with one bad
// key written outside ctl, unsetting that key and every kill switch must still be
// possible. res.StillInvalid then says what is left to fix.
func (c *Ctl) repair(st *State, kvs []KV, afterErr error, res *Result) bool {
	_, beforeErr := c.Evaluate(st.KVs, "")
	if beforeErr == nil || c.Doc == nil {
		return false
	}
	before := map[string]bool{}
	for _, l := range c.problems(st.KVs) {
		before[l] = true
	}
	left := c.problems(kvs)
	for _, l := range left {
		if !before[l] {
			return false // a problem this write makes
		}
	}
	res.BeforeErr, res.StillInvalid = beforeErr, errors.New(strings.Join(left, "\n"))
	if snap, err := Convert(st.Prefix, kvs); err == nil {
		res.After = &Eval{Snapshot: snap}
	}
	return true
}

// problems lists every problem of a content, one line each: the keys that do not convert
// and, composed with the file, the values of the keys that do (Evaluate stops at the
// first kind).
func (c *Ctl) problems(kvs []KV) []string {
	snap, errs := convert(c.prefix(), kvs)
	var out []string
	for _, e := range errs {
		out = append(out, strings.TrimSpace(e.Error()))
	}
	if _, err := config.Load(c.Doc, snap.Overrides, snap.Plan()); err != nil {
		for _, l := range strings.Split(err.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}
