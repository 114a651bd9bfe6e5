package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
)

// TestBacklogDrill is the seed's "the queue kept a backlog of 12 million" (`make
// drill-backlog`; skipped unless FLOODGATE_DRILL=backlog): a bulk publisher fills the
// queue with FLOODGATE_BACKLOG_N grants (default 10,000,000) in atomic batches, then the
// drill reports bytes per grant on disk and the memory of the queue node, an idle
// gateway and the delivery backend while the queue holds them, then starts a deliverer
// and reports the drain rate and every process's memory while draining, for
// FLOODGATE_DRAIN_FOR (default: until drained).
func TestBacklogDrill(t *testing.T) {
	if os.Getenv("FLOODGATE_DRILL") != "backlog" {
		t.Skip("long drill: run with `make drill-backlog` (FLOODGATE_DRILL=backlog)")
	}
	itest.RequireIntegration(t)
	n := 10_000_000
	if v, err := strconv.Atoi(os.Getenv("FLOODGATE_BACKLOG_N")); err == nil && v > 0 {
		n = v
	}
	var drainFor time.Duration
	if d, err := time.ParseDuration(os.Getenv("FLOODGATE_DRAIN_FOR")); err == nil {
		drainFor = d
	}
	q := itest.StartQueue(t, "-max-store", "50GiB")
	ledger := filepath.Join(t.TempDir(), "grants.jsonl")
	delivery, dproc := itest.Backend(t, "delivery", "-ledger", ledger)
	cfg := fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
queue: {url: %q, max_bytes: 50GiB, journal: {dir: %q}}
pools:
  delivery: {addrs: [%q], max_conns: 256}
routes:
  grant:
    path: /grant
    pool: delivery
    core: true
    async: {deliver: {rate: 100000, concurrency: 128, timeout: 5s, ack_wait: 30s}}
`, q.URL(), t.TempDir(), delivery)
	g := itest.StartGateway(t, cfg)

	c, err := queue.Connect(queue.Options{URLs: q.URL(), Name: "bulk", Stream: queue.StreamConfig{Name: "FLOODGATE_GRANTS", Replicas: 1, MaxAge: 720 * time.Hour, MaxBytes: 50 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	itest.WaitFor(t, "the bulk publisher connected", 30*time.Second, c.Connected)
	if _, err := c.EnsureStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var published atomic.Int64
	var wg sync.WaitGroup
	const batch = 1000
	workers := 4
	per := (n + workers - 1) / workers
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			msgs := make([][]byte, 0, batch)
			for i := w * per; i < min(n, (w+1)*per); i++ {
				r := grant.Record{ID: grant.ID("grant", "bulk-"+strconv.Itoa(i)), Route: "grant", Key: "bulk-" + strconv.Itoa(i),
					Accepted: time.Now().UnixNano(), Gateway: "bulk", Method: "POST", Path: "/grant",
					Query: "user=" + strconv.Itoa(10001+i) + "&prize=red", Headers: []grant.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}}}
				msgs = append(msgs, r.AppendBinary(nil))
				if len(msgs) == batch || i == min(n, (w+1)*per)-1 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := c.PublishBatch(ctx, queue.Subject("grant"), msgs)
					cancel()
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					published.Add(int64(len(msgs)))
					msgs = msgs[:0]
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(30 * time.Second):
			p := published.Load()
			t.Logf("filling: %d grants in %s (%.0f/s), queue node RSS %s", p, time.Since(start).Round(time.Second), float64(p)/time.Since(start).Seconds(), rss(q.Proc.Cmd.Process.Pid))
		}
	}
	fill := time.Since(start)
	if t.Failed() {
		return
	}
	size := dirSize(q.DataDir)
	t.Logf("filled: %d grants in %s (%.0f grants/s, atomic batches of %d, sync always)", n, fill.Round(time.Second), float64(n)/fill.Seconds(), batch)
	t.Logf("on disk: %.1f MiB in the queue's data dir = %.0f bytes per grant (record %d bytes)", float64(size)/(1<<20), float64(size)/float64(n),
		len((&grant.Record{ID: grant.ID("grant", "bulk-1"), Route: "grant", Key: "bulk-1", Gateway: "bulk", Method: "POST", Path: "/grant", Query: "user=10002&prize=red", Headers: []grant.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}}}).AppendBinary(nil)))
	time.Sleep(5 * time.Second)
	t.Logf("holding %d grants: RSS queue node %s, gateway %s, delivery backend %s", n, rss(q.Proc.Cmd.Process.Pid), rss(g.Proc.Cmd.Process.Pid), rss(dproc.Cmd.Process.Pid))

	dl := itest.Start(t, "deliver", "deliver", "-config", g.ConfigPath, "-admin", itest.FreeAddr(t), "-reconcile-every", "0", "-log-level", "warn")
	dstart := time.Now()
	last, lastAt := int64(0), dstart
	for {
		time.Sleep(15 * time.Second)
		got := int64(lines(ledger))
		now := time.Now()
		t.Logf("draining: %d delivered in %s (%.0f/s over the last 15 s); RSS queue %s, deliverer %s, backend %s, gateway %s",
			got, now.Sub(dstart).Round(time.Second), float64(got-last)/now.Sub(lastAt).Seconds(),
			rss(q.Proc.Cmd.Process.Pid), rss(dl.Cmd.Process.Pid), rss(dproc.Cmd.Process.Pid), rss(g.Proc.Cmd.Process.Pid))
		last, lastAt = got, now
		if got >= int64(n) || (drainFor > 0 && now.Sub(dstart) > drainFor) || dl.Exited() {
			t.Logf("drain: %d of %d delivered in %s = %.0f grants/s", got, n, now.Sub(dstart).Round(time.Second), float64(got)/now.Sub(dstart).Seconds())
			break
		}
	}
}

func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "?"
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func lines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
