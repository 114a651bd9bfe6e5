package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/gateway/consul"
)

func init() {
	register(command{name: "ctl", summary: "read/write switches and plans in Consul, validated before writing", run: runCtl})
}

// ctlBeforeWrite is a test hook: it runs after a write was read and validated, just
// before the Consul transaction (a test changes the key behind ctl's back there).
var ctlBeforeWrite func()

// ctlVerb is one verb of ctl: its synopsis, what it does and examples, for -h.
type ctlVerb struct {
	synopsis, doc, examples string
	// args is the number of arguments after the verb (-1: get's zero or one).
	args        int
	needsConfig bool
}

var ctlVerbs = map[string]ctlVerb{
	"async": {args: 0, synopsis: "async", needsConfig: true, doc: `Prints, for every async route of the configuration, its delivery backlog in the
queue (pending: not yet handed to a deliverer; ack pending: handed out, not yet
acknowledged; the age of the oldest undelivered grant) and its delivery switches
(paused, rate in grants/s across all deliverers) as the file and Consul set them now.
The queue is the configuration's queue.url; with Consul unreachable the switches are
the file's (said so).`,
		examples: `  floodgate ctl -config configs/demo.yaml async
  floodgate ctl -config gw.yaml -json async`},
	"get": {args: -1, synopsis: "get [KEY]", doc: `Prints one key's value (KEY relative to the prefix), or every key under the prefix as
"key = value" (plans by name and size; audit records only with -audit).`,
		examples: `  floodgate ctl get
  floodgate ctl get routes/lottery/enabled
  floodgate ctl get plans/midnight
  floodgate ctl -audit get`},
	"set": {args: 2, synopsis: "set KEY VALUE", needsConfig: true, doc: `Validates the would-be content of the prefix with the gateways' configuration file
(exactly what a gateway does with the read that follows), then writes KEY = VALUE
if the key is still as read (check-and-set), with an audit record in the same
transaction. Prints KEY: old -> new and the configuration changes against what the
gateways serve (read from their admin APIs; against Consul's content, said so, when
none can be read), with a warning for any gateway that holds an update, is stale or
serves other content than Consul's. Use -- before a VALUE that starts with '-' and is
not a number.`,
		examples: `  floodgate ctl -config gw.yaml set routes/lottery/enabled false
  floodgate ctl -config gw.yaml set routes/lottery/token_bucket/rate 20000
  floodgate ctl -config gw.yaml -dry-run set routes/info/timeout 150ms`},
	"unset": {args: 1, synopsis: "unset KEY", needsConfig: true, doc: `Deletes KEY (check-and-set), after validating the content without it: the value
from the file (or the active plan) applies again. active_plan is never deleted: use
"plan deactivate", which sets it to "".`,
		examples: `  floodgate ctl -config gw.yaml unset routes/lottery/enabled`},
	"plan": {args: 0, synopsis: "plan put|diff|activate|deactivate|list ...", doc: `Contingency plans: documents of path: value overrides stored under plans/<name>,
put in force by active_plan (precedence: file < per-key overrides < active plan).
  plan put NAME FILE   store FILE (YAML/JSON) as plan NAME, validated as if it were active
  plan diff NAME       what activating NAME would change in the running configuration
  plan activate NAME   validate, then set active_plan = NAME
  plan deactivate      set active_plan = ""
  plan list            stored plans, their number of entries, the active one marked *`,
		examples: `  floodgate ctl plan list
  floodgate ctl -config gw.yaml plan put midnight midnight.yaml
  floodgate ctl -config gw.yaml plan diff midnight
  floodgate ctl -config gw.yaml plan activate midnight
  floodgate ctl -config gw.yaml plan deactivate`},
	"plan put": {args: 2, synopsis: "plan put NAME FILE", needsConfig: true, doc: `Stores FILE (a YAML/JSON mapping of relative path -> value, or a configuration
fragment: routes: {info: {enabled: false}}) as plans/NAME. It is validated as if it
were active (file + current overrides + the plan): a plan that does not validate
cannot be activated, so it is not stored either. Prints what activating it would change.`,
		examples: `  printf 'routes/info/enabled: false\nroutes/report/enabled: false\n' > midnight.yaml
  floodgate ctl -config gw.yaml plan put midnight midnight.yaml`},
	"plan diff": {args: 1, synopsis: "plan diff NAME", needsConfig: true, doc: `Prints what would change if plan NAME were activated, one line per value:
path: old -> new (source) - against what the gateways serve (their admin APIs), one
list per distinct served configuration, with a warning for any gateway that holds an
update, is stale or serves other content than Consul's; against Consul's content
(file + current overrides + current active plan), said so, when no gateway's admin
API can be read.`,
		examples: `  floodgate ctl -config gw.yaml plan diff midnight`},
	"plan activate": {args: 1, synopsis: "plan activate NAME", needsConfig: true, doc: `Validates, then sets active_plan = NAME - only if neither active_plan nor the plan
changed since they were read, so the plan that was validated is the one in force.`,
		examples: `  floodgate ctl -config gw.yaml plan activate midnight
  floodgate ctl -config gw.yaml -dry-run plan activate midnight`},
	"plan deactivate": {args: 0, synopsis: "plan deactivate", needsConfig: true, doc: `Sets active_plan = "" (check-and-set): the per-key overrides and the file apply again.`,
		examples: `  floodgate ctl -config gw.yaml plan deactivate`},
	"plan list": {args: 0, synopsis: "plan list", doc: `Lists the stored plans with their number of entries; the active one is marked *.`,
		examples: `  floodgate ctl plan list`},
	"confirm": {args: 0, synopsis: "confirm", needsConfig: true, doc: `A gateway holds a suspicious read (the prefix empty or deleted, most keys removed at
once) and keeps serving what it had. confirm validates the current content, computes
its fingerprint and writes <prefix>confirm = fingerprint: the gateways then apply that
content (and only that content: any later change is judged again). Prints what will be
applied and, where a gateway's admin /config is reachable, the changes against it.`,
		examples: `  floodgate ctl -config gw.yaml confirm
  floodgate ctl -config gw.yaml -dry-run confirm`},
	"status": {args: 0, synopsis: "status", doc: `Lists every gateway registered in Consul's catalog: id, address, health, generation,
active plan, fingerprint of the Consul content it serves, stale and held - and
whether they all serve the current content of the prefix. -json for machines. Exits
3 when they are not in sync (scripts can wait for a change to reach every gateway).`,
		examples: `  floodgate ctl status
  floodgate ctl -json status | jq '.in_sync'`},
}

