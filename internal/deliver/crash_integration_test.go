package deliver_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
)

// drillRounds is how many kill -9 rounds a crash test runs: 2 in make test,
// FLOODGATE_CRASH_ROUNDS (make drill-crash) for the long drill.
func drillRounds(t *testing.T) int {
	if v := os.Getenv("FLOODGATE_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FLOODGATE_CRASH_ROUNDS=%q: want a positive number", v)
		}
		return n
	}
	return 2
}

// drain runs a deliverer until every published grant is in the ledger and the consumer
// has nothing left (every grant acknowledged), or nothing moved for 5 s with nothing
// pending (grants whose deliveries ran out are then reconciliation's to repair). It
// returns how many calls the backend answered "duplicate" (grants delivered before a
// kill, handed out again).
func (e *env) drain(t *testing.T, total int) (duplicates uint64) {
	t.Helper()
	d := e.startDeliverer("drain")
	last, since := -1, time.Now()
	itest.WaitFor(t, "the deliverer to drain the queue", 120*time.Second, func() bool {
		n := len(e.ledger())
		_, r := d.status(t)
		if n >= total && r.Backlog.Pending == 0 && r.Backlog.AckPending == 0 && r.InFlight == 0 {
			return true
		}
		if n != last {
			last, since = n, time.Now()
			return false
		}
		return r.Backlog.Pending == 0 && time.Since(since) > 5*time.Second
	})
	_, r := d.status(t)
	d.proc.Stop()
	return r.Duplicates
}

// settle runs reconcile -repair, then reconcile, and requires the second to find every
// accepted grant delivered exactly once.
func (e *env) settle(t *testing.T, total int) {
	t.Helper()
	line, code, out := e.reconcileJSON("-repair")
	// after a node was killed the cluster may still be electing: "no responders" is
	// retried (at most a minute), any other failure is not
	for deadline := time.Now().Add(itest.MinWait); code != 0 && strings.Contains(out, "no responders") && time.Now().Before(deadline); {
		t.Logf("reconcile -repair: the queue is not answering yet (%s); again in 1 s", strings.TrimSpace(out))
		time.Sleep(time.Second)
		line, code, out = e.reconcileJSON("-repair")
	}
	if code != 0 {
		t.Fatalf("reconcile -repair: exit %d: %s\n%s", code, line, out)
	}
	t.Logf("reconcile -repair: %s", line)
	line, code, out = e.reconcileJSON()
	want := fmt.Sprintf(`{"accepted":%d,"delivered":%d,"missing":0,"duplicates":0,"orphans":0,"mismatched":0,"repaired":0}`, total, total)
	if line != want || code != 0 {
		t.Fatalf("after repair: %s (exit %d), want %s (exit 0)\n%s", line, code, want, out)
	}
	if n := len(e.ledger()); n != total {
		t.Fatalf("the ledger holds %d grants, %d were accepted", n, total)
	}
}

// TestDelivererKilled: a deliverer killed (SIGKILL) just before a backend call, or after
// the backend confirmed but before the queue acknowledgement, loses nothing and doubles
// nothing: after a restart and reconcile -repair, every accepted grant is in the
// ledger exactly once.
func TestDelivererKilled(t *testing.T) {
	t.Parallel()
	for _, fp := range []string{"deliver.before_call", "deliver.after_call"} {
		t.Run(fp, func(t *testing.T) {
			e := newEnv(t, envOpts{rate: 2000, conc: 16})
			rounds := drillRounds(t)
			total := 0
			for i := 0; i < rounds; i++ {
				e.publish(40)
				total += 40
				k := 1 + rand.IntN(30)
				d := e.startDeliverer(fmt.Sprintf("r%d", i), "FLOODGATE_FAILPOINT="+fp+"@"+strconv.Itoa(k))
				itest.WaitFor(t, "the failpoint to kill the deliverer", 60*time.Second, d.proc.Exited)
				if !strings.Contains(d.proc.Output(), "failpoint "+fp+": SIGKILL") {
					t.Fatalf("round %d: the deliverer exited without reaching %s:\n%s", i, fp, d.proc.Output())
				}
			}
			dups := e.drain(t, total)
			// killed after the backend confirmed: that grant is handed out again and the
			// backend answers "duplicate" (acknowledged then, not delivered twice)
			if fp == "deliver.after_call" && rounds <= 5 && dups == 0 {
				t.Errorf("no call was answered duplicate after %d kills after the backend call", rounds)
			}
			t.Logf("%s: %d rounds, the drain saw %d duplicates", fp, rounds, dups)
			e.settle(t, total)
		})
	}
}

