package main

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/queue"
)

// TestQueueCommand: `floodgate queue` serves JetStream with sync always, keeps what it
// acknowledged across a clean restart, and shuts down cleanly on SIGTERM.
func TestQueueCommand(t *testing.T) {
	itest.RequireIntegration(t)
	q := itest.StartQueue(t)
	c := itest.QueueClient(t, q.URL(), "T", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.PublishBatch(ctx, queue.Subject("grant"), [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	q.Proc.Signal(syscall.SIGTERM)
	itest.WaitFor(t, "queue exit on SIGTERM", 30*time.Second, q.Proc.Exited)
	if code := q.Proc.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, q.Proc.Output())
	}
	q.Restart(t)
	n := 0
	itest.WaitFor(t, "the two messages after restart", 30*time.Second, func() bool {
		n = 0
		err := c.Scan(ctx, queue.SubjectPrefix+">", time.Time{}, func(queue.Message) error { n++; return nil })
		return err == nil && n == 2
	})
}

func TestQueueBadFlags(t *testing.T) {
	itest.RequireIntegration(t)
	for _, tc := range []struct {
		desc string
		args []string
		want string
	}{
		{"listen without port", []string{"-listen", "localhost"}, "-listen"},
		{"sync zero", []string{"-sync", "0"}, "-sync"},
		{"sync garbage", []string{"-sync", "sometimes"}, "-sync"},
		{"routes without cluster", []string{"-routes", "127.0.0.1:6222"}, "-routes"},
		{"bad route", []string{"-cluster", "127.0.0.1:6222", "-routes", "nope"}, "-routes"},
		{"bad max-store", []string{"-max-store", "lots"}, "-max-store"},
		{"unknown flag", []string{"-replicas", "3"}, "replicas"},
		{"positional", []string{"extra"}, "extra"},
	} {
		out, err := exec.Command(itest.Binary(t), append([]string{"queue"}, tc.args...)...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%s: want exit 2, got %v\n%s", tc.desc, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: output does not name %q:\n%s", tc.desc, tc.want, out)
		}
	}
}

// TestStreamTooLargeForTheNode: a stream whose max_bytes the queue node cannot reserve is
// refused with an error that names queue.max_bytes and what to do, not only NATS's
// "insufficient storage resources available".
func TestStreamTooLargeForTheNode(t *testing.T) {
	itest.RequireIntegration(t)
	q := itest.StartQueue(t, "-max-store", "64MiB")
	c, err := queue.Connect(queue.Options{URLs: q.URL(), Name: "itest", Stream: queue.StreamConfig{Name: "BIG", Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.EnsureStream(ctx)
	if err == nil || !strings.Contains(err.Error(), "cannot reserve queue.max_bytes (1024 MiB)") || !strings.Contains(err.Error(), "-max-store") {
		t.Fatalf("stream of 1 GiB on a node with 64 MiB: %v; want an error naming queue.max_bytes and -max-store", err)
	}
}