const ctlVerbList = `verbs:
  get [KEY]              one key, or every key under the prefix
  set KEY VALUE          validate, then write one key (check-and-set)
  unset KEY              validate, then delete one key (check-and-set)
  plan put NAME FILE     store a plan, validated as if it were active
  plan diff NAME         what activating a plan would change
  plan activate NAME     validate, then put a plan in force
  plan deactivate        no plan in force
  plan list              stored plans, the active one marked
  confirm                apply a read the gateways hold as suspicious
  status                 the registered gateways and whether they agree
  async                  the async routes' delivery backlog, paused and rate`

const ctlExamples = `  export CONSUL_HTTP_ADDR=127.0.0.1:8500 FLOODGATE_CONFIG=configs/demo.yaml
  floodgate ctl get
  floodgate ctl set routes/lottery/enabled false
  floodgate ctl -dry-run set routes/lottery/token_bucket/rate 20000
  floodgate ctl plan put midnight midnight.yaml && floodgate ctl plan diff midnight
  floodgate ctl plan activate midnight
  floodgate ctl status

Every write is validated first (the file + the would-be keys, as a gateway composes
them), made only if the key is unchanged since it was read, and recorded under
<prefix>audit/ in the same transaction. Exit status: 0 done (or nothing to do),
1 refused or failed, 2 usage error. 'floodgate ctl VERB -h' explains one verb.`

type ctlCmd struct {
	fs                                             *flag.FlagSet
	addr, prefix, tokenFile, cfgPath, who, service string
	dryRun, audit, jsonOut                         bool
	timeout                                        time.Duration
	out                                            io.Writer
	pos                                            []string // positional arguments seen so far (for -h)
}

func defaultWho() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	host, _ := os.Hostname()
	if host == "" {
		return name
	}
	return name + "@" + host
}

func runCtl(args []string) error {
	c := &ctlCmd{out: os.Stdout}
	return c.run(args)
}

