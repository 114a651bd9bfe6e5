package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/journal"
	"github.com/floodgate/floodgate/internal/queue"
)

// fakeLedger is a delivery backend's ledger on loopback that can hold what the real one
// cannot (an id twice); POST /grant appends like the real one (one id once).
type fakeLedger struct {
	mu    sync.Mutex
	lines []LedgerGrant
	addr  string
}

func (f *fakeLedger) add(id, user, prize string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, LedgerGrant{ID: id, User: user, Prize: prize, Time: time.Now()})
}

func (f *fakeLedger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/grants":
		for _, g := range f.lines {
			b, _ := json.Marshal(g)
			fmt.Fprintf(w, "%s\n", b)
		}
	case "/grant":
		id, user, prize := r.Header.Get("X-Grant-Id"), r.FormValue("user"), r.FormValue("prize")
		for _, g := range f.lines {
			if g.ID == id {
				if g.User != user || g.Prize != prize {
					w.WriteHeader(409)
					return
				}
				fmt.Fprint(w, `{"ok":true,"duplicate":true}`)
				return
			}
		}
		f.lines = append(f.lines, LedgerGrant{ID: id, User: user, Prize: prize, Time: time.Now()})
		fmt.Fprint(w, `{"ok":true,"duplicate":false}`)
	default:
		w.WriteHeader(404)
	}
}

