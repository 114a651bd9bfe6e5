package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/accept"
	"github.com/floodgate/floodgate/internal/journal"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/queue"
)

// asyncSide is what a gateway with async routes runs besides its listeners: the queue
// connection, the local journal, the acceptor (committers and replayer) and a poller of
// the per-route backlog.
type asyncSide struct {
	acc     *accept.Acceptor
	q       *queue.Client
	j       *journal.Journal
	dir     string
	routes  []string
	log     *zap.Logger
	mu      sync.Mutex
	backlog map[string]queue.Backlog
	polled  time.Time
	pollErr string
	cancel  context.CancelFunc
	done    chan struct{}
}

// defaultInstanceID names this gateway in Consul's catalog and in the grants it accepts.
func defaultInstanceID(traffic string) string {
	host, _ := os.Hostname()
	_, port, _ := strings.Cut(traffic, ":")
	return host + "-" + port
}

// startAsync opens the journal and connects to the queue when cfg has async routes
// (nil, nil otherwise). The queue need not be up: grants go to the journal until it is.
func startAsync(cfg *config.Config, instance string, logger *zap.Logger) (*asyncSide, error) {
	if !cfg.HasAsync() {
		return nil, nil
	}
	log := logger.With(zap.String("component", "async"))
	a := &asyncSide{dir: cfg.JournalDir(), log: log, backlog: map[string]queue.Backlog{}, done: make(chan struct{})}
	for name, r := range cfg.Routes {
		if r.Async != nil {
			a.routes = append(a.routes, name)
		}
	}
	slices.Sort(a.routes)
	qc := cfg.Queue
	j, rep, err := accept.OpenJournal(journal.Options{Dir: a.dir, SegmentBytes: int64(qc.Journal.SegmentBytes), MaxBytes: int64(qc.Journal.MaxBytes), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("async: local journal %s: %w", a.dir, err)
	}
	a.j = j
	log.Info("local journal open", zap.String("dir", a.dir), zap.Int("pending", rep.Records),
		zap.Int64("torn_bytes", rep.TornBytes), zap.Int("damaged_ranges", len(rep.Quarantined)))
	for _, d := range rep.Quarantined {
		log.Error("local journal: damaged range quarantined (no grant read from it)", zap.String("damage", d.String()))
	}
	q, err := queue.Connect(queue.Options{URLs: qc.URL, Name: "floodgate gateway " + instance, Logger: log,
		Stream: queue.StreamConfig{Name: qc.Stream, Replicas: qc.Replicas, MaxAge: qc.MaxAge.D(), MaxBytes: int64(qc.MaxBytes)}})
	if err != nil {
		j.Close()
		return nil, err
	}
	a.q = q
	acc, err := accept.New(accept.Options{Queue: q, Journal: accept.JournalAdapter{J: j}, PublishTimeout: qc.PublishTimeout.D(), MaxBatch: qc.MaxBatch, Logger: log})
	if err != nil {
		q.Close()
		j.Close()
		return nil, err
	}
	a.acc = acc
	a.registerMetrics()
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go a.run(ctx)
	return a, nil
}

// run makes sure the stream exists (retrying while the queue is down) and polls the
// backlog of the async routes every two seconds.
func (a *asyncSide) run(ctx context.Context) {
	defer close(a.done)
	ensured := false
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if !ensured && a.q.Connected() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := a.q.EnsureStream(cctx); err != nil {
				a.log.Warn("queue: stream not ready yet (grants go to the journal meanwhile)", zap.Error(err))
			} else {
				ensured = true
			}
			cancel()
		}
		if ensured {
			a.poll(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *asyncSide) poll(ctx context.Context) {
	got := map[string]queue.Backlog{}
	var perr string
	for _, r := range a.routes {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		b, err := a.q.RouteBacklog(cctx, r)
		cancel()
		if err != nil {
			perr = err.Error()
			continue
		}
		got[r] = b
		backlogGauge.WithLabelValues(r).Set(float64(b.Pending) + float64(b.AckPending))
		oldestGauge.WithLabelValues(r).Set(b.OldestAge.Seconds())
	}
	a.mu.Lock()
	for r, b := range got {
		a.backlog[r] = b
	}
	a.polled, a.pollErr = time.Now(), perr
	a.mu.Unlock()
}

var (
	backlogGauge = metrics.NewGaugeVec("async_backlog", "Grants of an async route not yet delivered (queue pending + handed out, unacknowledged), polled from the queue.", "route")
	oldestGauge  = metrics.NewGaugeVec("async_oldest_age_seconds", "Age of the oldest grant of an async route not yet delivered (0: none).", "route")
)

func (a *asyncSide) registerMetrics() {
	snap := func() accept.Snapshot { return a.acc.Snapshot() }
	reg := func(c prometheus.Collector) { metrics.Registry.MustRegister(c) }
	reg(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "floodgate", Name: "async_queue_up",
		Help: "1 while new grants go to the queue, 0 while they go to the local journal."}, func() float64 {
		if a.acc.QueueOK() {
			return 1
		}
		return 0
	}))
	reg(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "floodgate", Name: "async_journal_pending",
		Help: "Grants in the local journal waiting to be replayed into the queue."}, func() float64 { return float64(snap().JournalPending) }))
	reg(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "floodgate", Name: "async_journal_bytes",
		Help: "Bytes of the local journal not yet replayed."}, func() float64 { return float64(a.j.Stats().PendingBytes) }))
	reg(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "floodgate", Name: "async_replayed_total",
		Help: "Journaled grants moved into the queue."}, func() float64 { return float64(snap().Replayed) }))
	reg(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "floodgate", Name: "async_store_failed_total",
		Help: "Grants that neither the queue nor the journal could store (answered async/unavailable)."}, func() float64 { return float64(snap().Failed) }))
	reg(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "floodgate", Name: "async_batches_total",
		Help: "Commits (one queue batch or one journal append each)."}, func() float64 { return float64(snap().Batches) }))
}

