package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/internal/metrics"
)

// Metrics is the group of the Consul metrics: registered by NewWatcher, so a gateway
// without Consul exports none of them.
var Metrics metrics.Group

var (
	consulReads = Metrics.NewCounterVec("consul_reads_total",
		"Blocking reads of the Consul prefix by result: changed, unchanged, error, forbidden, index_reset.", "result")
	consulHeld = Metrics.NewGauge("consul_update_held",
		"1 while a suspicious Consul read (empty, prefix deleted, most keys removed) is held for confirmation.")
	consulLastOK = Metrics.NewGauge("consul_last_success_timestamp_seconds",
		"Unix time of the last successful read of the Consul prefix.")
)

// Lister is what the watcher needs from Consul's KV API: every key under prefix, read
// with a blocking query - the answer comes when the prefix's index passes index, or when
// wait has elapsed (at once for index 0) - with the index of the answer. KVLister is the
// Lister of a Consul client; tests give the watcher a scripted one.
type Lister interface {
	List(ctx context.Context, prefix string, index uint64, wait time.Duration) (kvs []KV, lastIndex uint64, err error)
}

// KVLister lists keys with a Consul API client's KV endpoint. With a client made by
// NewClient it decodes the answer itself (kvDecoder: on the bytes, reusing the previous
// read's keys and unchanged values); with any other client, the client decodes it. Use it
// through a pointer; List calls are serialized.
type KVLister struct {
	KV *api.KV

	mu   sync.Mutex
	sink bodySink
	dec  kvDecoder
}

// List implements Lister. The values of the KVs it returns may be shared with those of
// the previous read: read-only.
func (l *KVLister) List(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]KV, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sink.got = false
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(withBodySink(ctx, &l.sink))
	pairs, meta, err := l.KV.List(prefix, q)
	if err != nil {
		return nil, 0, err
	}
	if l.sink.got {
		kvs, err := l.dec.decode(l.sink.buf)
		if err != nil {
			return nil, 0, err
		}
		return kvs, meta.LastIndex, nil
	}
	kvs := make([]KV, 0, len(pairs))
	for _, p := range pairs {
		kvs = append(kvs, KV{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex})
	}
	l.dec.prev = kvs
	return kvs, meta.LastIndex, nil
}

// Clock is the watcher's time: how long since the last apply, the waits between reads,
// and the deadline of a read. Tests give it a clock that moves only when told.
type Clock interface {
	Now() time.Time
	// Sleep waits d; it returns false, at once, when ctx is done.
	Sleep(ctx context.Context, d time.Duration) bool
	// WithTimeout is context.WithTimeout on this clock.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
}

type realClock struct{}

