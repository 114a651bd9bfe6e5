package deliver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
	"github.com/floodgate/floodgate/internal/reconcile"
)

// env is one queue node (or cluster), one real delivery backend and a configuration
// file with an async route "grant" in front of it.
type env struct {
	t          *testing.T
	queueURL   string
	replicas   int
	backend    string // host:port of the delivery backend
	ledgerPath string
	cfgPath    string
	client     *queue.Client
	next       int // key counter for grants
}

const envConfig = `
server: {listen: "127.0.0.1:1"}
admin: {listen: "127.0.0.1:1"}
queue:
  url: "{{QUEUE}}"
  stream: GRANTS
  replicas: {{REPLICAS}}
  journal: {dir: "{{JOURNAL}}"}
pools:
  delivery: {addrs: ["{{BACKEND}}"], max_conns: 64}
routes:
  grant:
    path: /grant
    pool: delivery
    core: true
    timeout: 2s
    async:
      deliver:
        rate: {{RATE}}
        concurrency: {{CONC}}
        paused: {{PAUSED}}
        timeout: 1s
        ack_wait: 2s
        max_attempts: {{ATTEMPTS}}
        backoff: [{{BACKOFF}}]
`

type envOpts struct {
	rate     float64
	conc     int
	paused   bool
	attempts int
	backoff  string
	backend  string // "" = start a real delivery backend
	// backendArgs are extra flags for the delivery backend started (e.g. -error-rate 1)
	backendArgs []string
	queueURL    string // "" = start a queue node
	replicas    int
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	itest.RequireIntegration(t)
	e := &env{t: t, replicas: max(o.replicas, 1)}
	if o.queueURL == "" {
		e.queueURL = itest.StartQueue(t).URL()
	} else {
		e.queueURL = o.queueURL
	}
	if o.backend == "" {
		e.ledgerPath = filepath.Join(t.TempDir(), "ledger.jsonl")
		e.backend, _ = itest.Backend(t, "delivery", append([]string{"-ledger", e.ledgerPath}, o.backendArgs...)...)
	} else {
		e.backend = o.backend
	}
	e.cfgPath = filepath.Join(t.TempDir(), "gw.yaml")
	e.writeConfig(o)
	e.client = itest.QueueClient(t, e.queueURL, "GRANTS", e.replicas)
	return e
}

