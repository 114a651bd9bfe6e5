// Package reconcile compares what floodgate accepted (the grants stream of the queue, and
// any local journal not yet replayed into it) with what the delivery backends recorded
// (their ledger, GET /grants), and re-delivers what is missing (`floodgate reconcile`;
// the deliverer runs it periodically without repair and exports the counts as metrics).
//
// Counted, by grant id (a grant may sit in the queue more than once: a resubmission, a
// replayed journal record; it counts once):
//
//	accepted    distinct grant ids accepted in the window
//	delivered   accepted ids the ledger holds
//	missing     accepted ids the ledger does not hold (SettledOnly: only those the
//	            route's consumer already acknowledged or parked, i.e. stream sequence <=
//	            its ack floor, so the live backlog is not reported as missing)
//	duplicates  extra ledger lines of an id listed more than once, plus ledger lines of
//	            never-accepted ids whose user and prize repeat an accepted, delivered grant
//	            beyond the number of such grants accepted (the same grant under two ids)
//	orphans     other ledger lines of ids never accepted (within the window: recorded
//	            after its start and before reconciliation began)
//	mismatched  ids in both whose ledger user or prize differ from the grant's
//	repaired    missing grants re-delivered by -repair (the backend confirmed)
package reconcile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/deliver"
	"github.com/floodgate/floodgate/internal/failpoint"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/journal"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/queue"
)

var gauges = func() map[string]interface{ Set(float64) } {
	m := map[string]interface{ Set(float64) }{}
	for _, n := range []struct{ name, help string }{
		{"accepted", "Distinct grant ids accepted (queue + journal), at the last reconciliation."},
		{"delivered", "Accepted grant ids found in the delivery ledgers, at the last reconciliation."},
		{"missing", "Accepted grants already acknowledged or parked by the deliverers but absent from the ledgers, at the last reconciliation."},
		{"duplicates", "Ledger lines that repeat a delivered grant, at the last reconciliation."},
		{"orphans", "Ledger lines of grants never accepted, at the last reconciliation."},
		{"mismatched", "Grants whose ledger user/prize differ from what was accepted, at the last reconciliation."},
	} {
		m[n.name] = metrics.NewGauge("reconcile_"+n.name, n.help)
	}
	return m
}()

// Options configures Run.
type Options struct {
	Client *queue.Client
	Config *config.Config
	// Routes limits reconciliation to these async routes (default: every async route).
	Routes []string
	// JournalDir is the local journal read beside the queue (default Config.JournalDir();
	// a directory that does not exist is an empty journal).
	JournalDir string
	// Since and Until bound the window by acceptance time (zero: unbounded).
	Since, Until time.Time
	// LedgerURL replaces every route's ledger (default http://<first pool address>/grants).
	LedgerURL string
	// SettledOnly counts as missing only grants the consumer acknowledged or parked.
	SettledOnly bool
	// Repair re-delivers the missing at Rate grants/s (0: the route's deliver rate).
	Repair bool
	Rate   float64
	Logger *zap.Logger
	// HTTP fetches the ledgers (default: a client with a 60 s timeout).
	HTTP *http.Client
}

// Result is what reconciliation found. The JSON field order is the one of the -json line.
type Result struct {
	Accepted   int `json:"accepted"`
	Delivered  int `json:"delivered"`
	Missing    int `json:"missing"`
	Duplicates int `json:"duplicates"`
	Orphans    int `json:"orphans"`
	Mismatched int `json:"mismatched"`
	Repaired   int `json:"repaired"`

	// Examples of each problem (at most MaxExamples ids each).
	MissingIDs    []string `json:"-"`
	DuplicateIDs  []string `json:"-"`
	OrphanIDs     []string `json:"-"`
	MismatchedIDs []string `json:"-"`
	// RepairFailed are missing grants the backend did not confirm on repair.
	RepairFailed int `json:"-"`
	// Unsettled are accepted, undelivered grants still in the deliverers' backlog
	// (SettledOnly) or in the journal, not counted as missing.
	Unsettled int `json:"-"`
	// Journal is what reading the local journal found (damage, torn tail).
	Journal     journal.Report `json:"-"`
	JournalRead bool           `json:"-"`
	Ledgers     []string       `json:"-"`
}

// MaxExamples bounds the ids Result keeps per problem.
const MaxExamples = 20

// JSON is the one-line summary, exactly
// {"accepted":N,"delivered":N,"missing":N,"duplicates":N,"orphans":N,"mismatched":N,"repaired":N}.
func (r *Result) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// Clean reports whether nothing is left unresolved: every missing grant repaired, no
// duplicate, orphan or mismatch.
func (r *Result) Clean() bool {
	return r.Missing == r.Repaired && r.Duplicates == 0 && r.Orphans == 0 && r.Mismatched == 0
}

// Export sets the floodgate_reconcile_* gauges.
func Export(r *Result) {
	gauges["accepted"].Set(float64(r.Accepted))
	gauges["delivered"].Set(float64(r.Delivered))
	gauges["missing"].Set(float64(r.Missing - r.Repaired))
	gauges["duplicates"].Set(float64(r.Duplicates))
	gauges["orphans"].Set(float64(r.Orphans))
	gauges["mismatched"].Set(float64(r.Mismatched))
}

