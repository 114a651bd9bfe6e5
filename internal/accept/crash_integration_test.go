package accept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
)

// The gateway side of "kill -9 at every step" (RELIABILITY.md, Delivery): a gateway is
// killed with SIGKILL at a failpoint while clients post grants; it is restarted without
// the failpoint, replays its journal, and then every grant that was answered 202 must be
// in the queue (0 lost), and every grant in the queue must be one a client sent (none
// invented). FLOODGATE_CRASH_ROUNDS sets the rounds per failpoint (default 2; `make
// drill-crash` runs 100).

const crashConfig = `
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
queue:
  url: nats://QADDR
  stream: CRASH
  publish_timeout: 1s
  max_batch: 64
  journal: {dir: JDIR}
pools:
  d: {addrs: ["127.0.0.1:9"]}
routes:
  grant:
    path: /grant
    pool: d
    core: true
    async: {deliver: {rate: 100}}
`

func crashRounds() int {
	if n, err := strconv.Atoi(os.Getenv("FLOODGATE_CRASH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 2
}

type crashRig struct {
	t     *testing.T
	qaddr string
	qdir  string
	node  *queue.Server
	gw    *itest.Gateway
	sent  map[string]bool // grant ids of every request sent
	acked map[string]bool // grant ids answered 202
	mu    sync.Mutex
}

func (r *crashRig) startQueue() {
	if r.node != nil {
		return
	}
	s, err := queue.StartServer(queue.ServerOptions{Name: "crash", Listen: r.qaddr, DataDir: r.qdir})
	if err != nil {
		r.t.Error(err)
		return
	}
	r.node = s
	// create the stream now, so that the gateway's first batch does not race its creation
	c, err := queue.Connect(queue.Options{URLs: s.ClientURL(), Stream: queue.StreamConfig{Name: "CRASH", Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 30}})
	if err != nil {
		r.t.Error(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !c.Connected() && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.EnsureStream(ctx); err != nil {
		r.t.Error(err)
	}
}

func (r *crashRig) stopQueue() {
	if r.node != nil {
		r.node.Shutdown()
		r.node = nil
	}
}

// post sends grants from workers goroutines until the gateway dies or limit requests
// were sent; it returns how many were answered 202.
func (r *crashRig) post(round, workers, limit int, during func(sent int)) int {
	var wg sync.WaitGroup
	var n, acked int
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				r.mu.Lock()
				if n >= limit || r.gw.Proc.Exited() {
					r.mu.Unlock()
					return
				}
				n++
				if during != nil {
					during(n)
				}
				key := fmt.Sprintf("r%d-w%d-%d", round, w, i)
				id := grant.ID("grant", key)
				r.sent[id] = true
				r.mu.Unlock()
				req, _ := http.NewRequest("POST", r.gw.URL("/grant?user=1&prize=red"), nil)
				req.Header.Set("Idempotency-Key", key)
				resp, err := client.Do(req)
				if err != nil {
					continue // the gateway died: no answer, nothing acknowledged
				}
				var b struct {
					GrantID string `json:"grant_id"`
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 202 {
					if err := json.Unmarshal(body, &b); err != nil || b.GrantID != id {
						r.t.Errorf("202 with body %q, want grant id %s", body, id)
					}
					r.mu.Lock()
					r.acked[id] = true
					acked++
					r.mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	return acked
}

// journalPending reads the gateway's /async journal_pending.
func (r *crashRig) journalPending() int64 {
	resp, err := http.Get(r.gw.AdminURL("/async"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		JournalPending int64 `json:"journal_pending"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return -1
	}
	return st.JournalPending
}

// verify checks the queue against what was sent and acknowledged.
func (r *crashRig) verify(fp string) {
	c, err := queue.Connect(queue.Options{URLs: "nats://" + r.qaddr, Stream: queue.StreamConfig{Name: "CRASH"}})
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	itest.WaitFor(r.t, "queue client connected", 30*time.Second, c.Connected)
	inQueue := map[string]bool{}
	err = c.Scan(ctx, queue.SubjectPrefix+">", time.Time{}, func(m queue.Message) error {
		g, err := grant.Decode(m.Data)
		if err != nil {
			return fmt.Errorf("message %d: %w", m.Seq, err)
		}
		inQueue[g.ID] = true
		return nil
	})
	if err != nil {
		r.t.Fatalf("%s: scanning the queue: %v", fp, err)
	}
	lost, invented := 0, 0
	for id := range r.acked {
		if !inQueue[id] {
			lost++
		}
	}
	for id := range inQueue {
		if !r.sent[id] {
			invented++
		}
	}
	r.t.Logf("%s: sent %d, acknowledged %d, in the queue %d (distinct ids): lost %d, invented %d",
		fp, len(r.sent), len(r.acked), len(inQueue), lost, invented)
	if lost != 0 || invented != 0 {
		r.t.Errorf("%s: %d acknowledged grants lost, %d grants invented", fp, lost, invented)
	}
}

func TestGatewayKilledAtEveryStep(t *testing.T) {
	itest.RequireIntegration(t)
	rounds := crashRounds()
	for _, fp := range []struct {
		name       string
		queueFirst bool // the queue is up while the failpoint is armed
		startQueue int  // with queueFirst false: start the queue after this many requests (0: only after the kill)
	}{
		{"gateway.before_publish", true, 0},
		{"gateway.after_publish", true, 0},
		{"journal.mid_write", false, 0},
		{"journal.before_fsync", false, 0},
		{"journal.after_fsync", false, 0},
		{"replay.after_publish", false, 100},
	} {
		t.Run(fp.name, func(t *testing.T) {
			r := &crashRig{t: t, qaddr: itest.FreeAddr(t), qdir: t.TempDir(), sent: map[string]bool{}, acked: map[string]bool{}}
			defer r.stopQueue()
			cfg := strings.NewReplacer("QADDR", r.qaddr, "JDIR", t.TempDir()).Replace(crashConfig)
			// rounds in which the kill came before any 202 prove little: run more, up to
			// three times as many, until some grants were acknowledged
			for round := 0; round < rounds || (len(r.acked) == 0 && round < 3*rounds); round++ {
				if fp.queueFirst {
					r.startQueue()
				} else {
					r.stopQueue()
				}
				hit := 3 + rand.IntN(20)
				if fp.startQueue > 0 {
					// replay publishes max_batch (64) records a batch, and only what was
					// journaled before the queue came up - at least startQueue records,
					// more on a slow machine: hit 3..22 would often be past the last batch
					hit = 1 + rand.IntN(fp.startQueue/64)
				}
				env := []string{"FLOODGATE_FAILPOINT=" + fp.name + "@" + strconv.Itoa(hit)}
				if r.gw == nil {
					r.gw = &itest.Gateway{Addr: itest.FreeAddr(t), Admin: itest.FreeAddr(t), ConfigPath: filepath.Join(t.TempDir(), "gateway.yaml")}
					r.gw.WriteConfig(t, cfg)
				}
				r.gw.Restart(t, env)
				var once sync.Once
				during := func(n int) {
					if fp.startQueue > 0 && n == fp.startQueue {
						once.Do(func() { go r.startQueue() })
					}
				}
				r.post(round, 16, 5000, during)
				deadline := time.Now().Add(60 * time.Second)
				for !r.gw.Proc.Exited() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if !r.gw.Proc.Exited() {
					_, st, _ := itest.Get(t, r.gw.AdminURL("/async"))
					t.Fatalf("round %d: the gateway did not reach %s in 5000 requests; its /async:\n%s", round, fp.name, st)
				}
				if !strings.Contains(r.gw.Proc.Output(), "failpoint "+fp.name) {
					t.Fatalf("round %d: the gateway ended without reaching %s:\n%s", round, fp.name, r.gw.Proc.Output())
				}
				// restart without the failpoint, with the queue up: the journal drains
				r.startQueue()
				r.gw.Restart(t, nil)
				itest.WaitFor(t, "the journal to drain into the queue", 60*time.Second, func() bool { return r.journalPending() == 0 })
				r.gw.Proc.Stop()
			}
			r.verify(fp.name)
			if len(r.acked) == 0 {
				t.Fatalf("no grant was acknowledged in %d rounds: the test proved nothing", rounds)
			}
		})
	}
}
