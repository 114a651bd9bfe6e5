// Package accept makes accepted grants durable for the gateway's async routes: the
// request handler hands an encoded grant to Submit and answers 202 only when Submit says
// it is stored - in the queue (a JetStream atomic batch on a stream synced on every
// commit, or replicated) or, when the queue is down, full or slow, in the local journal.
// A replayer moves journaled grants into the queue when it is back, with their grant ids.
//
// Committing is group commit: the committer (one by default) takes every grant waiting
// (up to max_batch) and stores them with one queue batch (one acknowledgement, one sync on
// the queue node) or one journal append (one fsync), then wakes every handler of the
// batch. Under load a batch holds hundreds of grants, so the cost of durability is paid
// once per batch, not per grant.
package accept

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/internal/failpoint"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/queue"
)

// Via says where a grant was stored.
type Via uint8

const (
	// ViaNone: not stored.
	ViaNone Via = iota
	// ViaQueue: acknowledged by the queue.
	ViaQueue
	// ViaJournal: synced to the local journal.
	ViaJournal
)

func (v Via) String() string {
	switch v {
	case ViaQueue:
		return "queue"
	case ViaJournal:
		return "journal"
	}
	return "none"
}

// Queue is what the acceptor needs of the queue (*queue.Client; fakes in tests).
type Queue interface {
	Connected() bool
	Publish(ctx context.Context, msgs []queue.Outgoing) error
}

// Journal is what the acceptor needs of the local journal (see journalAdapter for
// internal/journal; fakes in tests).
type Journal interface {
	// Append stores payloads durably (one sync), or fails with nothing acknowledged.
	Append(payloads ...[]byte) error
	// Pending returns up to max journaled payloads not yet moved to the queue, and a
	// function that marks them moved.
	Pending(max int) (payloads [][]byte, done func() error, err error)
	// PendingRecords is how many journaled payloads wait for the queue.
	PendingRecords() int64
}

// Options configures an Acceptor.
type Options struct {
	Queue   Queue   // nil: journal only
	Journal Journal // required
	// PublishTimeout bounds the wait for the queue's acknowledgement of one batch.
	PublishTimeout time.Duration
	// MaxBatch is the most grants in one commit (<= 1000).
	MaxBatch int
	// Committers is the number of committer goroutines (default 1: JetStream commits one
	// atomic batch of a stream at a time and stages each batch of an R1 file stream in a
	// store of its own, so one committer taking everything waiting makes the fewest,
	// largest batches - measured twice the throughput of 4 in BenchmarkAsyncAccept).
	Committers int
	// RetryQueueAfter is how long after a failed publish the committers go straight to
	// the journal before trying the queue again (default 1s).
	RetryQueueAfter time.Duration
	Logger          *zap.Logger
}

// Acceptor stores grants durably. Create with New, stop with Close.
type Acceptor struct {
	opts    Options
	log     *zap.Logger
	in      chan *Pending
	pool    sync.Pool
	queueOK atomic.Bool
	// queueRetryAt is when the committers try the queue again after a failure (unix ns).
	queueRetryAt atomic.Int64
	replayKick   chan struct{}
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	stats        Stats
}

// Stats are the acceptor's counters (read with Snapshot).
type Stats struct {
	Queued, Journaled, Failed, Replayed, Batches atomic.Uint64
}

// Pending is one grant on its way to storage. Get one with Acceptor.Get, fill Subject and
// Data, Submit it, then Put it back.
type Pending struct {
	Subject string
	Data    []byte
	Headers []grant.Header // scratch space for building the record
	Rec     grant.Record   // scratch space for building the record
	via     Via
	err     error
	done    chan struct{}
}

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("accept: closed")

// New starts the committers and the replayer.
func New(o Options) (*Acceptor, error) {
	if o.Journal == nil {
		return nil, errors.New("accept: a journal is needed")
	}
	if o.MaxBatch <= 0 || o.MaxBatch > 1000 {
		o.MaxBatch = 500
	}
	if o.Committers <= 0 {
		o.Committers = 1
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = time.Second
	}
	if o.RetryQueueAfter <= 0 {
		o.RetryQueueAfter = time.Second
	}
	a := &Acceptor{opts: o, log: o.Logger, in: make(chan *Pending, 4*o.MaxBatch*o.Committers), replayKick: make(chan struct{}, 1)}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	a.pool.New = func() any { return &Pending{done: make(chan struct{}, 1)} }
	a.queueOK.Store(o.Queue != nil)
	a.ctx, a.cancel = context.WithCancel(context.Background())
	for i := 0; i < o.Committers; i++ {
		a.wg.Add(1)
		go a.commitLoop()
	}
	if o.Queue != nil {
		a.wg.Add(1)
		go a.replayLoop()
	}
	return a, nil
}