func (c *ctlCmd) run(args []string) error {
	fs := flag.NewFlagSet("floodgate ctl", flag.ContinueOnError)
	c.fs = fs
	addr := os.Getenv("CONSUL_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8500"
	}
	fs.StringVar(&c.addr, "consul", addr, "Consul HTTP address ($CONSUL_HTTP_ADDR when set)")
	fs.StringVar(&c.prefix, "consul-prefix", consul.DefaultPrefix, "Consul KV prefix of the switches")
	fs.StringVar(&c.tokenFile, "consul-token-file", "", "file holding a Consul ACL token with key write on the prefix (default: $CONSUL_HTTP_TOKEN / $CONSUL_HTTP_TOKEN_FILE); the gateways' token is read-only")
	fs.StringVar(&c.cfgPath, "config", os.Getenv("FLOODGATE_CONFIG"), "the gateways' configuration file (default $FLOODGATE_CONFIG); required to write, diff or confirm: every write is validated against it")
	fs.StringVar(&c.who, "who", defaultWho(), "who is writing, for the audit record")
	fs.BoolVar(&c.dryRun, "dry-run", false, "for writes: validate and print what would change; write nothing")
	fs.BoolVar(&c.audit, "audit", false, "get: include the audit records")
	fs.BoolVar(&c.jsonOut, "json", false, "status, get, async: print JSON")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "bound on each call to Consul")
	fs.StringVar(&c.service, "service", consul.DefaultService, "the catalog service the gateways register under: status reads them, writes, plan diff and confirm show their changes against what they serve")
	fs.Usage = c.usage

	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		c.usage()
		return exitError{code: 2, msg: "a verb is required (get, set, unset, plan, confirm, status)"}
	}
	verb := pos[0]
	rest := pos[1:]
	if verb == "plan" {
		if len(rest) == 0 {
			c.usage()
			return exitError{code: 2, msg: "plan: a sub-verb is required (put, diff, activate, deactivate, list)"}
		}
		verb, rest = "plan "+rest[0], rest[1:]
	}
	v, ok := ctlVerbs[verb]
	if !ok || verb == "plan" {
		c.pos = nil
		if strings.HasPrefix(verb, "plan ") {
			c.pos = []string{"plan"}
		}
		c.usage()
		return exitError{code: 2, msg: fmt.Sprintf("unknown verb %q", verb)}
	}
	if v.args >= 0 && len(rest) != v.args {
		c.pos = strings.Fields(verb)
		c.usage()
		return exitError{code: 2, msg: fmt.Sprintf("%s: want %d argument(s) (%s), got %d", verb, v.args, v.synopsis, len(rest))}
	}
	if v.args < 0 && len(rest) > 1 {
		return exitError{code: 2, msg: fmt.Sprintf("get: want at most one KEY, got %d arguments", len(rest))}
	}
	if c.jsonOut && !ctlJSONVerbs[verb] {
		return exitError{code: 2, msg: fmt.Sprintf("-json applies to status, get and async, not to %s", verb)}
	}

	ctl, err := c.client(verb, v.needsConfig)
	if err != nil {
		return err
	}
	switch verb {
	case "get":
		return c.get(ctl, rest)
	case "set":
		return c.write(ctl.Set(rest[0], rest[1]))
	case "unset":
		return c.write(ctl.Unset(rest[0]))
	case "plan put":
		b, err := os.ReadFile(rest[1])
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("plan put %s: cannot read the plan file: %v", rest[0], err)}
		}
		return c.write(ctl.PutPlan(rest[0], b))
	case "plan diff":
		return c.planDiff(ctl, rest[0])
	case "plan activate":
		return c.write(ctl.ActivatePlan(rest[0]))
	case "plan deactivate":
		return c.write(ctl.DeactivatePlan())
	case "plan list":
		return c.planList(ctl)
	case "confirm":
		return c.confirm(ctl)
	case "status":
		return c.status(ctl)
	case "async":
		return c.async(ctl)
	}
	return exitError{code: 2, msg: "unknown verb " + verb}
}

// parse parses flags anywhere among the arguments (before the verb, as documented, or
// after it). "--" ends the flags; a negative number is a value, not a flag.
func (c *ctlCmd) parse(args []string) ([]string, error) {
	c.pos = nil
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			c.pos = append(c.pos, args[1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" || isNumber(a) {
			c.pos = append(c.pos, a)
			args = args[1:]
			continue
		}
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, exitError{code: 2}
		}
		consumed := len(args) - c.fs.NArg()
		rest := c.fs.Args()
		if consumed > 0 && args[consumed-1] == "--" {
			c.pos = append(c.pos, rest...)
			break
		}
		args = rest
	}
	return c.pos, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// usage prints the help of the verb named so far, or of ctl.