func startLedger(t *testing.T) *fakeLedger {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLedger{addr: ln.Addr().String()}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

type fixture struct {
	client  *queue.Client
	cfg     *config.Config
	ledger  *fakeLedger
	journal string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := queue.StartServer(queue.ServerOptions{Name: "t", Listen: addr, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	f := &fixture{ledger: startLedger(t), journal: filepath.Join(t.TempDir(), "journal")}
	doc, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`
queue: {url: "%s", stream: G, journal: {dir: "%s"}}
pools: {delivery: {addrs: ["%s"]}}
routes:
  grant: {path: /grant, pool: delivery, core: true, async: {deliver: {rate: 1000}}}
  other: {path: /other, pool: delivery}
`, s.ClientURL(), f.journal, f.ledger.addr)))
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg, err = config.Load(doc, nil, nil); err != nil {
		t.Fatal(err)
	}
	f.client, err = queue.Connect(queue.Options{URLs: s.ClientURL(), Stream: queue.StreamConfig{Name: "G", Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.client.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !f.client.Connected() {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := f.client.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func rec(key string) *grant.Record {
	return &grant.Record{ID: grant.ID("grant", key), Route: "grant", Key: key, Accepted: time.Now().UnixNano(),
		Method: "POST", Path: "/grant", Query: "user=u-" + key + "&prize=p-" + key}
}

func (f *fixture) publish(t *testing.T, rs ...*grant.Record) {
	t.Helper()
	var b [][]byte
	for _, r := range rs {
		b = append(b, r.AppendBinary(nil))
	}
	if err := f.client.PublishBatch(t.Context(), queue.Subject("grant"), b); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) run(t *testing.T, o Options) *Result {
	t.Helper()
	o.Client, o.Config = f.client, f.cfg
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPlantedProblemsAreFound: every planted missing, duplicate, orphan and mismatched
// grant is found, resubmissions and journal copies count once, -repair delivers the
// missing (journal-only ones included) and a second run finds none missing.
func TestPlantedProblemsAreFound(t *testing.T) {
	f := newFixture(t)
	var rs []*grant.Record
	for i := 0; i < 12; i++ {
		rs = append(rs, rec(fmt.Sprintf("k%02d", i)))
	}
	f.publish(t, rs[:10]...)
	f.publish(t, rs[0], rs[1]) // resubmissions: the same ids again
	j, _, err := journal.Open(journal.Options{Dir: f.journal})
	if err != nil {
		t.Fatal(err)
	}
	// rs[10], rs[11] only in the journal; rs[2] in both
	if err := j.Append(rs[10].AppendBinary(nil), rs[11].AppendBinary(nil), rs[2].AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	time.Sleep(10 * time.Millisecond) // ledger times after the oldest acceptance
	// The ledger: rs[0..6] delivered correctly, rs[7] with another prize (mismatched),
	// rs[3] listed twice (duplicate), rs[4]'s user and prize again under another id
	// (duplicate: the same grant under two ids), two ids never accepted (orphans).
	// Missing: rs[8], rs[9] (queue) and rs[10], rs[11] (journal only).
	for _, r := range rs[:7] {
		f.ledger.add(r.ID, r.Field("user"), r.Field("prize"))
	}
	f.ledger.add(rs[7].ID, rs[7].Field("user"), "other-prize")
	f.ledger.add(rs[3].ID, rs[3].Field("user"), rs[3].Field("prize"))
	f.ledger.add("grant-retried-under-a-new-id", rs[4].Field("user"), rs[4].Field("prize"))
	f.ledger.add("grant-never-accepted-1", "u-x", "p-x")
	f.ledger.add("grant-never-accepted-2", "u-y", "p-y")

	res := f.run(t, Options{})
	want := `{"accepted":12,"delivered":8,"missing":4,"duplicates":2,"orphans":2,"mismatched":1,"repaired":0}`
	if res.JSON() != want {
		t.Fatalf("got  %s\nwant %s", res.JSON(), want)
	}
	for _, tc := range []struct {
		desc string
		got  []string
		want []string
	}{
		{"missing", res.MissingIDs, []string{rs[8].ID, rs[9].ID, rs[10].ID, rs[11].ID}},
		{"duplicates", res.DuplicateIDs, []string{rs[3].ID, "grant-retried-under-a-new-id"}},
		{"orphans", res.OrphanIDs, []string{"grant-never-accepted-1", "grant-never-accepted-2"}},
		{"mismatched", res.MismatchedIDs, []string{rs[7].ID}},
	} {
		if strings.Join(tc.got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: got %v, want %v", tc.desc, tc.got, tc.want)
		}
	}
	if res.Clean() {
		t.Error("a result with problems is clean")
	}

	res = f.run(t, Options{Repair: true})
	if res.Missing != 4 || res.Repaired != 4 {
		t.Fatalf("repair: %s", res.JSON())
	}
	res = f.run(t, Options{})
	want = `{"accepted":12,"delivered":12,"missing":0,"duplicates":2,"orphans":2,"mismatched":1,"repaired":0}`
	if res.JSON() != want {
		t.Fatalf("after repair: got %s\nwant %s", res.JSON(), want)
	}
}

// TestSettledOnly: the deliverer's periodic reconciliation counts as missing only what
// the consumer acknowledged or terminated (stream sequence <= ack floor), so its live
// backlog and the journal are not reported.
func TestSettledOnly(t *testing.T) {
	f := newFixture(t)
	var rs []*grant.Record
	for i := 0; i < 10; i++ {
		rs = append(rs, rec(fmt.Sprintf("s%02d", i)))
	}
	f.publish(t, rs...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := f.client.EnsureConsumer(ctx, queue.ConsumerConfig{Route: "grant", AckWait: time.Minute, MaxDeliver: 3, MaxAckPending: 100})
	if err != nil {
		t.Fatal(err)
	}
	// the first 4 are settled: two delivered (in the ledger), two acked without delivery
	// (lost: missing); the other 6 are the backlog
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 4 {
		t.Fatalf("fetched %d", n)
	}
	f.ledger.add(rs[0].ID, rs[0].Field("user"), rs[0].Field("prize"))
	f.ledger.add(rs[1].ID, rs[1].Field("user"), rs[1].Field("prize"))
	res := f.run(t, Options{SettledOnly: true})
	if res.Missing != 2 || res.Unsettled != 6 || res.Accepted != 10 || res.Delivered != 2 {
		t.Fatalf("settled only: %s, unsettled %d; want 2 missing, 6 in the backlog", res.JSON(), res.Unsettled)
	}
	if got := strings.Join(res.MissingIDs, " "); got != rs[2].ID+" "+rs[3].ID {
		t.Fatalf("missing %s, want %s %s", got, rs[2].ID, rs[3].ID)
	}
	res = f.run(t, Options{})
	if res.Missing != 8 {
		t.Fatalf("without SettledOnly every undelivered grant is missing: %s", res.JSON())
	}
}

// TestWindow: Since leaves older grants and older ledger lines out.
func TestWindow(t *testing.T) {
	f := newFixture(t)
	old := rec("old")
	old.Accepted = time.Now().Add(-2 * time.Hour).UnixNano()
	f.publish(t, old, rec("new"))
	f.ledger.add("grant-before-the-window", "u", "p")
	f.ledger.lines[0].Time = time.Now().Add(-3 * time.Hour)
	res := f.run(t, Options{Since: time.Now().Add(-time.Hour)})
	if res.JSON() != `{"accepted":1,"delivered":0,"missing":1,"duplicates":0,"orphans":0,"mismatched":0,"repaired":0}` {
		t.Fatalf("window: %s", res.JSON())
	}
}