func (e *env) writeConfig(o envOpts) {
	e.t.Helper()
	if o.conc == 0 {
		o.conc = 16
	}
	if o.attempts == 0 {
		o.attempts = 5
	}
	if o.backoff == "" {
		o.backoff = "100ms"
	}
	r := strings.NewReplacer("{{QUEUE}}", e.queueURL, "{{REPLICAS}}", fmt.Sprint(e.replicas), "{{BACKEND}}", e.backend,
		"{{RATE}}", fmt.Sprint(o.rate), "{{CONC}}", fmt.Sprint(o.conc), "{{PAUSED}}", fmt.Sprint(o.paused),
		"{{ATTEMPTS}}", fmt.Sprint(o.attempts), "{{BACKOFF}}", o.backoff, "{{JOURNAL}}", filepath.Join(filepath.Dir(e.cfgPath), "journal"))
	if err := os.WriteFile(e.cfgPath, []byte(r.Replace(envConfig)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// record makes the grant for key k (user and prize derived from it).
func record(k string) *grant.Record {
	return &grant.Record{ID: grant.ID("grant", k), Route: "grant", Key: k, Accepted: time.Now().UnixNano(), Gateway: "test",
		Method: "POST", Path: "/grant", Query: "user=u-" + k + "&prize=p-" + k}
}

// publish publishes n new grants and returns their ids.
func (e *env) publish(n int) []string {
	e.t.Helper()
	var ids []string
	for n > 0 {
		b := min(n, 500)
		batch := make([][]byte, b)
		for i := range batch {
			e.next++
			r := record(fmt.Sprintf("k%06d", e.next))
			ids = append(ids, r.ID)
			batch[i] = r.AppendBinary(nil)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := e.client.PublishBatch(ctx, queue.Subject("grant"), batch)
		cancel()
		if err != nil {
			e.t.Fatalf("publish: %v", err)
		}
		n -= b
	}
	return ids
}

// ledger reads the delivery backend's ledger.
func (e *env) ledger() []reconcile.LedgerGrant {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := reconcile.FetchLedger(ctx, http.DefaultClient, "http://"+e.backend+"/grants")
	if err != nil {
		e.t.Fatal(err)
	}
	return gs
}

// deliverer is a `floodgate deliver` process.
type deliverer struct {
	admin string
	proc  *itest.Proc
}

func (e *env) startDeliverer(name string, envv ...string) *deliverer {
	e.t.Helper()
	return e.startDelivererArgs(name, []string{"-reconcile-every", "0"}, envv...)
}

func (e *env) startDelivererArgs(name string, args []string, envv ...string) *deliverer {
	e.t.Helper()
	d := &deliverer{admin: itest.FreeAddr(e.t)}
	cmd := execCmd(e.t, append([]string{"deliver", "-config", e.cfgPath, "-admin", d.admin, "-id", name, "-log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), envv...)
	d.proc = itest.StartCmd(e.t, "deliver-"+name, cmd)
	if len(envv) == 0 {
		itest.WaitHTTP(e.t, "http://"+d.admin+"/healthz", 30*time.Second, d.proc)
	}
	return d
}

type routeStatus struct {
	Route      string  `json:"route"`
	Paused     bool    `json:"paused"`
	RateShare  float64 `json:"rate_share"`
	InFlight   int64   `json:"in_flight"`
	Conc       int     `json:"concurrency"`
	Delivered  uint64  `json:"delivered"`
	Duplicates uint64  `json:"duplicates"`
	Retries    uint64  `json:"retries"`
	Parked     uint64  `json:"parked"`
	Held       int64   `json:"held"`
	Backlog    struct {
		Pending    uint64 `json:"pending"`
		AckPending int    `json:"ack_pending"`
	} `json:"backlog"`
}

type status struct {
	Deliverer struct {
		Live   int           `json:"deliverers_live"`
		Routes []routeStatus `json:"routes"`
	} `json:"deliverer"`
	Generation uint64 `json:"generation"`
}

func (d *deliverer) status(t *testing.T) (status, routeStatus) {
	t.Helper()
	var st status
	resp, err := http.Get("http://" + d.admin + "/status")
	if err != nil {
		return st, routeStatus{}
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, r := range st.Deliverer.Routes {
		if r.Route == "grant" {
			return st, r
		}
	}
	return st, routeStatus{}
}

// metric returns the value of one sample of the deliverer's /metrics (-1: absent).
func (d *deliverer) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	_, body, _ := itest.Get(t, "http://"+d.admin+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(line, k+`="`+v+`"`) {
				ok = false
			}
		}
		rest := strings.TrimPrefix(line, name)
		if ok && (rest[0] == ' ' || rest[0] == '{') {
			var f float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &f)
			return f
		}
	}
	return -1
}

// reconcileJSON runs `floodgate reconcile -json` with extra flags and returns its last
// line and exit code.
func (e *env) reconcileJSON(extra ...string) (string, int, string) {
	e.t.Helper()
	return runReconcile(e.t, nil, append([]string{"-config", e.cfgPath, "-json"}, extra...)...)
}

// runReconcile runs `floodgate reconcile args` (with extra environment) and returns the
// last line of its standard output, its exit code and everything it printed.
func runReconcile(t *testing.T, envv []string, args ...string) (string, int, string) {
	t.Helper()
	cmd := execCmd(t, append([]string{"reconcile"}, args...)...)
	cmd.Env = append(os.Environ(), envv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		if !ee.Exited() {
			code = -1 // killed
		}
	} else if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], code, stdout.String() + stderr.String()
}

// backendPost records a grant in the backend directly (to plant conflicts).
func backendPost(t *testing.T, addr, id, user, prize string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/grant?user="+url.QueryEscape(user)+"&prize="+url.QueryEscape(prize), nil)
	req.Header.Set("X-Grant-Id", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func execCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(itest.Binary(t), args...)
}

func idOf(t *testing.T, b []byte) string {
	t.Helper()
	r, err := grant.Decode(b)
	if err != nil {
		t.Fatalf("a stream message is not a grant: %v", err)
	}
	return r.ID
}