func (c *ctlCmd) usage() {
	o := c.fs.Output()
	verb := strings.Join(c.pos, " ")
	if len(c.pos) > 2 {
		verb = strings.Join(c.pos[:2], " ")
	}
	if _, ok := ctlVerbs[verb]; !ok && len(c.pos) > 0 {
		verb = c.pos[0]
	}
	if v, ok := ctlVerbs[verb]; ok {
		fmt.Fprintf(o, "usage: floodgate ctl [flags] %s\n\n%s\n\nexamples:\n%s\n\nflags (see 'floodgate ctl -h' for all): -consul, -consul-prefix, -consul-token-file, -config, -who, -dry-run, -timeout\n", v.synopsis, v.doc, v.examples)
		return
	}
	fmt.Fprintf(o, "usage: floodgate ctl [flags] VERB [ARGS]\n\nRead and write floodgate's switches and plans in Consul KV, validated before writing.\n\n%s\n\nflags (before the verb):\n", ctlVerbList)
	c.fs.PrintDefaults()
	fmt.Fprintf(o, "\nexamples:\n%s\n", ctlExamples)
}

func (c *ctlCmd) client(verb string, needsConfig bool) (*consul.Ctl, error) {
	ctl := &consul.Ctl{Prefix: c.prefix, Who: c.who, DryRun: c.dryRun, Timeout: c.timeout, BeforeWrite: ctlBeforeWrite}
	if needsConfig {
		if c.cfgPath == "" {
			return nil, exitError{code: 2, msg: fmt.Sprintf("%s: -config FILE (or $FLOODGATE_CONFIG) is required: every write, diff and confirm is validated against the gateways' configuration file", verb)}
		}
		doc, err := config.ParseFile(c.cfgPath)
		if err != nil {
			return nil, exitError{code: 1, msg: fmt.Sprintf("-config: %s", indent(err.Error()))}
		}
		// the file must be valid on its own too: a gateway does not start on it otherwise
		if _, err := config.Load(doc); err != nil {
			return nil, exitError{code: 1, msg: fmt.Sprintf("-config %s does not validate on its own, so nothing can be validated against it:\n  %s", c.cfgPath, indent(err.Error()))}
		}
		ctl.Doc = doc
	}
	cl, err := consul.NewClient(consul.ClientOptions{Addr: c.addr, TokenFile: c.tokenFile})
	if err != nil {
		return nil, exitError{code: 1, msg: fmt.Sprintf("-consul %s -consul-token-file %q: %v", c.addr, c.tokenFile, err)}
	}
	ctl.Client = cl
	ctl.ReadFleet = func() ([]consul.Member, error) { return consul.DiscoverFleet(cl, c.service, 2*time.Second) }
	return ctl, nil
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// failed turns a library error into the exit status: 1, with the message.
func failed(err error) error {
	return exitError{code: 1, msg: err.Error()}
}

func (c *ctlCmd) get(ctl *consul.Ctl, rest []string) error {
	st, err := ctl.Read()
	if err != nil {
		return failed(err)
	}
	if len(rest) == 1 {
		rel := ctl.RelKey(rest[0])
		kv, ok := st.Lookup(rel)
		if !ok {
			return exitError{code: 1, msg: fmt.Sprintf("%s is not set under %s", rel, st.Prefix)}
		}
		v := string(kv.Value)
		if c.jsonOut {
			return c.printJSON(map[string]string{"key": rel, "value": v})
		}
		if !strings.HasSuffix(v, "\n") {
			v += "\n"
		}
		fmt.Fprint(c.out, v)
		return nil
	}
	if c.jsonOut {
		type entry struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		}
		out := []entry{}
		for _, kv := range st.KVs {
			rel := st.Rel(kv.Key)
			if rel == "" || (!c.audit && st.IsAudit(kv.Key)) || (strings.HasSuffix(rel, "/") && len(kv.Value) == 0) {
				continue
			}
			out = append(out, entry{Key: rel, Value: string(kv.Value)})
		}
		return c.printJSON(out)
	}
	plans := map[string]consul.PlanInfo{}
	for _, p := range st.Plans() {
		plans["plans/"+p.Name] = p
	}
	n := 0
	for _, kv := range st.KVs {
		rel := st.Rel(kv.Key)
		if rel == "" || (!c.audit && st.IsAudit(kv.Key)) || (strings.HasSuffix(rel, "/") && len(kv.Value) == 0) {
			continue
		}
		n++
		if p, ok := plans[rel]; ok {
			desc := fmt.Sprintf("(plan: %d entries, %d bytes", p.Entries, p.Bytes)
			if p.Active {
				desc += ", active"
			}
			if p.Error != "" {
				desc += ", INVALID: " + p.Error
			}
			fmt.Fprintf(c.out, "%s = %s)\n", rel, desc)
			continue
		}
		v := string(kv.Value)
		if v == "" || strings.ContainsAny(v, "\n\r") {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(c.out, "%s = %s\n", rel, v)
	}
	if n == 0 {
		fmt.Fprintf(os.Stderr, "no keys under %s\n", st.Prefix)
	}
	return nil
}

// write prints the outcome of a write verb.
func (c *ctlCmd) write(res *consul.Result, err error) error {
	if err != nil {
		return failed(err)
	}
	w := res.Write
	if res.Noop != "" {
		fmt.Fprintf(c.out, "%s; nothing written\n", res.Noop)
		return nil
	}
	switch {
	case w.Delete:
		fmt.Fprintf(c.out, "%s: %s -> (deleted)\n", w.Key, consul.ShowValue(w.Old, true))
	case w.Verb == "plan put":
		fmt.Fprintf(c.out, "%s: %s -> %s\n", w.Key, describePlan(w.Old, w.Existed, w.Key), describePlan(w.New, true, w.Key))
	default:
		fmt.Fprintf(c.out, "%s: %s -> %s\n", w.Key, consul.ShowValue(w.Old, w.Existed), consul.ShowValue(w.New, true))
	}
	switch {
	case res.BeforeErr != nil:
		fmt.Fprintf(c.out, "note: the current content of %s does not validate (the gateways keep serving their last good configuration), so there is no diff against it:\n  %s\n",
			consul.SlashPrefix(c.prefix), indent(res.BeforeErr.Error()))
	case res.After != nil && res.After.Config != nil:
		title, fp := "configuration changes", res.After.Snapshot.Fingerprint
		var chs []config.Change
		var old []config.Leaf
		if res.Before != nil {
			chs, old, fp = res.Changes, res.Before.Config.Sources, res.Before.Snapshot.Fingerprint
		} else {
			title = "changes the gateways will apply" // confirm: the content does not change, the gateways catch up
		}
		c.printFleetChanges(title, res.Fleet, res.FleetErr, res.After, fp, chs, old)
		if name := strings.TrimPrefix(w.Key, "plans/"); res.Before != nil && w.Verb == "plan put" && res.After.Snapshot.ActivePlan != name {
			printChanges(c.out, "if activated (floodgate ctl plan activate "+name+"), against Consul's content", res.IfActivated, old)
		}
	}
	if res.After != nil && !w.Delete && w.Verb == "set" {
		for _, o := range res.After.Snapshot.Plan() {
			if o.Path == w.Key {
				fmt.Fprintf(c.out, "note: the active plan %q sets %s too, and a plan wins over per-key overrides (file < overrides < plan)\n", res.After.Snapshot.ActivePlan, w.Key)
			}
		}
	}
	if res.StillInvalid != nil {
		fmt.Fprintf(c.out, "warning: written, but the content of the prefix still does not validate; the gateways keep their last good configuration (and apply none of it, this write included) until these are fixed:\n  %s\n", strings.ReplaceAll(res.StillInvalid.Error(), "\n", "\n  "))
	}
	if res.Held != "" {
		fmt.Fprintf(c.out, "warning: the gateways will hold this update and keep serving what they have until `floodgate ctl confirm`: %s\n", res.Held)
	}
	if !res.Written {
		fmt.Fprintf(c.out, "dry run: valid; nothing written (would write %s and the audit record %s)\n", w.Key, res.AuditKey)
		return nil
	}
	b, _ := json.Marshal(res.Audit)
	fmt.Fprintf(c.out, "audit: %s = %s\n", res.AuditKey, b)
	return nil
}

func describePlan(doc string, set bool, key string) string {
	if !set {
		return "(not set)"
	}
	ov, err := consul.ParsePlan(strings.TrimPrefix(key, "plans/"), []byte(doc), "")
	if err != nil {
		return fmt.Sprintf("(invalid plan, %d bytes)", len(doc))
	}
	return fmt.Sprintf("plan of %d entries (%d bytes)", len(ov), len(doc))
}

func printChanges(o io.Writer, title string, chs []config.Change, old []config.Leaf) {
	indent := title[:len(title)-len(strings.TrimLeft(title, " "))] + "  "
	if len(chs) == 0 {
		fmt.Fprintf(o, "%s: none\n", title)
		return
	}
	fmt.Fprintf(o, "%s (%d):\n", title, len(chs))
	for _, ch := range chs {
		fmt.Fprintf(o, "%s%s\n", indent, describeChange(ch, old))
	}
}

func (c *ctlCmd) planDiff(ctl *consul.Ctl, name string) error {
	before, after, chs, err := ctl.DiffPlan(name)
	if err != nil {
		return failed(err)
	}
	if before.Snapshot.ActivePlan == name {
		fmt.Fprintf(c.out, "plan %q is the active plan: activating it changes nothing\n", name)
		return nil
	}
	active := "no active plan"
	if before.Snapshot.ActivePlan != "" {
		active = "active plan " + before.Snapshot.ActivePlan
	}
	fleet, ferr := ctl.ReadFleet()
	c.printFleetChanges(fmt.Sprintf("activating plan %q (Consul's content: file + overrides + %s)", name, active), fleet, ferr, after, before.Snapshot.Fingerprint, chs, before.Config.Sources)
	return nil
}

func (c *ctlCmd) planList(ctl *consul.Ctl) error {
	st, err := ctl.Read()
	if err != nil {
		return failed(err)
	}
	plans := st.Plans()
	if len(plans) == 0 {
		fmt.Fprintf(c.out, "no plans under %splans/\n", st.Prefix)
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PLAN\tENTRIES\tBYTES\t")
	for _, p := range plans {
		mark, note := " ", ""
		if p.Active {
			mark, note = "*", "(active)"
		}
		if p.Error != "" {
			note += " INVALID: " + p.Error
		}
		fmt.Fprintf(tw, "%s %s\t%d\t%d\t%s\n", mark, p.Name, p.Entries, p.Bytes, strings.TrimSpace(note))
	}
	return tw.Flush()
}

func (c *ctlCmd) confirm(ctl *consul.Ctl) error {
	res, err := ctl.PrepareConfirm()
	if err != nil {
		return failed(err)
	}
	snap := res.After.Snapshot
	plan := "no active plan"
	if snap.ActivePlan != "" {
		plan = "active plan " + snap.ActivePlan
	}
	fmt.Fprintf(c.out, "current content of %s: %d keys, %s, fingerprint %s\n", consul.SlashPrefix(ctl.Prefix), snap.Keys, plan, snap.Fingerprint)
	if res.Noop != "" {
		fmt.Fprintf(c.out, "%s; nothing written\n", res.Noop)
		return nil
	}
	return c.write(res, ctl.Commit(res))
}

// printFleetChanges prints what after changes against what the gateways serve (fleet,
// read from their admin APIs just before the write), one list per distinct served
// configuration - or, when no gateway's admin API could be read, the changes against
// Consul's content (chs from old; none for confirm), saying so. Then it warns of every
// gateway that holds an update, is stale, serves other content than Consul's
// (fingerprint fp) or could not be read.
func (c *ctlCmd) printFleetChanges(title string, fleet []consul.Member, fleetErr error, after *consul.Eval, fp string, chs []config.Change, old []config.Leaf) {
	var served []consul.ServedChanges
	if fleetErr == nil {
		served = consul.ChangesAgainstFleet(fleet, after.Config)
	}
	switch {
	case len(served) == 0:
		why := "no gateway's admin API could be read"
		if fleetErr != nil {
			why = "cannot read the gateways: " + fleetErr.Error()
		} else if len(fleet) == 0 {
			why = fmt.Sprintf("no gateway is registered under service %q", c.service)
		}
		if old != nil {
			printChanges(c.out, title, chs, old)
			fmt.Fprintf(c.out, "note: %s; the changes are against Consul's content, not against what the gateways serve\n", why)
		} else {
			fmt.Fprintf(c.out, "%s: not known (%s)\n", title, why)
		}
	case len(served) == 1:
		printChanges(c.out, title+", against what "+servedBy(served[0])+" serve", served[0].Changes, served[0].Old)
	default:
		for _, sc := range served {
			printChanges(c.out, title+" for "+servedBy(sc), sc.Changes, sc.Old)
		}
	}
	for _, w := range consul.FleetWarnings(fleet, fp, served) {
		fmt.Fprintf(c.out, "warning: %s\n", w)
	}
}

// servedBy names the gateways of one served configuration: "gw-a (generation 4), gw-b (generation 9)".
func servedBy(sc consul.ServedChanges) string {
	names := make([]string, len(sc.IDs))
	for i, id := range sc.IDs {
		names[i] = fmt.Sprintf("%s (generation %s)", id, orNone(sc.Generations[i]))
	}
	return strings.Join(names, ", ")
}

// status prints consul.FleetStatus: the registered gateways, what each serves (from its
// admin API when reachable, else its catalog meta) and whether they are in sync.
func (c *ctlCmd) status(ctl *consul.Ctl) error {
	st, err := ctl.Read()
	if err != nil {
		return failed(err)
	}
	fleet, err := consul.DiscoverFleet(ctl.Client, c.service, 2*time.Second)
	if err != nil {
		return failed(err)
	}
	s := consul.NewFleetStatus(st.Prefix, c.service, st.KVs, fleet)
	if c.jsonOut {
		if err := c.printJSON(s); err != nil {
			return err
		}
		return notInSync(s)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDR\tHEALTH\tGENERATION\tPLAN\tFINGERPRINT\tSTALE\tHELD")
	for _, m := range s.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Addr, m.Health, orNone(m.Generation), orNone(m.ActivePlan),
			orNone(m.Fingerprint), yesNo(m.Stale), yesNo(m.Held))
	}
	tw.Flush()
	if s.Content.Error != "" {
		fmt.Fprintf(c.out, "\ncontent of %s: DOES NOT CONVERT:\n  %s\n", st.Prefix, indent(s.Content.Error))
	} else {
		fmt.Fprintf(c.out, "\ncontent of %s: %d keys, active plan %s, fingerprint %s\n", st.Prefix, s.Content.Keys, orNone(s.Content.ActivePlan), s.Content.Fingerprint)
	}
	for _, m := range s.Instances {
		if m.View == nil {
			fmt.Fprintf(c.out, "note: %s: from its catalog meta (its admin API was not read: %s)\n", m.ID, m.ViewError)
		}
	}
	if s.InSync {
		fmt.Fprintf(c.out, "in sync: all %d gateway(s) serve the current content\n", len(s.Instances))
		return nil
	}
	fmt.Fprintf(c.out, "NOT in sync:\n")
	for _, is := range s.Issues {
		fmt.Fprintf(c.out, "  %s\n", is)
	}
	return notInSync(s)
}

// notInSync is status's exit: 3 when the fleet is not in sync (the report says why),
// so that scripts can wait for a change to reach every gateway.
func notInSync(s consul.FleetStatus) error {
	if s.InSync {
		return nil
	}
	return exitError{code: 3}
}

// describeChange formats a configuration change as `path: old -> new (source)`; a value
// that was not set (or is no longer) shows as "(not set)".
func describeChange(ch config.Change, old []config.Leaf) string {
	was := consul.ShowValue(ch.Old, true)
	if ch.Old == "" && !hasLeaf(old, ch.Path) {
		was = "(not set)"
	}
	now := consul.ShowValue(ch.New, true)
	switch {
	case ch.Source == "(removed)":
		return fmt.Sprintf("%s: %s -> (not set)", ch.Path, was)
	case was == now:
		return fmt.Sprintf("%s: %s -> %s (%s, value unchanged)", ch.Path, was, now, ch.Source)
	}
	return fmt.Sprintf("%s: %s -> %s (%s)", ch.Path, was, now, ch.Source)
}

func hasLeaf(ls []config.Leaf, path string) bool {
	i := sort.Search(len(ls), func(i int) bool { return ls[i].Path >= path })
	return i < len(ls) && ls[i].Path == path
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(reason string) string {
	if reason == "" {
		return "no"
	}
	return "yes"
}

func (c *ctlCmd) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ctlJSONVerbs are the verbs that print JSON with -json; on any other -json is an error
// rather than silently ignored.
var ctlJSONVerbs = map[string]bool{"status": true, "get": true, "async": true}
