package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/bench/profile"
	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
)

// TestAsyncAcceptSpeed is the speed drill of async routes (`make bench-async`; skipped
// unless FLOODGATE_DRILL=async): on one machine, a real queue node (sync always), a real
// delivery backend and a real gateway, it offers open-loop load to
//   - the async route (202 once the grant is stored in the queue),
//   - the same request proxied synchronously to the delivery backend (200 once its
//     ledger has fsynced it: the same durability, paid per request by the backend),
//   - and, for reference, a plain JetStream publisher in this process (sync always),
//     one message per acknowledgement and in atomic batches,
//
// and prints the figures and the ratio lines that bench/RESULTS.md records.
func TestAsyncAcceptSpeed(t *testing.T) {
	if os.Getenv("FLOODGATE_DRILL") != "async" {
		t.Skip("speed drill: run with `make bench-async` (FLOODGATE_DRILL=async)")
	}
	itest.RequireIntegration(t)
	qaddr := itest.FreeAddr(t)
	qdir := t.TempDir()
	qp := itest.Start(t, "queue", "queue", "-listen", qaddr, "-data", qdir, "-name", "bench")
	itest.WaitFor(t, "the queue node", 30*time.Second, func() bool { return strings.Contains(qp.Output(), "queue") && tcpUp(qaddr) })
	delivery, _ := itest.Backend(t, "delivery", "-ledger", filepath.Join(t.TempDir(), "grants.jsonl"))
	cfg := fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
queue: {url: "nats://%s", journal: {dir: %q}}
pools:
  delivery: {addrs: [%q], max_conns: 512}
routes:
  grant:
    path: /grant
    pool: delivery
    core: true
    async: {required: [user, prize], deliver: {rate: 500}}
`, qaddr, t.TempDir(), delivery)
	g := itest.StartGateway(t, cfg)
	// the same route proxied synchronously, on a second gateway (the backend serves /grant)
	gsync := itest.StartGateway(t, fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
pools:
  delivery: {addrs: [%q], max_conns: 512}
routes:
  grant: {path: /grant, pool: delivery, core: true}
`, delivery))

	type row struct {
		name           string
		offered        float64
		ok             int64
		perSec         float64
		p50, p99, p999 time.Duration
		other          int64
	}
	var rows []row
	run := func(name, path, okVerdict string, rate float64, d time.Duration) row {
		target, idHeader := g.Addr, "Idempotency-Key"
		if name == "sync" {
			target, path, idHeader = gsync.Addr, "/grant", "X-Grant-Id" // the backend's own idempotency key
		}
		src := fmt.Sprintf(`
name: %s
rate: %g
timeout: 2s
users: {size: 1000000, first: 10001, distribution: uniform, param: {query: uin}}
routes:
  - name: %s
    method: POST
    path: %s
    extra_user_param: {query: user}
    id_param: {header: %s}
    body: prize=red
    headers: {Content-Type: application/x-www-form-urlencoded}
stages:
  - hold: {rate: 1x, duration: %s}
`, name, rate, name, path, idHeader, d)
		p, err := profile.Parse(name+".yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		res, err := loadgen.Run(ctx, p, loadgen.Options{Target: target, Conns: 512, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range res.Warnings() {
			t.Logf("%s at %g/s: generator: %s", name, rate, w)
		}
		okN := res.Count(name, okVerdict)
		h := res.Route(name).Verdict(okVerdict)
		r := row{name: name, offered: rate, ok: okN, perSec: float64(okN) / d.Seconds(), other: res.Count(name, "") - okN}
		total := int64(0)
		for _, rr := range res.Routes {
			for c := loadgen.Class(0); c < loadgen.NumClasses; c++ {
				total += rr.ClassCount(c)
			}
		}
		r.other = total - okN
		if h != nil && h.Latency != nil {
			r.p50 = time.Duration(h.Latency.ValueAtQuantile(50)) * time.Microsecond
			r.p99 = time.Duration(h.Latency.ValueAtQuantile(99)) * time.Microsecond
			r.p999 = time.Duration(h.Latency.ValueAtQuantile(99.9)) * time.Microsecond
		}
		rows = append(rows, r)
		return r
	}
	d := 10 * time.Second
	run("grant", "/grant", loadgen.VerdictAccepted, 5000, d)
	asyncMax := run("grant", "/grant", loadgen.VerdictAccepted, 15000, d)
	run("sync", "/grant", loadgen.VerdictAdmitted, 5000, d)
	syncMax := run("sync", "/grant", loadgen.VerdictAdmitted, 15000, d)

	// plain JetStream publishers, in this process, against the same node
	c, err := queue.Connect(queue.Options{URLs: "nats://" + qaddr, Stream: queue.StreamConfig{Name: "FLOODGATE_GRANTS"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 180) // about the size of a demo grant record
	single := publishRate(t, c, payload, 1, 5*time.Second)
	batched := publishRate(t, c, payload, 256, 5*time.Second)

	t.Logf("async accept speed (same machine: queue node, delivery backend, gateway, load generator; 2 cores)")
	t.Logf("%-34s %9s %10s %9s %9s %9s %7s", "PATH", "OFFERED/s", "OK/s", "P50", "P99", "P99.9", "OTHER")
	for _, r := range rows {
		label := "async accept (202, queue)"
		if r.name == "sync" {
			label = "sync proxy (200, backend ledger)"
		}
		t.Logf("%-34s %9.0f %10.0f %9s %9s %9s %7d", label, r.offered, r.perSec, r.p50, r.p99, r.p999, r.other)
	}
	t.Logf("%-34s %9s %10.0f", "jetstream publish, 1 per ack", "-", single)
	t.Logf("%-34s %9s %10.0f", "jetstream atomic batches of 256", "-", batched)
	fmt.Printf("ratio async-accept/sync-proxy = %.2f\n", asyncMax.perSec/syncMax.perSec)
	fmt.Printf("ratio async-accept/jetstream-single = %.2f\n", asyncMax.perSec/single)
	fmt.Printf("ratio async-accept/jetstream-batch = %.2f\n", asyncMax.perSec/batched)
}

func tcpUp(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// publishRate publishes payload with sync-always acknowledgements for d: one message
// per acknowledgement (batch 1, 64 publishers) or atomic batches of batch messages
// (4 publishers); it returns messages per second.
func publishRate(t *testing.T, c *queue.Client, payload []byte, batch int, d time.Duration) float64 {
	t.Helper()
	workers := 4
	if batch == 1 {
		workers = 64
	}
	var mu sync.Mutex
	n := 0
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	msgs := make([][]byte, batch)
	for i := range msgs {
		msgs[i] = payload
	}
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.PublishBatch(ctx, queue.Subject("bench"), msgs)
				cancel()
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				mu.Lock()
				n += batch
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