// TestReconcileKilledMidRepair: reconcile -repair killed after some re-deliveries, then
// run again, converges: every grant delivered once, exit 0, the exact JSON line.
func TestReconcileKilledMidRepair(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{rate: 2000, conc: 16})
	rounds := drillRounds(t)
	total := 5*rounds + 10 // each round repairs at most 5 before its kill: some are left
	e.publish(total)
	line, code, out := e.reconcileJSON()
	if want := fmt.Sprintf(`{"accepted":%d,"delivered":0,"missing":%d,"duplicates":0,"orphans":0,"mismatched":0,"repaired":0}`, total, total); line != want || code != 1 {
		t.Fatalf("before repair: %s (exit %d), want %s (exit 1)\n%s", line, code, want, out)
	}
	for i := 0; i < rounds; i++ {
		before := len(e.ledger())
		k := 1 + rand.IntN(5)
		line, code, out = runReconcile(t, []string{"FLOODGATE_FAILPOINT=reconcile.mid_repair@" + strconv.Itoa(k)}, "-config", e.cfgPath, "-json", "-repair")
		if code != -1 || !strings.Contains(out, "failpoint reconcile.mid_repair: SIGKILL") {
			t.Fatalf("round %d: reconcile was not killed at the failpoint (exit %d):\n%s", i, code, out)
		}
		// killed right after its k-th confirmed repair: exactly k more in the ledger
		if after := len(e.ledger()); after != before+k {
			t.Fatalf("round %d: killed after repair %d, the ledger went from %d to %d", i, k, before, after)
		}
	}
	n := len(e.ledger())
	line, code, out = e.reconcileJSON("-repair")
	if want := fmt.Sprintf(`{"accepted":%d,"delivered":%d,"missing":%d,"duplicates":0,"orphans":0,"mismatched":0,"repaired":%d}`, total, n, total-n, total-n); line != want || code != 0 {
		t.Fatalf("re-run: %s (exit %d), want %s (exit 0)\n%s", line, code, want, out)
	}
	e.settle(t, total)
}

