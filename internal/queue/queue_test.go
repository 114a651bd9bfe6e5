package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode starts an embedded node in a temporary directory, stopped when the test ends.
func startNode(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer(ServerOptions{Name: "t", Listen: freeAddr(t), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t testing.TB, url string, maxBytes int64) *Client {
	t.Helper()
	c, err := Connect(Options{URLs: url, Name: "test", Stream: StreamConfig{Name: "G", Replicas: 1, MaxAge: time.Hour, MaxBytes: maxBytes}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !c.Connected() {
		if ctx.Err() != nil {
			t.Fatal("not connected within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPublishBatchAndScan(t *testing.T) {
	s := startNode(t)
	c := connect(t, s.ClientURL(), 1<<30)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := 0
	for _, n := range []int{1, 7, 1000} {
		batch := make([][]byte, n)
		for i := range batch {
			batch[i] = []byte(fmt.Sprintf("grant-%d", want+i))
		}
		if err := c.PublishBatch(ctx, Subject("grant"), batch); err != nil {
			t.Fatalf("batch of %d: %v", n, err)
		}
		want += n
	}
	if err := c.PublishBatch(ctx, Subject("grant"), make([][]byte, 1001)); err == nil {
		t.Fatal("a batch above 1000 was accepted")
	}
	got := 0
	err := c.Scan(ctx, SubjectPrefix+">", time.Time{}, func(m Message) error {
		if string(m.Data) != fmt.Sprintf("grant-%d", got) {
			return fmt.Errorf("message %d is %q", got, m.Data)
		}
		got++
		return nil
	})
	if err != nil || got != want {
		t.Fatalf("scan: %d of %d messages, err %v", got, want, err)
	}
	b, err := c.RouteBacklog(ctx, "grant")
	if err != nil || b.Pending != uint64(want) || b.OldestAge <= 0 {
		t.Fatalf("backlog without a consumer: %+v, %v", b, err)
	}
	if _, err := c.EnsureConsumer(ctx, ConsumerConfig{Route: "grant", AckWait: time.Second, MaxDeliver: 3, MaxAckPending: 100}); err != nil {
		t.Fatal(err)
	}
	b, err = c.RouteBacklog(ctx, "grant")
	if err != nil || b.Pending != uint64(want) || b.AckFloor != 0 {
		t.Fatalf("backlog with a fresh consumer: %+v, %v", b, err)
	}
}

func TestPublishBatchFullAndDown(t *testing.T) {
	s := startNode(t)
	c := connect(t, s.ClientURL(), 1<<20) // 1 MiB stream
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := make([]byte, 100<<10)
	var stored int
	var err error
	for i := 0; i < 20; i++ {
		if err = c.PublishBatch(ctx, Subject("grant"), [][]byte{big, big}); err != nil {
			break
		}
		stored += 2
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("a full stream answered %v, want ErrFull", err)
	}
	// discard new: what was stored stays, nothing of the refused batch was stored
	n := 0
	if err := c.Scan(ctx, SubjectPrefix+">", time.Time{}, func(Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != stored {
		t.Fatalf("stream holds %d messages, %d were acknowledged", n, stored)
	}
	s.Shutdown()
	deadline := time.Now().Add(30 * time.Second)
	for c.Connected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.PublishBatch(ctx, Subject("grant"), [][]byte{[]byte("x")}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("publishing with the node down: %v, want ErrNotConnected", err)
	}
}