// accepted is one accepted grant id, as reconciliation keeps it (the record itself is
// read again from the queue or journal only to repair it).
type accepted struct {
	route, user, prize string
	at                 int64  // accepted, unix ns
	seq                uint64 // first stream sequence (0: journal only)
	settled            bool
	payload            []byte // journal-only grants
}

// LedgerGrant is one line of a delivery backend's ledger (GET /grants).
type LedgerGrant struct {
	ID    string    `json:"id"`
	User  string    `json:"user"`
	Prize string    `json:"prize"`
	Time  time.Time `json:"time"`
}

// Run reconciles once.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 60 * time.Second}
	}
	cfg := o.Config
	routes := o.Routes
	if len(routes) == 0 {
		for name, r := range cfg.Routes {
			if r.Async != nil {
				routes = append(routes, name)
			}
		}
	}
	sort.Strings(routes)
	inScope := map[string]bool{}
	routeNames := map[string]string{} // one string per route, not one per grant
	for _, name := range routes {
		routeNames[name] = name
		r := cfg.Routes[name]
		if r == nil || r.Async == nil {
			return nil, fmt.Errorf("route %q is not an async route of the configuration", name)
		}
		inScope[name] = true
	}
	res := &Result{}
	start := time.Now()

	// 1. The ack floors (before anything is read: a grant acknowledged before this is in
	// the ledger that is fetched after it).
	floors := map[string]uint64{}
	if o.SettledOnly {
		for _, name := range routes {
			b, err := o.Client.RouteBacklog(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("route %s: reading its consumer: %w", name, err)
			}
			floors[name] = b.AckFloor
		}
	}
	acc := map[string]*accepted{}
	inWindow := func(at int64) bool {
		return (o.Since.IsZero() || at >= o.Since.UnixNano()) && (o.Until.IsZero() || at <= o.Until.UnixNano())
	}
	var oldest int64
	add := func(rec *grant.Record, seq uint64, payload []byte) {
		if !inScope[rec.Route] || !inWindow(rec.Accepted) {
			return
		}
		if oldest == 0 || rec.Accepted < oldest {
			oldest = rec.Accepted
		}
		a := acc[rec.ID]
		if a == nil {
			a = &accepted{route: routeNames[rec.Route], user: rec.Field("user"), prize: rec.Field("prize"), at: rec.Accepted}
			acc[rec.ID] = a
		}
		if seq > 0 {
			if a.seq == 0 {
				a.seq, a.payload = seq, nil
			}
			if !o.SettledOnly || seq <= floors[rec.Route] {
				a.settled = true
			}
		} else {
			if a.seq == 0 && a.payload == nil {
				a.payload = payload
			}
			if !o.SettledOnly {
				a.settled = true // not yet in the queue, so no deliverer will get it before replay
			}
		}
	}

	// 2. The queue.
	var since time.Time
	if !o.Since.IsZero() {
		since = o.Since.Add(-time.Minute) // stream time is a little after acceptance
	}
	undecodable := 0
	for _, name := range routes {
		err := o.Client.Scan(ctx, queue.Subject(name), since, func(m queue.Message) error {
			rec, err := grant.Decode(m.Data)
			if err != nil {
				undecodable++
				return nil
			}
			add(rec, m.Seq, nil)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading the queue (route %s): %w", name, err)
		}
	}
	if undecodable > 0 {
		o.Logger.Warn("undecodable messages in the grants stream (not counted)", zap.Int("messages", undecodable))
	}

	// 3. The local journal (grants not yet replayed into the queue).
	jdir := o.JournalDir
	if jdir == "" {
		jdir = cfg.JournalDir()
	}
	if _, err := os.Stat(jdir); err == nil {
		entries, rep, err := journal.ReadDir(jdir)
		if err != nil {
			return nil, fmt.Errorf("reading the journal %s: %w", jdir, err)
		}
		res.Journal, res.JournalRead = rep, true
		for _, e := range entries {
			rec, err := grant.Decode(e.Payload)
			if err != nil {
				undecodable++
				continue
			}
			add(rec, 0, e.Payload)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("journal %s: %w", jdir, err)
	}

	// 4. The ledgers.
	urls := map[string]bool{}
	for _, name := range routes {
		u := o.LedgerURL
		if u == "" {
			t, ok := deliver.TargetOf(cfg, name)
			if !ok {
				return nil, fmt.Errorf("route %s: its pool has no address to read the ledger from (use -ledger)", name)
			}
			u = "http://" + t.Addrs[0] + "/grants"
		}
		urls[u] = true
	}
	var ledger []LedgerGrant
	for u := range urls {
		gs, err := FetchLedger(ctx, o.HTTP, u)
		if err != nil {
			return nil, err
		}
		ledger = append(ledger, gs...)
		res.Ledgers = append(res.Ledgers, u)
	}
	sort.Strings(res.Ledgers)
	sort.SliceStable(ledger, func(i, j int) bool { return ledger[i].Time.Before(ledger[j].Time) })

	// 5. Compare.
	res.Accepted = len(acc)
	seen := map[string]int{}
	type pair struct{ user, prize string }
	acceptedPairs := map[pair]int{}
	for _, a := range acc {
		acceptedPairs[pair{a.user, a.prize}]++
	}
	ledgerPairs := map[pair]int{}
	var candidates []LedgerGrant
	lo := time.Unix(0, oldest)
	if !o.Since.IsZero() {
		lo = o.Since
	}
	for _, g := range ledger {
		seen[g.ID]++
		if seen[g.ID] > 1 {
			res.Duplicates++
			res.DuplicateIDs = example(res.DuplicateIDs, g.ID)
			continue
		}
		ledgerPairs[pair{g.User, g.Prize}]++
		if a := acc[g.ID]; a != nil {
			res.Delivered++
			if g.User != a.user || g.Prize != a.prize {
				res.Mismatched++
				res.MismatchedIDs = example(res.MismatchedIDs, g.ID)
			}
			continue
		}
		if oldest == 0 && o.Since.IsZero() {
			candidates = append(candidates, g) // nothing accepted: every ledger line is an orphan
			continue
		}
		if g.Time.Before(lo) || g.Time.After(start) {
			continue // outside the window
		}
		candidates = append(candidates, g)
	}
	for _, g := range candidates {
		p := pair{g.User, g.Prize}
		if acceptedPairs[p] > 0 && ledgerPairs[p] > acceptedPairs[p] {
			ledgerPairs[p]-- // this line is the excess: the same grant under another id
			res.Duplicates++
			res.DuplicateIDs = example(res.DuplicateIDs, g.ID)
			continue
		}
		res.Orphans++
		res.OrphanIDs = example(res.OrphanIDs, g.ID)
	}
	var missing []string
	for id, a := range acc {
		if seen[id] > 0 {
			continue
		}
		if !a.settled {
			res.Unsettled++
			continue
		}
		missing = append(missing, id)
	}
	sort.Slice(missing, func(i, j int) bool {
		a, b := acc[missing[i]], acc[missing[j]]
		if a.at != b.at {
			return a.at < b.at
		}
		return missing[i] < missing[j]
	})
	res.Missing = len(missing)
	for _, id := range missing {
		res.MissingIDs = example(res.MissingIDs, id)
	}
	if !o.Repair || len(missing) == 0 {
		return res, nil
	}

	// 6. Repair: the same call as the deliverer's, with the grant id as idempotency key.
	caller := deliver.NewCaller()
	paces := map[string]*pace{}
	for _, id := range missing {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		a := acc[id]
		rec, err := loadRecord(ctx, o.Client, a)
		if err != nil {
			res.RepairFailed++
			o.Logger.Warn("repair: grant not readable", zap.String("grant_id", id), zap.Error(err))
			continue
		}
		t, ok := deliver.TargetOf(cfg, a.route)
		if !ok {
			res.RepairFailed++
			continue
		}
		p := paces[a.route]
		if p == nil {
			rate := o.Rate
			if rate <= 0 {
				rate = cfg.Routes[a.route].Async.Deliver.Rate
			}
			p = &pace{interval: time.Duration(float64(time.Second) / rate)}
			paces[a.route] = p
		}
		p.wait()
		out := caller.Call(t, rec)
		if out.Class != deliver.Delivered {
			res.RepairFailed++
			o.Logger.Warn("repair: not delivered", zap.String("grant_id", id), zap.Stringer("outcome", out))
			continue
		}
		res.Repaired++
		failpoint.Hit("reconcile.mid_repair")
	}
	return res, nil
}

func loadRecord(ctx context.Context, c *queue.Client, a *accepted) (*grant.Record, error) {
	if a.seq == 0 {
		return grant.Decode(a.payload)
	}
	s, err := c.JS.Stream(ctx, c.StreamName())
	if err != nil {
		return nil, err
	}
	m, err := s.GetMsg(ctx, a.seq)
	if err != nil {
		return nil, err
	}
	return grant.Decode(m.Data)
}

type pace struct {
	interval time.Duration
	next     time.Time
}

func (p *pace) wait() {
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	time.Sleep(p.next.Sub(now))
	p.next = p.next.Add(p.interval)
}

func example(ids []string, id string) []string {
	if len(ids) < MaxExamples {
		ids = append(ids, id)
	}
	return ids
}

// FetchLedger reads a delivery backend's ledger: GET url, one JSON grant per line.
func FetchLedger(ctx context.Context, hc *http.Client, url string) ([]LedgerGrant, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("ledger %s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var out []LedgerGrant
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var g LedgerGrant
		if err := json.Unmarshal(b, &g); err != nil || g.ID == "" {
			return nil, fmt.Errorf("ledger %s: line %d is not a grant: %.100q", url, line, b)
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ledger %s: %w", url, err)
	}
	return out, nil
}
