package itest

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/queue"
)

// Queue is a `floodgate queue` process under test.
type Queue struct {
	Name, Addr, Cluster, DataDir string
	Args                         []string
	Proc                         *Proc
	t                            testing.TB
}

// URL is the node's client URL.
func (q *Queue) URL() string { return "nats://" + q.Addr }

// StartQueue starts a standalone `floodgate queue` node on a free port with its data in
// a temporary directory and waits until it accepts connections.
func StartQueue(t testing.TB, extra ...string) *Queue {
	t.Helper()
	q := &Queue{Name: "q", Addr: FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "queue"), t: t}
	q.Args = append([]string{"queue", "-name", q.Name, "-listen", q.Addr, "-data", q.DataDir, "-log-level", "warn"}, extra...)
	q.start(t)
	return q
}

// StartQueueCluster starts n `floodgate queue` nodes forming one cluster on loopback.
func StartQueueCluster(t testing.TB, n int) []*Queue {
	t.Helper()
	qs := make([]*Queue, n)
	for i := range qs {
		qs[i] = &Queue{Name: "q" + string(rune('1'+i)), Addr: FreeAddr(t), Cluster: FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "queue"), t: t}
	}
	for i, q := range qs {
		var routes []string
		for j, o := range qs {
			if j != i {
				routes = append(routes, o.Cluster)
			}
		}
		q.Args = []string{"queue", "-name", q.Name, "-listen", q.Addr, "-data", q.DataDir, "-log-level", "warn",
			"-cluster", q.Cluster, "-cluster-name", "itest", "-routes", strings.Join(routes, ",")}
		q.Proc = Start(t, "queue-"+q.Name, q.Args...)
	}
	for _, q := range qs {
		waitTCP(t, q.Addr, q.Proc)
	}
	return qs
}

// ClusterURL is the comma-separated client URLs of nodes.
func ClusterURL(qs []*Queue) string {
	us := make([]string, len(qs))
	for i, q := range qs {
		us[i] = q.URL()
	}
	return strings.Join(us, ",")
}

func (q *Queue) start(t testing.TB) {
	for try := 0; ; try++ {
		q.Proc = Start(t, "queue-"+q.Name, q.Args...)
		if try < 3 && q.Cluster == "" && !waitTCPOrBusy(t, q.Addr, q.Proc) {
			// another process took the free port meanwhile: try another one
			q.Proc.Kill()
			old := q.Addr
			q.Addr = FreeAddr(t)
			for i, a := range q.Args {
				if a == old {
					q.Args[i] = q.Addr
				}
			}
			continue
		}
		waitTCP(t, q.Addr, q.Proc)
		return
	}
}

// waitTCPOrBusy waits until addr accepts connections (true) or the process reports the
// address in use (false).
func waitTCPOrBusy(t testing.TB, addr string, p *Proc) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		if strings.Contains(p.Output(), "address already in use") {
			return false
		}
		if p.Exited() {
			return true // waitTCP reports it
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Restart starts the node again with the same flags and data (after Kill or Stop).
func (q *Queue) Restart(t testing.TB) { q.start(t) }

func waitTCP(t testing.TB, addr string, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited while waiting for %s:\n%s", p.Name, addr, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s does not accept connections within 30s", p.Name, addr)
}

// QueueClient connects to url with stream settings, waits for the connection and
// ensures the stream (retrying for up to 30 s while a cluster elects its leaders).
func QueueClient(t testing.TB, url, stream string, replicas int) *queue.Client {
	t.Helper()
	c, err := queue.Connect(queue.Options{URLs: url, Name: "itest", Stream: queue.StreamConfig{Name: stream, Replicas: replicas, MaxAge: time.Hour, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var last error
	WaitFor(t, "queue stream "+stream, 30*time.Second, func() bool {
		if !c.Connected() {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, last = c.EnsureStream(ctx)
		return last == nil
	})
	return c
}
