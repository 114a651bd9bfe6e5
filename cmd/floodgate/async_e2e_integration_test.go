package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestQueueDownUnderLoad: the whole async path - gateway, queue node, deliverer, delivery
// backend, all real processes - while the queue node is killed (SIGKILL) under load and
// stays down: the gateway keeps answering 202 from its journal, and once the node is
// back everything is replayed and delivered: every acknowledged grant is in the
// backend's ledger exactly once, and reconciliation finds nothing missing, duplicated,
// orphaned or mismatched. FLOODGATE_OUTAGE sets how long the queue stays down (default
// 8s in `make test`; `make drill-outage` runs 3 minutes); FLOODGATE_QUEUE_KILLS kills it
// that many times (`make drill-crash`: 100, with 1 s outages).
func TestQueueDownUnderLoad(t *testing.T) {
	itest.RequireIntegration(t)
	outage := 8 * time.Second
	if d, err := time.ParseDuration(os.Getenv("FLOODGATE_OUTAGE")); err == nil && d > 0 {
		outage = d
	}
	q := itest.StartQueue(t)
	ledger := filepath.Join(t.TempDir(), "grants.jsonl")
	delivery, _ := itest.Backend(t, "delivery", "-ledger", ledger)
	cfg := fmt.Sprintf(`
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
queue: {url: %q, publish_timeout: 300ms, journal: {dir: %q}}
pools:
  delivery: {addrs: [%q]}
routes:
  grant:
    path: /grant
    pool: delivery
    core: true
    async:
      required: [user, prize]
      deliver: {rate: 2000, concurrency: 32, timeout: 2s, ack_wait: 5s, backoff: [200ms, 1s]}
`, q.URL(), t.TempDir(), delivery)
	g := itest.StartGateway(t, cfg)
	dlv := itest.Start(t, "deliver", "deliver", "-config", g.ConfigPath, "-admin", itest.FreeAddr(t), "-reconcile-every", "0", "-log-level", "warn")
	_ = dlv

	var (
		mu                      sync.Mutex
		acked                   = map[string]string{} // grant id -> user
		duringOutage, failedOut atomic.Int64
		down                    atomic.Bool
		other                   = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond) // 8 workers x 50/s = 400 grants/s offered
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				user := fmt.Sprintf("%d", 10000+w*100000+i)
				req, _ := http.NewRequest("POST", g.URL("/grant?user="+user+"&prize=red"), nil)
				req.Header.Set("Idempotency-Key", fmt.Sprintf("w%d-%d", w, i))
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					other["transport: "+err.Error()]++
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 202 {
					if down.Load() {
						failedOut.Add(1)
					}
					mu.Lock()
					other[fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Floodgate-Verdict"))]++
					mu.Unlock()
					continue
				}
				var b struct {
					GrantID string `json:"grant_id"`
				}
				if err := json.Unmarshal(body, &b); err != nil {
					t.Errorf("202 body %q", body)
					continue
				}
				if down.Load() {
					duringOutage.Add(1)
				}
				mu.Lock()
				acked[b.GrantID] = user
				mu.Unlock()
			}
		}(w)
	}
	kills := 1
	if n, err := strconv.Atoi(os.Getenv("FLOODGATE_QUEUE_KILLS")); err == nil && n > 0 {
		kills = n
	}
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond)
		q.Proc.Kill()
		down.Store(true)
		if k == 0 {
			t.Logf("queue node killed (SIGKILL); staying down %s under load", outage)
		}
		time.Sleep(outage)
		down.Store(false)
		q.Restart(t)
	}
	t.Logf("queue node killed %d times, back", kills)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("acknowledged %d grants, %d of them while the queue was down; other answers: %v", len(acked), duringOutage.Load(), other)
	if duringOutage.Load() == 0 {
		t.Fatal("no grant was acknowledged while the queue was down")
	}
	if failedOut.Load() > 0 || len(other) > 0 {
		t.Errorf("answers other than 202: %v", other)
	}

	// every acknowledged grant delivered exactly once
	var inLedger map[string]int
	itest.WaitFor(t, "every acknowledged grant in the ledger", 120*time.Second, func() bool {
		inLedger = readLedger(t, "http://"+delivery+"/grants")
		for id := range acked {
			if inLedger[id] == 0 {
				return false
			}
		}
		return true
	})
	for id, n := range inLedger {
		if n != 1 {
			t.Errorf("grant %s is %d times in the ledger", id, n)
		}
		if _, ok := acked[id]; !ok {
			// sent but answered with a transport error: possible, must be one we sent
			if !strings.HasPrefix(id, "grant-") {
				t.Errorf("ledger holds %s, never sent", id)
			}
		}
	}
	out, code, stderr := runReconcileCmd(t, "-config", g.ConfigPath, "-json")
	t.Logf("reconcile: %s", out)
	var rec map[string]int
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatalf("reconcile output %q (stderr %s): %v", out, stderr, err)
	}
	if code != 0 || rec["missing"] != 0 || rec["duplicates"] != 0 || rec["orphans"] != 0 || rec["mismatched"] != 0 || rec["accepted"] < len(acked) {
		t.Errorf("reconcile exit %d: %v (acknowledged %d)", code, rec, len(acked))
	}
}

// readLedger counts the ledger's grants by id.
func readLedger(t *testing.T, url string) map[string]int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]int{}
	dec := json.NewDecoder(resp.Body)
	for {
		var g struct {
			ID string `json:"id"`
		}
		if err := dec.Decode(&g); err != nil {
			break
		}
		out[g.ID]++
	}
	return out
}

func runReconcileCmd(t *testing.T, args ...string) (string, int, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd := exec.Command(itest.Binary(t), append([]string{"reconcile"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return stdout.String(), code, stderr.String()
}