// asyncStatus is the admin /async answer.
type asyncStatus struct {
	accept.Snapshot
	JournalDir    string                   `json:"journal_dir"`
	JournalBytes  int64                    `json:"journal_bytes"`
	JournalFailed bool                     `json:"journal_failed"`
	JournalError  string                   `json:"journal_error,omitempty"`
	Backlog       map[string]queue.Backlog `json:"backlog"`
	BacklogPolled time.Time                `json:"backlog_polled"`
	BacklogError  string                   `json:"backlog_error,omitempty"`
}

func (a *asyncSide) status() asyncStatus {
	js := a.j.Stats()
	st := asyncStatus{Snapshot: a.acc.Snapshot(), JournalDir: a.dir, JournalBytes: js.PendingBytes, JournalFailed: js.Failed, JournalError: js.LastError}
	a.mu.Lock()
	st.Backlog = map[string]queue.Backlog{}
	for r, b := range a.backlog {
		st.Backlog[r] = b
	}
	st.BacklogPolled, st.BacklogError = a.polled, a.pollErr
	a.mu.Unlock()
	return st
}

// consoleRoute is one async route's row in the console.
type consoleRoute struct {
	Route       string  `json:"route"`
	Waiting     uint64  `json:"waiting"`
	InDelivery  int     `json:"in_delivery"`
	OldestAgeS  float64 `json:"oldest_age_s"`
	Paused      bool    `json:"paused"`
	AckFloorSeq uint64  `json:"acked_up_to_seq"`
}

// console is the console's async section: the acceptor's state as a header line, the
// backlog of each route as rows.
func (a *asyncSide) console() any {
	st := a.status()
	out := struct {
		Queue          string         `json:"queue"`
		JournalPending int64          `json:"journal_pending"`
		StoredQueue    uint64         `json:"stored_in_queue"`
		StoredJournal  uint64         `json:"stored_in_journal"`
		Failed         uint64         `json:"not_stored"`
		Routes         []consoleRoute `json:"routes"`
	}{Queue: "up", JournalPending: st.JournalPending, StoredQueue: st.Queued, StoredJournal: st.Journaled, Failed: st.Failed}
	switch {
	case !st.QueueConnected:
		out.Queue = "DOWN: grants go to the journal"
	case !st.QueueOK:
		out.Queue = "refusing: grants go to the journal"
	}
	if st.JournalFailed {
		out.Queue += "; JOURNAL FAILED: " + st.JournalError
	}
	for _, r := range a.routes {
		b := st.Backlog[r]
		out.Routes = append(out.Routes, consoleRoute{Route: r, Waiting: b.Pending, InDelivery: b.AckPending,
			OldestAgeS: b.OldestAge.Round(100 * time.Millisecond).Seconds(), Paused: b.Paused, AckFloorSeq: b.AckFloor})
	}
	return out
}

// ServeHTTP serves the admin /async endpoint.
func (a *asyncSide) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.status())
}

// close stops accepting (grants waiting are refused), then closes the queue connection
// and the journal.
func (a *asyncSide) close() {
	a.acc.Close()
	a.cancel()
	<-a.done
	a.q.Close()
	if err := a.j.Close(); err != nil {
		a.log.Warn("local journal close", zap.Error(err))
	}
}