func (realClock) Now() time.Time                                  { return time.Now() }
func (realClock) Sleep(ctx context.Context, d time.Duration) bool { return sleep(ctx, d) }
func (realClock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// Options configures a Watcher.
type Options struct {
	// Client reads the prefix (Lister, when set, is used instead).
	Client *api.Client
	// Lister reads the prefix (default KVLister{Client.KV()}).
	Lister Lister
	// Clock is the watcher's time (default the real one).
	Clock Clock
	// Prefix is the key prefix, with a trailing slash (default "floodgate/").
	Prefix string
	Logger *zap.Logger
	// SnapshotPath is the last-known-good snapshot file ("" = none).
	SnapshotPath string
	// WaitTime bounds one blocking query (default 10s). A read that takes longer than
	// WaitTime + WaitTime/16 (Consul's jitter) + 2 s is abandoned as failed: the agent is
	// hung (stopped, overloaded) and the gateway says it is stale.
	WaitTime time.Duration
	// MinInterval is the least time between two applied updates (default 100ms).
	MinInterval time.Duration
	// BackoffMin and BackoffMax bound the wait after an error (defaults 500ms and 5s, with
	// jitter), so a Consul outage costs at most about one call a second.
	BackoffMin, BackoffMax time.Duration
	// OnStale is told "" when the configuration is fresh and a reason when it may be
	// stale (Consul unreachable, token refused, serving a snapshot).
	OnStale func(reason string)
	// OnHeld is told the reason when a read is held for confirmation, "" when released.
	OnHeld func(reason string)
	// OnApplied is told after a read was applied and Status shows it (the updater's own
	// OnApplied runs before the watcher knows the update took).
	OnApplied func(s *Snapshot)
}

// Watcher is the Consul configuration source (a gateway.Source).
type Watcher struct {
	o Options
	// conv converts again only the keys whose value changed since the last read (Run's
	// goroutine only)
	conv Converter

	mu      sync.Mutex
	current *Snapshot // what the gateway serves (applied, or loaded from the snapshot)
	held    string    // why the last read is held, "" if none
	// confirmSeen is the confirm key's value that is spent: used to apply a held update,
	// or present at the first read. A confirmation is for one held update; the key is
	// left in Consul (the watcher's token reads only), so a later read returning to the
	// same content must not find it approved in advance.
	confirmSeen string
	readOnce    bool
	stale       string
	lastOK      time.Time
	appliedT    time.Time
	// seedNote says what the gateway serves until the first successful read (e.g. the
	// snapshot); it prefixes the stale reason while Consul is unreachable.
	seedNote string
	// jitter returns a number in [0, n) (rand.Int64N; tests pin it)
	jitter func(n int64) int64
	// snaps writes the last-known-good snapshot (nil without SnapshotPath; set by run)
	snaps *snapshotWriter
}

// updater is what the watcher does with the gateway's Updater (a fake in tests).
type updater interface {
	Apply(gateway.Update) (uint64, error)
	Reject(source, note string, err error)
	Hold(source, msg string)
}

// NewWatcher returns a Watcher; call Run to start it.
func NewWatcher(o Options) *Watcher {
	Metrics.Enable()
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	o.Prefix = SlashPrefix(o.Prefix)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.WaitTime == 0 {
		o.WaitTime = 10 * time.Second
	}
	if o.MinInterval == 0 {
		o.MinInterval = 100 * time.Millisecond
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 500 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.Lister == nil && o.Client != nil {
		o.Lister = &KVLister{KV: o.Client.KV()}
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return &Watcher{o: o, jitter: rand.Int64N}
}

// readGrace is how much longer than its expected wait a read may take before the
// watcher gives up on it and reports Consul as unreachable.
const readGrace = 2 * time.Second

// Status is what the watcher reports about itself.
type Status struct {
	Prefix      string    `json:"prefix"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	ActivePlan  string    `json:"active_plan,omitempty"`
	Held        string    `json:"held,omitempty"`
	Stale       string    `json:"stale,omitempty"`
	LastOK      time.Time `json:"last_ok,omitempty"`
}

// Status returns the watcher's current status.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{Prefix: w.o.Prefix, Held: w.held, Stale: w.stale, LastOK: w.lastOK}
	if w.current != nil {
		s.Fingerprint, s.ActivePlan = w.current.Fingerprint, w.current.ActivePlan
	}
	return s
}

// Seed tells the watcher what the gateway already serves from the last-known-good
// snapshot, so that poisoned-read checks compare against it from the first read.
func (w *Watcher) Seed(s *Snapshot, reason string) {
	w.mu.Lock()
	w.current = s
	w.seedNote = reason
	w.mu.Unlock()
	w.setStale(reason)
}

func (w *Watcher) setStale(reason string) {
	w.mu.Lock()
	changed := w.stale != reason
	w.stale = reason
	w.mu.Unlock()
	if changed && w.o.OnStale != nil {
		w.o.OnStale(reason)
	}
}

// Run implements gateway.Source: blocking queries on the prefix until ctx is done.
func (w *Watcher) Run(ctx context.Context, u *gateway.Updater) error {
	if w.o.Lister == nil {
		return errors.New("consul watcher: no Consul client")
	}
	w.run(ctx, u)
	return nil
}

// run is the read loop. Its rules:
//   - a read blocks until the index passes the last one seen (the first read, index 0,
//     answers at once); one that takes longer than it should (readGrace more than
//     WaitTime and Consul's jitter) is abandoned as failed and marks the source stale;
//   - after a failed read it waits a capped exponential back-off with jitter
//     (BackoffMin doubling up to BackoffMax), back to BackoffMin after a success;
//   - an index that goes backwards (a restore, a new cluster) is reset and the answer
//     taken as fresh data; an unchanged index is no change;
//   - a read with the content in force (same fingerprint) applies nothing;
//   - a suspicious read is held until an operator confirms it (consider);
//   - two applied updates are at least MinInterval apart.
func (w *Watcher) run(ctx context.Context, u updater) {
	clock := w.o.Clock
	if w.o.SnapshotPath != "" {
		w.snaps = newSnapshotWriter(w.o.SnapshotPath, w.o.Prefix, w.o.Logger)
		go w.snaps.run(ctx)
	}
	var index uint64
	fails := 0
	for ctx.Err() == nil {
		// the longest this read should take: a blocking query answers within WaitTime
		// plus Consul's jitter (WaitTime/16); a first read (index 0) at once
		expect := readGrace
		if index > 0 {
			expect += w.o.WaitTime + w.o.WaitTime/16
		}
		rctx, cancel := clock.WithTimeout(ctx, expect)
		kvs, last, err := w.o.Lister.List(rctx, w.o.Prefix, index, w.o.WaitTime)
		answered := clock.Now()
		overdue := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if overdue {
				err = fmt.Errorf("no answer within %s, the longest a read should take (agent hung or overloaded?): %w", expect, err)
			}
			fails++
			w.readFailed(err, fails)
			if !clock.Sleep(ctx, w.backoff(fails)) {
				return
			}
			continue
		}
		if fails > 0 {
			w.o.Logger.Info("consul reachable again", zap.Int("failed_reads", fails))
		}
		fails = 0
		w.mu.Lock()
		w.lastOK = clock.Now()
		w.seedNote = ""
		w.mu.Unlock()
		consulLastOK.SetToCurrentTime()
		w.setStale("")

		switch {
		case last < index:
			// The index went backwards (a Consul restore or a new cluster): reset it, as
			// Consul's blocking-query rules say, and treat this answer as fresh data.
			consulReads.WithLabelValues("index_reset").Inc()
			w.o.Logger.Warn("consul index went backwards; resetting", zap.Uint64("was", index), zap.Uint64("now", last))
			index = 0
		case last == index:
			consulReads.WithLabelValues("unchanged").Inc()
			continue
		default:
			index = last
		}
		if index == 0 {
			index = 1 // an index must be at least 1 to block on
		}
		w.consider(ctx, u, kvs, answered)
	}
}

// consider converts one read and applies it - unless it is unchanged, invalid or held.
// answered is when Consul's answer was read: the update's note gives it, so that the
// event's time tells how long the gateway took after Consul answered.
func (w *Watcher) consider(ctx context.Context, u updater, kvs []KV, answered time.Time) {
	snap, err := w.conv.Convert(w.o.Prefix, kvs)
	if err != nil {
		consulReads.WithLabelValues("changed").Inc()
		u.Reject("consul", "invalid keys", err)
		return
	}
	w.mu.Lock()
	cur := w.current
	if !w.readOnce {
		w.readOnce, w.confirmSeen = true, snap.Confirm // a confirmation older than this process
	}
	spent := snap.Confirm == w.confirmSeen
	w.mu.Unlock()
	if cur != nil && cur.Fingerprint == snap.Fingerprint {
		consulReads.WithLabelValues("unchanged").Inc()
		w.setHeld("")
		return // equal content (e.g. only audit or confirm keys changed)
	}
	consulReads.WithLabelValues("changed").Inc()
	if why := suspicious(cur, snap); why != "" {
		if snap.Confirm != snap.Fingerprint || spent {
			msg := fmt.Sprintf("%s; held, the previous configuration keeps serving. If this is intended, run `floodgate ctl confirm` (fingerprint %s)", why, snap.Fingerprint)
			if w.setHeld(msg) {
				u.Hold("consul", msg)
			}
			return
		}
		w.o.Logger.Warn("applying a held consul update confirmed by an operator", zap.String("fingerprint", snap.Fingerprint), zap.String("was_held_because", why))
		w.mu.Lock()
		w.confirmSeen = snap.Confirm // used: it approves this update only
		w.mu.Unlock()
	}
	// at least MinInterval between applied updates
	w.mu.Lock()
	wait := w.o.MinInterval - w.o.Clock.Now().Sub(w.appliedT)
	w.mu.Unlock()
	if wait > 0 && !w.o.Clock.Sleep(ctx, wait) {
		return
	}
	ov := snap.Overrides
	plan := gateway.Plan{Name: snap.ActivePlan, Overrides: snap.Plan()}
	_, err = u.Apply(gateway.Update{Source: "consul", Overrides: &ov, Plan: &plan, Note: fmt.Sprintf("%d keys, fingerprint %s, consul answered %s", snap.Keys, snap.Fingerprint, answered.UTC().Format("15:04:05.000"))})
	w.setHeld("")
	if err != nil {
		return // recorded and logged by the updater; keep serving what we had
	}
	w.mu.Lock()
	w.current = snap
	w.appliedT = w.o.Clock.Now()
	w.mu.Unlock()
	if w.o.OnApplied != nil {
		w.o.OnApplied(snap)
	}
	if w.snaps != nil {
		w.snaps.save(snap) // written by its own goroutine: the next read does not wait for it
	}
}

// setHeld records the hold reason and reports whether it is new.
func (w *Watcher) setHeld(msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == msg {
		return false
	}
	w.held = msg
	if msg == "" {
		consulHeld.Set(0)
	} else {
		consulHeld.Set(1)
	}
	if w.o.OnHeld != nil {
		w.o.OnHeld(msg)
	}
	return true
}

// suspicious tells why a read should not be applied without confirmation: it empties
// the prefix, or removes most of the keys we serve at once.
func suspicious(cur, next *Snapshot) string {
	if cur == nil || cur.Keys == 0 {
		return ""
	}
	if next.Keys == 0 {
		return fmt.Sprintf("the read is empty (prefix deleted, wiped or ACL-filtered) while %d keys are in force", cur.Keys)
	}
	if cur.Keys >= 4 && next.Keys*2 < cur.Keys {
		return fmt.Sprintf("the read would remove %d of the %d keys in force at once", cur.Keys-next.Keys, cur.Keys)
	}
	return ""
}

func (w *Watcher) readFailed(err error, fails int) {
	result, reason := "error", "consul unreachable: "+err.Error()
	var se api.StatusError
	if errors.As(err, &se) && (se.Code == 403 || se.Code == 401) {
		result, reason = "forbidden", "consul refused the token (ACL): "+err.Error()
	} else if strings.Contains(err.Error(), "403") || strings.Contains(strings.ToLower(err.Error()), "permission denied") {
		result, reason = "forbidden", "consul refused the token (ACL): "+err.Error()
	}
	consulReads.WithLabelValues(result).Inc()
	w.mu.Lock()
	if w.seedNote != "" {
		reason = w.seedNote + "; " + reason
	}
	w.mu.Unlock()
	w.setStale(reason)
	// log the first failure and then every 10th, so an outage does not flood the log
	if fails == 1 || fails%10 == 0 {
		w.o.Logger.Error("consul read failed; keeping the last good configuration",
			zap.String("prefix", w.o.Prefix), zap.Int("consecutive_failures", fails), zap.String("result", result), zap.Error(err))
	}
}

// backoff is capped exponential with full jitter in [d/2, d].
func (w *Watcher) backoff(fails int) time.Duration {
	d := w.o.BackoffMin
	for i := 1; i < fails && d < w.o.BackoffMax; i++ {
		d *= 2
	}
	if d > w.o.BackoffMax {
		d = w.o.BackoffMax
	}
	return d/2 + time.Duration(w.jitter(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