// Get returns a Pending to fill.
func (a *Acceptor) Get() *Pending {
	p := a.pool.Get().(*Pending)
	p.Subject, p.Data, p.via, p.err = "", p.Data[:0], ViaNone, nil
	p.Headers = p.Headers[:0]
	return p
}

// Put returns p to the pool; p must not be used after.
func (a *Acceptor) Put(p *Pending) {
	if cap(p.Data) > 64<<10 {
		p.Data = nil // do not keep large bodies around
	}
	p.Rec = grant.Record{}
	a.pool.Put(p)
}

// Submit stores p durably and returns where, or an error. It waits at most until
// deadline for a place in the commit queue; once p is in a batch, it waits for that
// batch's outcome (bounded by the publish timeout and the journal's sync).
func (a *Acceptor) Submit(p *Pending, deadline time.Time) (Via, error) {
	if a.ctx.Err() != nil {
		return ViaNone, ErrClosed
	}
	select {
	case a.in <- p:
	default:
		t := time.NewTimer(time.Until(deadline))
		select {
		case a.in <- p:
			t.Stop()
		case <-t.C:
			return ViaNone, errors.New("accept: commit queue full (grants arrive faster than they are stored)")
		case <-a.ctx.Done():
			t.Stop()
			return ViaNone, ErrClosed
		}
	}
	<-p.done
	return p.via, p.err
}