// TestClusterNodeKilled: three `floodgate queue` nodes, an R3 stream; the stream
// leader is killed (SIGKILL) while grants are published and delivered. Every
// acknowledged publish ends up in the ledger (after the drain and reconcile -repair).
func TestClusterNodeKilled(t *testing.T) {
	t.Parallel()
	itest.RequireIntegration(t)
	nodes := itest.StartQueueCluster(t, 3)
	e := newEnv(t, envOpts{rate: 1000, conc: 16, queueURL: itest.ClusterURL(nodes), replicas: 3})
	d := e.startDeliverer("a")

	var mu sync.Mutex
	var acked []string
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			var ids []string
			var batch [][]byte
			for i := 0; i < 20; i++ {
				r := record(fmt.Sprintf("c%04d-%02d", k, i))
				ids = append(ids, r.ID)
				batch = append(batch, r.AppendBinary(nil))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := e.client.PublishBatch(ctx, queue.Subject("grant"), batch)
			cancel()
			mu.Lock()
			if err == nil {
				acked = append(acked, ids...)
			} else {
				failed++
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	itest.WaitFor(t, "deliveries under way", 60*time.Second, func() bool { return len(e.ledger()) >= 200 })
	// kill the stream's leader
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := e.client.JS.Stream(ctx, "GRANTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	cancel()
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	var victim *itest.Queue
	for _, q := range nodes {
		if q.Name == info.Cluster.Leader {
			victim = q
		}
	}
	if victim == nil {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	victim.Proc.Kill()
	t.Logf("killed the stream leader %s", victim.Name)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	itest.WaitFor(t, "publishing to resume after the kill", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= before+400
	})
	close(stop)
	wg.Wait()
	t.Logf("%d grants acknowledged, %d batches refused or unanswered around the kill", len(acked), failed)
	d.proc.Stop()

	// Count every stream message once, by id (a batch that failed on the client may
	// still be stored; that is accepted too, and must be delivered as well).
	scan := func() map[string]bool {
		// the cluster may still be electing after the kill: "no responders" and a scan
		// that timed out are retried, any other error is not. One attempt gets 20 s and
		// all of them 3 minutes: a scan started against a node that then lost its
		// leadership waits out its own timeout, and must leave room for the next one (one
		// 60 s attempt used the whole minute once on a loaded machine)
		for deadline := time.Now().Add(3 * itest.MinWait); ; time.Sleep(time.Second) {
			accepted := map[string]bool{}
			sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := e.client.Scan(sctx, queue.Subject("grant"), time.Time{}, func(m queue.Message) error {
				accepted[idOf(t, m.Data)] = true
				return nil
			})
			scancel()
			if err == nil {
				return accepted
			}
			electing := strings.Contains(err.Error(), "no responders") || errors.Is(err, context.DeadlineExceeded)
			if !electing || time.Now().After(deadline) {
				t.Fatal(err)
			}
			t.Logf("scanning the queue: %v; again in 1 s", err)
		}
	}
	accepted := scan()
	for _, id := range acked {
		if !accepted[id] {
			t.Fatalf("acknowledged grant %s is not in the stream after the node was killed", id)
		}
	}
	// A batch whose publish failed on the client around the kill may be committed by the
	// new leader later than the count above: count again after draining, until two counts
	// agree, rather than guess how long that takes.
	for round := 0; ; round++ {
		e.drain(t, len(accepted))
		again := scan()
		if len(again) == len(accepted) {
			break
		}
		if round == 5 {
			t.Fatalf("the stream still grows after 5 drains: %d grants, then %d", len(accepted), len(again))
		}
		t.Logf("%d grants stored after the count (publishes that failed on the client, committed later); draining again", len(again)-len(accepted))
		accepted = again
	}
	e.settle(t, len(accepted))
	inLedger := map[string]bool{}
	for _, g := range e.ledger() {
		inLedger[g.ID] = true
	}
	for _, id := range acked {
		if !inLedger[id] {
			t.Fatalf("acknowledged grant %s was not delivered", id)
		}
	}
}

// TestReconcileUsage: bad flags exit 2 with a message naming the flag; -settled does not
// count the backlog (no deliverer has acknowledged anything yet) as missing.
func TestReconcileUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{rate: 100})
	e.publish(3)
	for _, tc := range []struct {
		desc string
		args []string
		want string
	}{
		{"bad since", []string{"-since", "yesterday"}, "-since"},
		{"negative rate", []string{"-rate", "-1"}, "-rate"},
		{"not an async route", []string{"-route", "lottery"}, "-route"},
		{"bad ledger", []string{"-ledger", "127.0.0.1:1/grants"}, "-ledger"},
		{"positional", []string{"now"}, "now"},
	} {
		_, code, out := runReconcile(t, nil, append([]string{"-config", e.cfgPath}, tc.args...)...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 2 naming %q:\n%s", tc.desc, code, tc.want, out)
		}
	}
	line, code, out := e.reconcileJSON("-settled")
	if want := `{"accepted":3,"delivered":0,"missing":0,"duplicates":0,"orphans":0,"mismatched":0,"repaired":0}`; line != want || code != 0 || !strings.Contains(out, "in backlog") {
		t.Fatalf("-settled: %s (exit %d), want %s (exit 0) and the backlog shown\n%s", line, code, want, out)
	}
}
