package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/queue"
	"github.com/floodgate/floodgate/internal/reconcile"
	"github.com/floodgate/floodgate/internal/texttable"
)

func init() {
	register(command{name: "reconcile", summary: "compare accepted grants (queue + journal) with the delivery ledger; -repair re-delivers the missing", run: runReconcile})
}

const reconcileExamples = `  floodgate reconcile -config configs/demo.yaml -json            # against make run: no other flag needed
  floodgate reconcile -config gw.yaml -settled                    # while the deliverers work: the backlog is not missing
  floodgate reconcile -config gw.yaml -since 2h -repair           # re-deliver what the last two hours lost
  floodgate reconcile -config gw.yaml -route grant -ledger http://10.0.0.5:8082/grants
exit status: 0 nothing unresolved, 1 missing (not repaired) / duplicates / orphans / mismatched, 2 usage`

func runReconcile(args []string) error {
	fs := newFlagSet("reconcile", "[-config FILE] [flags]", reconcileExamples)
	cfgPath := fs.String("config", "", "the gateways' configuration file (queue, routes, pools, journal); empty = the embedded demo configuration")
	routes := fs.String("route", "", "async routes to reconcile, comma-separated (default: all)")
	since := fs.String("since", "", "window start: a duration back from now (2h) or an RFC 3339 time; default: everything the queue keeps")
	until := fs.String("until", "", "window end: a duration back from now or an RFC 3339 time; default: now")
	ledger := fs.String("ledger", "", "the delivery ledger URL (default: http://<first address of the route's pool>/grants)")
	journalDir := fs.String("journal", "", "the gateway's local journal directory (default: queue.journal.dir or the gateway's default)")
	repair := fs.Bool("repair", false, "re-deliver the missing grants (idempotent: with the grant id header)")
	rate := fs.Float64("rate", 0, "repair rate in grants/s (default: the route's async.deliver.rate)")
	settled := fs.Bool("settled", false, "count as missing only grants the deliverers acknowledged or parked (while they work, the backlog is not missing); shown apart as \"in backlog\"")
	asJSON := fs.Bool("json", false, `print the counts as one JSON line, last: {"accepted":N,...,"repaired":N}`)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	now := time.Now()
	var o reconcile.Options
	var err error
	if o.Since, err = parseWhen(*since, now); err != nil {
		return exitError{code: 2, msg: "-since: " + err.Error()}
	}
	if o.Until, err = parseWhen(*until, now); err != nil {
		return exitError{code: 2, msg: "-until: " + err.Error()}
	}
	if *rate < 0 {
		return exitError{code: 2, msg: "-rate: must be >= 0"}
	}
	if *ledger != "" && !strings.HasPrefix(*ledger, "http://") && !strings.HasPrefix(*ledger, "https://") {
		return exitError{code: 2, msg: fmt.Sprintf("-ledger: want an http:// URL, got %q", *ledger)}
	}
	doc, err := loadDocument(*cfgPath)
	if err != nil {
		printConfigErrors(err)
		return exitError{code: 2, msg: "configuration not loaded"}
	}
	cfg, err := config.Load(doc, nil, nil)
	if err != nil {
		printConfigErrors(err)
		return exitError{code: 2, msg: "configuration not loaded"}
	}
	if *routes != "" {
		for _, r := range strings.Split(*routes, ",") {
			r = strings.TrimSpace(r)
			if rt := cfg.Routes[r]; rt == nil || rt.Async == nil {
				return exitError{code: 2, msg: fmt.Sprintf("-route: %q is not an async route of %s", r, doc.Name)}
			}
			o.Routes = append(o.Routes, r)
		}
	} else {
		n := 0
		for _, r := range cfg.Routes {
			if r.Async != nil {
				n++
			}
		}
		if n == 0 {
			return exitError{code: 2, msg: "the configuration " + doc.Name + " has no async route"}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; cancel() }()

	client, err := queue.Connect(queue.Options{URLs: cfg.Queue.URL, Name: "floodgate-reconcile", Stream: streamConfig(cfg)})
	if err != nil {
		return err
	}
	defer client.Close()
	for !client.Connected() {
		if ctx.Err() != nil {
			return fmt.Errorf("queue %s: not reachable", cfg.Queue.URL)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(now) > 10*time.Second {
			return fmt.Errorf("queue %s: not reachable within 10s", cfg.Queue.URL)
		}
	}
	o.Client, o.Config, o.LedgerURL, o.JournalDir, o.Repair, o.Rate, o.SettledOnly = client, cfg, *ledger, *journalDir, *repair, *rate, *settled
	res, err := reconcile.Run(ctx, o)
	if err != nil {
		return err
	}
	human := io.Writer(os.Stdout)
	if *asJSON {
		human = os.Stderr
	}
	printReconcile(human, res)
	if *asJSON {
		fmt.Println(res.JSON())
	}
	if !res.Clean() {
		return exitError{code: 1}
	}
	return nil
}

// parseWhen parses a -since/-until value: empty (zero), a duration back from now, or an
// RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("want a positive duration, got %q", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want a duration (2h) or an RFC 3339 time, got %q", s)
	}
	return t, nil
}

func printReconcile(w io.Writer, r *reconcile.Result) {
	tab := &texttable.Table{Left: 1}
	tab.Add("", "grants", "examples")
	row := func(name string, n int, ids []string) {
		ex := strings.Join(ids, " ")
		if len(ex) > 100 {
			ex = ex[:100] + "..."
		}
		tab.Add(name, fmt.Sprint(n), ex)
	}
	row("accepted", r.Accepted, nil)
	row("delivered", r.Delivered, nil)
	row("missing", r.Missing, r.MissingIDs)
	row("duplicates", r.Duplicates, r.DuplicateIDs)
	row("orphans", r.Orphans, r.OrphanIDs)
	row("mismatched", r.Mismatched, r.MismatchedIDs)
	row("repaired", r.Repaired, nil)
	if r.RepairFailed > 0 {
		row("repair failed", r.RepairFailed, nil)
	}
	if r.Unsettled > 0 {
		row("in backlog", r.Unsettled, nil)
	}
	tab.Write(w)
	fmt.Fprintf(w, "ledgers: %s\n", strings.Join(r.Ledgers, ", "))
	if r.JournalRead {
		fmt.Fprintf(w, "journal: %d records not yet in the queue", r.Journal.Records)
		if len(r.Journal.Quarantined) > 0 {
			fmt.Fprintf(w, ", %d damaged ranges", len(r.Journal.Quarantined))
		}
		fmt.Fprintln(w)
	}
}