func (a *Acceptor) commitLoop() {
	defer a.wg.Done()
	batch := make([]*Pending, 0, a.opts.MaxBatch)
	msgs := make([]queue.Outgoing, 0, a.opts.MaxBatch)
	payloads := make([][]byte, 0, a.opts.MaxBatch)
	for {
		select {
		case p := <-a.in:
			batch = append(batch[:0], p)
		case <-a.ctx.Done():
			a.drainClosed()
			return
		}
	fill:
		for len(batch) < a.opts.MaxBatch {
			select {
			case p := <-a.in:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		a.stats.Batches.Add(1)
		via, err := a.commit(batch, msgs[:0], payloads[:0])
		for _, p := range batch {
			p.via, p.err = via, err
			p.done <- struct{}{}
		}
	}
}

// commit stores one batch: in the queue if it is usable, else (or if that fails) in the
// journal.
func (a *Acceptor) commit(batch []*Pending, msgs []queue.Outgoing, payloads [][]byte) (Via, error) {
	if a.queueUsable() {
		for _, p := range batch {
			msgs = append(msgs, queue.Outgoing{Subject: p.Subject, Data: p.Data})
		}
		failpoint.Hit("gateway.before_publish")
		ctx, cancel := context.WithTimeout(a.ctx, a.opts.PublishTimeout)
		err := a.opts.Queue.Publish(ctx, msgs)
		cancel()
		if err == nil {
			failpoint.Hit("gateway.after_publish")
			a.queueRecovered()
			a.stats.Queued.Add(uint64(len(batch)))
			return ViaQueue, nil
		}
		a.queueFailed(err)
	}
	for _, p := range batch {
		payloads = append(payloads, p.Data)
	}
	if err := a.opts.Journal.Append(payloads...); err != nil {
		a.stats.Failed.Add(uint64(len(batch)))
		a.log.Error("grants not stored: queue unusable and journal append failed", zap.Int("grants", len(batch)), zap.Error(err))
		return ViaNone, err
	}
	a.stats.Journaled.Add(uint64(len(batch)))
	select {
	case a.replayKick <- struct{}{}:
	default:
	}
	return ViaJournal, nil
}

// queueUsable says whether a batch should try the queue: connected, and not within the
// cool-down after a failure. (Grants already in the journal need not reach the queue
// first: order does not matter to delivery, and under sustained load the journal would
// never be empty - new grants would follow it forever, paying for two stores.)
func (a *Acceptor) queueUsable() bool {
	q := a.opts.Queue
	if q == nil || !q.Connected() {
		return false
	}
	if a.queueOK.Load() {
		return true
	}
	return time.Now().UnixNano() >= a.queueRetryAt.Load()
}

func (a *Acceptor) queueFailed(err error) {
	a.queueRetryAt.Store(time.Now().Add(a.opts.RetryQueueAfter).UnixNano())
	if a.queueOK.Swap(false) {
		a.log.Warn("queue unusable: grants go to the local journal until it is back", zap.Error(err))
	}
}

func (a *Acceptor) queueRecovered() {
	if !a.queueOK.Swap(true) {
		a.log.Info("queue back: grants go to the queue again")
	}
}

// replayLoop moves journaled grants into the queue.
func (a *Acceptor) replayLoop() {
	defer a.wg.Done()
	wait := 100 * time.Millisecond
	for {
		n, err := a.replayOnce()
		switch {
		case err != nil:
			wait = min(wait*2, 2*time.Second)
		case n > 0:
			wait = 0
		default:
			if !a.queueOK.Load() && a.opts.Queue.Connected() && time.Now().UnixNano() >= a.queueRetryAt.Load() {
				a.queueRecovered() // journal empty, cool-down over: try the queue directly again
			}
			wait = 200 * time.Millisecond
		}
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-a.ctx.Done():
			t.Stop()
			return
		case <-a.replayKick:
			t.Stop()
			if err == nil {
				wait = 100 * time.Millisecond
			}
		case <-t.C:
		}
	}
}

// replayOnce publishes one batch of journaled grants; it returns how many.
func (a *Acceptor) replayOnce() (int, error) {
	if a.opts.Journal.PendingRecords() == 0 || !a.opts.Queue.Connected() {
		return 0, nil
	}
	payloads, done, err := a.opts.Journal.Pending(a.opts.MaxBatch)
	if err != nil {
		a.log.Error("journal: reading grants to replay", zap.Error(err))
		return 0, err
	}
	if len(payloads) == 0 {
		return 0, nil
	}
	msgs := make([]queue.Outgoing, 0, len(payloads))
	for _, b := range payloads {
		r, err := grant.Decode(b)
		if err != nil {
			// The journal verified the record's checksum, so this is a record of another
			// version: keep it in the journal (never drop a grant) and say so.
			a.log.Error("journal: a record is not a grant this build reads; replay stops here", zap.Error(err))
			return 0, err
		}
		msgs = append(msgs, queue.Outgoing{Subject: queue.Subject(r.Route), Data: b})
	}
	ctx, cancel := context.WithTimeout(a.ctx, a.opts.PublishTimeout)
	err = a.opts.Queue.Publish(ctx, msgs)
	cancel()
	if err != nil {
		a.queueFailed(err)
		return 0, err
	}
	failpoint.Hit("replay.after_publish")
	a.queueRecovered() // the queue took a batch: new grants go to it again
	if err := done(); err != nil {
		a.log.Error("journal: checkpoint after replay failed (the grants will be replayed again; delivery is idempotent)", zap.Error(err))
		return 0, err
	}
	a.stats.Replayed.Add(uint64(len(msgs)))
	return len(msgs), nil
}

// drainClosed fails every grant still waiting after Close.
func (a *Acceptor) drainClosed() {
	for {
		select {
		case p := <-a.in:
			p.via, p.err = ViaNone, ErrClosed
			p.done <- struct{}{}
		default:
			return
		}
	}
}

// QueueOK says whether new grants go to the queue (false: to the journal).
func (a *Acceptor) QueueOK() bool {
	return a.opts.Queue != nil && a.queueOK.Load() && a.opts.Queue.Connected()
}

// Snapshot is the acceptor's state for metrics and the admin API.
type Snapshot struct {
	QueueConnected bool   `json:"queue_connected"`
	QueueOK        bool   `json:"queue_ok"`
	Queued         uint64 `json:"stored_in_queue"`
	Journaled      uint64 `json:"stored_in_journal"`
	Failed         uint64 `json:"failed"`
	Replayed       uint64 `json:"replayed"`
	Batches        uint64 `json:"batches"`
	JournalPending int64  `json:"journal_pending"`
	Waiting        int    `json:"waiting"`
}

// Snapshot returns the acceptor's state.
func (a *Acceptor) Snapshot() Snapshot {
	s := Snapshot{
		QueueOK:   a.QueueOK(),
		Queued:    a.stats.Queued.Load(),
		Journaled: a.stats.Journaled.Load(),
		Failed:    a.stats.Failed.Load(),
		Replayed:  a.stats.Replayed.Load(),
		Batches:   a.stats.Batches.Load(),
		Waiting:   len(a.in),
	}
	if a.opts.Queue != nil {
		s.QueueConnected = a.opts.Queue.Connected()
	}
	s.JournalPending = a.opts.Journal.PendingRecords()
	return s
}

// Close stops the committers and the replayer; grants waiting are refused.
func (a *Acceptor) Close() {
	a.cancel()
	a.wg.Wait()
	a.drainClosed()
}
