package accept

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/queue"
)

// fakeQueue is a queue that can be down (not connected) or fail the next publishes.
type fakeQueue struct {
	mu        sync.Mutex
	connected bool
	failNext  int
	stored    [][]byte
}

func (q *fakeQueue) Connected() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.connected }

func (q *fakeQueue) Publish(_ context.Context, msgs []queue.Outgoing) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failNext > 0 {
		q.failNext--
		return errors.New("injected publish failure")
	}
	for _, m := range msgs {
		q.stored = append(q.stored, m.Data)
	}
	return nil
}

func (q *fakeQueue) count() int { q.mu.Lock(); defer q.mu.Unlock(); return len(q.stored) }

// fakeJournal keeps appended payloads in memory; done() drops what Pending returned.
type fakeJournal struct {
	mu      sync.Mutex
	pending [][]byte
	fail    error
	reads   int // Pending calls
}

func (j *fakeJournal) Append(p ...[]byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail != nil {
		return j.fail
	}
	j.pending = append(j.pending, p...)
	return nil
}

func (j *fakeJournal) Pending(max int) ([][]byte, func() error, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.reads++
	n := min(max, len(j.pending))
	out := append([][]byte(nil), j.pending[:n]...)
	return out, func() error {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.pending = j.pending[n:]
		return nil
	}, nil
}

func (j *fakeJournal) PendingRecords() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return int64(len(j.pending))
}

func rec(key string) []byte {
	r := grant.Record{ID: grant.ID("grant", key), Route: "grant", Key: key}
	return r.AppendBinary(nil)
}

func submit(t *testing.T, a *Acceptor, key string) (Via, error) {
	t.Helper()
	p := a.Get()
	defer a.Put(p)
	p.Subject, p.Data = queue.Subject("grant"), append(p.Data, rec(key)...)
	return a.Submit(p, time.Now().Add(10*time.Second))
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAcceptorRoutes(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		connected bool
		failNext  int
		journal   error
		want      Via
		wantErr   bool
	}{
		{"queue up: stored in the queue", true, 0, nil, ViaQueue, false},
		{"queue not connected: journal", false, 0, nil, ViaJournal, false},
		{"queue refuses: journal", true, 1, nil, ViaJournal, false},
		{"queue refuses and journal fails: not stored", true, 1, errors.New("disk full"), ViaNone, true},
		{"queue down and journal fails: not stored", false, 0, errors.New("disk full"), ViaNone, true},
	} {
		q := &fakeQueue{connected: tc.connected, failNext: tc.failNext}
		j := &fakeJournal{fail: tc.journal}
		a, err := New(Options{Queue: q, Journal: j, Committers: 1, RetryQueueAfter: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		via, err := submit(t, a, "k")
		a.Close()
		if via != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: got %v, %v; want %v (error %v)", tc.desc, via, err, tc.want, tc.wantErr)
		}
	}
}

// After a failed publish the committers use the journal for the cool-down, then try the
// queue again even though the journal still holds grants (under sustained load it is
// never empty); the replayer moves the journaled grants into the queue.
func TestAcceptorReturnsToTheQueueUnderLoad(t *testing.T) {
	q := &fakeQueue{connected: true, failNext: 1}
	j := &fakeJournal{}
	a, err := New(Options{Queue: q, Journal: j, Committers: 1, RetryQueueAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if via, err := submit(t, a, "first"); via != ViaJournal || err != nil {
		t.Fatalf("first grant after a failed publish: %v %v, want the journal", via, err)
	}
	eventually(t, "the replayer to move the journaled grant", func() bool { return j.PendingRecords() == 0 && q.count() == 1 })
	// keep the journal non-empty from now on: the queue must be used again anyway
	j.Append(rec("stuck"))
	q.mu.Lock()
	q.connected = true
	q.mu.Unlock()
	eventually(t, "a grant stored in the queue while the journal is not empty", func() bool {
		via, err := submit(t, a, "later")
		return err == nil && via == ViaQueue
	})
}

func TestAcceptorKeepsUndecodableJournalRecords(t *testing.T) {
	q := &fakeQueue{connected: true}
	j := &fakeJournal{pending: [][]byte{[]byte("not a grant"), rec("ok")}}
	a, err := New(Options{Queue: q, Journal: j, Committers: 1})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "three replay attempts", func() bool { j.mu.Lock(); defer j.mu.Unlock(); return j.reads >= 3 })
	a.Close()
	if j.PendingRecords() != 2 || q.count() != 0 {
		t.Fatalf("journal %d, queue %d: an undecodable record must stop the replay, not be dropped", j.PendingRecords(), q.count())
	}
}

func TestAcceptorClosedRefuses(t *testing.T) {
	a, err := New(Options{Journal: &fakeJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if via, err := submit(t, a, "k"); via != ViaNone || !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v %v", via, err)
	}
}
