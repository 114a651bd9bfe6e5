package itest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	q := &Queue{Name: uniqueName("q"), Addr: FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "queue"), t: t}
	q.Args = append([]string{"queue", "-name", q.Name, "-listen", q.Addr, "-data", q.DataDir, "-log-level", "warn"}, extra...)
	q.start(t, false)
	return q
}

// StartQueueCluster starts n `floodgate queue` nodes forming one cluster on loopback.
func StartQueueCluster(t testing.TB, n int) []*Queue {
	t.Helper()
	qs := make([]*Queue, n)
	for i := range qs {
		qs[i] = &Queue{Name: uniqueName("q" + string(rune('1'+i))), Addr: FreeAddr(t), Cluster: FreeAddr(t), DataDir: filepath.Join(t.TempDir(), "queue"), t: t}
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
		if !waitOurs(t, q) {
			t.Fatalf("queue %s: its address %s was taken by another process meanwhile", q.Name, q.Addr)
		}
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

func (q *Queue) start(t testing.TB, restart bool) {
	for try := 0; ; try++ {
		q.Proc = Start(t, "queue-"+q.Name, q.Args...)
		if waitOurs(t, q) {
			return
		}
		// another process took the free port meanwhile: try another one
		q.Proc.Kill()
		if try == 3 || q.Cluster != "" || restart {
			t.Fatalf("queue %s: its address %s was taken by another process meanwhile", q.Name, q.Addr)
		}
		old := q.Addr
		q.Addr = FreeAddr(t)
		for i, a := range q.Args {
			if a == old {
				q.Args[i] = q.Addr
			}
		}
	}
}

// Restart starts the node again with the same flags and data (after Kill or Stop).
// Its clients stay pointed at its address, so an address taken meanwhile fails the test.
func (q *Queue) Restart(t testing.TB) { q.start(t, true) }

var nameSeq atomic.Int64

// uniqueName makes node names no other test process uses, so that waitOurs can tell our
// node from another process that took the port.
func uniqueName(base string) string {
	return fmt.Sprintf("%s-%d-%d", base, os.Getpid(), nameSeq.Add(1))
}

// waitOurs waits until q's address answers with q's own server name in the NATS INFO
// line (true), or another process holds the address (false).
func waitOurs(t testing.TB, q *Queue) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(q.Proc.Output(), "address already in use") {
			return false
		}
		if q.Proc.Exited() {
			t.Fatalf("%s exited while starting:\n%s", q.Proc.Name, q.Proc.Output())
		}
		c, err := net.DialTimeout("tcp", q.Addr, 200*time.Millisecond)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.Contains(line, `"server_name":"`+q.Name+`"`) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s does not answer as %s within 30s", q.Proc.Name, q.Addr, q.Name)
	return false
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
