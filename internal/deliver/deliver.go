// Package deliver is `floodgate deliver`: it consumes the accepted grants of every async
// route from the queue (one durable JetStream pull consumer per route, deliver-<route>,
// shared by every deliverer) and sends them to the route's pool at the route's rate and
// concurrency, both live-tunable (async.deliver.*, from the file or Consul).
//
// The guarantees, and what they rest on:
//   - A grant is acknowledged only after the backend confirmed it (2xx), with a double
//     ack (the server confirms the ack). A deliverer killed between the call and the ack
//     leaves the grant unacknowledged: the queue hands it out again after ack_wait and the
//     backend, which records each grant id once, answers "duplicate".
//   - A backend that cannot be reached (no connection could be made: the request was
//     never sent) is not the grant's fault: the grant is held, its ack wait extended, and
//     sent again every second without counting an attempt, so an outage of any length
//     parks nothing and the grants flow within a second of the backend's return; while
//     every concurrency slot holds a grant, no more are fetched.
//   - A 5xx, a timeout or an error after the connection was made is retried after
//     backoff[attempt-1] (the last wait repeats) by a negative acknowledgement with
//     delay; after max_attempts
//     the grant is parked: terminated in the queue (it stays in the stream, which is the
//     log reconciliation reads), counted and logged with its id. A 409 (the id recorded
//     with other content) is parked as a conflict, another 4xx as rejected.
//   - async.deliver.rate is the total of all deliverers: each live deliverer sends at
//     rate / live, where live is the number of deliverers whose heartbeat (a key in the
//     JetStream KV bucket floodgate_deliverers, refreshed every second) is younger than
//     the heartbeat TTL. A deliverer that stops deletes its key; one that dies is
//     forgotten after the TTL, and the others' shares grow back.
//   - async.deliver.concurrency bounds the calls in flight in each deliverer; paused
//     stops calls (grants already fetched are held, their ack wait extended).
package deliver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/failpoint"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/queue"
)

var (
	deliveries = metrics.NewCounterVec("delivery_total",
		"Delivery calls by route and result: delivered, duplicate (the backend had the id already), error (5xx, timeout, connection; retried), conflict (409), rejected (other 4xx), undecodable.", "route", "result")
	retries = metrics.NewCounterVec("delivery_retries_total",
		"Grants handed back to the queue for a later attempt (negative acknowledgement with backoff).", "route")
	parked = metrics.NewCounterVec("delivery_parked_total",
		"Grants parked (terminated in the queue, left for reconciliation) by route and reason: attempts, conflict, rejected, undecodable.", "route", "reason")
	backlogGauge = metrics.NewGaugeVec("delivery_backlog",
		"Grants of the route not yet acknowledged: pending in the queue plus handed out and unacknowledged.", "route")
	oldestGauge = metrics.NewGaugeVec("delivery_oldest_age_seconds",
		"Age of the oldest grant of the route not yet acknowledged (0: none).", "route")
	rateGauge = metrics.NewGaugeVec("delivery_rate_limit",
		"Grants per second this deliverer sends for the route: async.deliver.rate divided by the live deliverers (0 while paused).", "route")
	unreachableCalls = metrics.NewCounterVec("delivery_unreachable_total",
		"Delivery calls that could not reach a backend (no connection could be made: nothing was sent); the grant is held and called again.", "route")
	heldGauge = metrics.NewGaugeVec("delivery_held",
		"Grants of the route held by this deliverer because its backend cannot be reached (called again every second, without counting an attempt).", "route")
	liveGauge = metrics.NewGauge("deliverers_live",
		"Deliverers with a fresh heartbeat (this one included); the routes' rates are split by this number.")
)

// HeartbeatBucket is the JetStream KV bucket of the deliverers' heartbeats.
const HeartbeatBucket = "floodgate_deliverers"

// Options configures a Deliverer.
type Options struct {
	Client *queue.Client
	// Config returns the configuration in force (it changes live).
	Config func() *config.Config
	// ID names this deliverer in the heartbeat bucket (default hostname-pid).
	ID     string
	Logger *zap.Logger
	// Heartbeat is how often the heartbeat is written (default 1s), HeartbeatTTL how long
	// a deliverer counts as live after its last one (default 5s).
	Heartbeat, HeartbeatTTL time.Duration
	// Deliverers is how many deliverers are expected to share a consumer at most; the
	// consumer's max_ack_pending is concurrency x Deliverers x 4 (default 8).
	Deliverers int
}

// Deliverer delivers the grants of every async route.
type Deliverer struct {
	o      Options
	log    *zap.Logger
	caller *Caller
	live   atomic.Int64

	mu      sync.Mutex
	workers map[string]*worker
	backlog map[string]queue.Backlog
}

// New returns a Deliverer; Run starts it.
func New(o Options) *Deliverer {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	o.ID = keySafe(o.ID)
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.HeartbeatTTL <= 0 {
		o.HeartbeatTTL = 5 * time.Second
	}
	if o.Deliverers <= 0 {
		o.Deliverers = 8
	}
	d := &Deliverer{o: o, log: o.Logger, caller: NewCaller(), workers: map[string]*worker{}, backlog: map[string]queue.Backlog{}}
	d.live.Store(1)
	return d
}

// ID is the deliverer's id.
func (d *Deliverer) ID() string { return d.o.ID }

// Live is the number of live deliverers this one splits the rates by.
func (d *Deliverer) Live() int { return int(d.live.Load()) }

// Run delivers until ctx is done; it returns after every call in flight ended (and was
// acknowledged or handed back).
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.heartbeats(ctx) }()
	go func() { defer wg.Done(); d.watchBacklog(ctx) }()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		d.syncRoutes(ctx, &wg)
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// syncRoutes starts a worker for every async route of the configuration in force and
// stops the workers of routes that are no longer async.
func (d *Deliverer) syncRoutes(ctx context.Context, wg *sync.WaitGroup) {
	cfg := d.o.Config()
	if cfg == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, w := range d.workers {
		if r := cfg.Routes[name]; r == nil || r.Async == nil {
			w.cancel()
			delete(d.workers, name)
			rateGauge.WithLabelValues(name).Set(0)
			d.log.Info("route no longer async; its delivery stopped", zap.String("route", name))
		}
	}
	for name, r := range cfg.Routes {
		if r.Async == nil || d.workers[name] != nil {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{d: d, route: name, cancel: cancel, slot: make(chan struct{}, 1)}
		d.workers[name] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx) }()
	}
}

// heartbeats keeps this deliverer's key in the heartbeat bucket fresh and counts the
// live deliverers.
func (d *Deliverer) heartbeats(ctx context.Context) {
	var kv jetstream.KeyValue
	t := time.NewTicker(d.o.Heartbeat)
	defer t.Stop()
	for {
		if kv == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			replicas := 1
			if cfg := d.o.Config(); cfg != nil {
				replicas = cfg.Queue.Replicas
			}
			b, err := d.o.Client.JS.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
				Bucket: HeartbeatBucket, Description: "floodgate deliver: live deliverers (rates are split by their number)",
				TTL: d.o.HeartbeatTTL, Storage: jetstream.MemoryStorage, Replicas: replicas, History: 1,
			})
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("heartbeat bucket not available; assuming the last known number of deliverers", zap.Error(err), zap.Int64("live", d.live.Load()))
				}
			} else {
				kv = b
			}
		}
		if kv != nil {
			if n, err := d.beat(ctx, kv); err == nil {
				if old := d.live.Swap(int64(n)); old != int64(n) {
					d.log.Info("live deliverers changed; rates re-split", zap.Int64("from", old), zap.Int("to", n))
				}
				liveGauge.Set(float64(n))
			} else if ctx.Err() == nil {
				d.log.Warn("heartbeat failed", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			if kv != nil {
				dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				kv.Purge(dctx, d.o.ID)
				cancel()
			}
			return
		case <-t.C:
		}
	}
}

// beat writes this deliverer's heartbeat and returns the number of live deliverers.
func (d *Deliverer) beat(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := kv.Put(cctx, d.o.ID, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return 0, err
	}
	lister, err := kv.ListKeys(cctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for k := range lister.Keys() {
		if k == d.o.ID {
			n++
			continue
		}
		e, err := kv.Get(cctx, k)
		if err != nil {
			continue
		}
		if time.Since(e.Created()) < d.o.HeartbeatTTL {
			n++
		}
	}
	if n < 1 {
		n = 1
	}
	return n, nil
}

// watchBacklog refreshes the backlog gauges of every async route.
func (d *Deliverer) watchBacklog(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		cfg := d.o.Config()
		if cfg != nil {
			for name, r := range cfg.Routes {
				if r.Async == nil {
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				b, err := d.o.Client.RouteBacklog(cctx, name)
				cancel()
				if err != nil {
					continue
				}
				backlogGauge.WithLabelValues(name).Set(float64(b.Pending + uint64(b.AckPending)))
				oldestGauge.WithLabelValues(name).Set(b.OldestAge.Seconds())
				d.mu.Lock()
				d.backlog[name] = b
				d.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RouteStatus is one route's delivery state, for /status and `floodgate ctl async`.
type RouteStatus struct {
	Route       string  `json:"route"`
	Paused      bool    `json:"paused"`
	Rate        float64 `json:"rate"`
	RateShare   float64 `json:"rate_share"`
	Concurrency int     `json:"concurrency"`
	InFlight    int64   `json:"in_flight"`
	Delivered   uint64  `json:"delivered"`
	Duplicates  uint64  `json:"duplicates"`
	Retries     uint64  `json:"retries"`
	Parked      uint64  `json:"parked"`
	// Held is how many grants wait for the route's backend to be reachable again.
	Held     int64         `json:"held"`
	Backlog  queue.Backlog `json:"backlog"`
	Consumer string        `json:"consumer"`
	Error    string        `json:"error,omitempty"`
}

// Status is the deliverer's state.
type Status struct {
	ID     string        `json:"id"`
	Live   int           `json:"deliverers_live"`
	Routes []RouteStatus `json:"routes"`
}

// Status returns the deliverer's state.
func (d *Deliverer) Status() Status {
	st := Status{ID: d.o.ID, Live: d.Live()}
	cfg := d.o.Config()
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, w := range d.workers {
		rs := RouteStatus{Route: name, Consumer: queue.ConsumerName(name), InFlight: w.inflight.Load(),
			Delivered: w.delivered.Load(), Duplicates: w.duplicates.Load(), Retries: w.retries.Load(), Parked: w.parked.Load(),
			Held: w.held.Load(), Backlog: d.backlog[name]}
		if cfg != nil && cfg.Routes[name] != nil && cfg.Routes[name].Async != nil {
			dc := cfg.Routes[name].Async.Deliver
			rs.Paused, rs.Rate, rs.Concurrency = dc.Paused, dc.Rate, dc.Concurrency
			rs.RateShare = dc.Rate / float64(d.Live())
		}
		if e, ok := w.lastErr.Load().(string); ok {
			rs.Error = e
		}
		st.Routes = append(st.Routes, rs)
	}
	sort.Slice(st.Routes, func(i, j int) bool { return st.Routes[i].Route < st.Routes[j].Route })
	return st
}

// worker delivers one route's grants.
type worker struct {
	d      *Deliverer
	route  string
	cancel context.CancelFunc

	inflight atomic.Int64
	slot     chan struct{} // signalled when a call ends
	lastErr  atomic.Value

	delivered, duplicates, retries, parked atomic.Uint64
	held                                   atomic.Int64 // grants held for an unreachable backend

	cons      jetstream.Consumer
	consCfg   queue.ConsumerConfig
	consRetry time.Time
	pace      pacer
}

func (w *worker) async() *config.Async {
	cfg := w.d.o.Config()
	if cfg == nil || cfg.Routes[w.route] == nil {
		return nil
	}
	return cfg.Routes[w.route].Async
}

func (w *worker) setErr(err error) {
	if err == nil {
		w.lastErr.Store("")
		return
	}
	w.lastErr.Store(err.Error())
}

func (w *worker) ensure(ctx context.Context, want queue.ConsumerConfig) (jetstream.Consumer, error) {
	if _, err := w.d.o.Client.EnsureStream(ctx); err != nil {
		return nil, err
	}
	return w.d.o.Client.EnsureConsumer(ctx, want)
}

// consumer creates or updates the route's consumer when its settings changed.
func (w *worker) consumer(ctx context.Context, a *config.Async) (jetstream.Consumer, error) {
	want := queue.ConsumerConfig{
		Route:         w.route,
		AckWait:       time.Duration(a.Deliver.AckWait),
		MaxDeliver:    a.Deliver.MaxAttempts + 1,
		MaxAckPending: max(a.Deliver.Concurrency*w.d.o.Deliverers*4, 1000),
	}
	if w.cons != nil && (want == w.consCfg || time.Now().Before(w.consRetry)) {
		return w.cons, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := w.ensure(cctx, want)
	if err != nil {
		if w.cons != nil {
			// a live change the queue refused: keep delivering with the consumer as it is
			w.consRetry = time.Now().Add(10 * time.Second)
			w.d.log.Warn("delivery consumer not updated; delivering with its previous settings, retrying in 10s",
				zap.String("route", w.route), zap.Error(err))
			return w.cons, nil
		}
		return nil, err
	}
	w.cons, w.consCfg = c, want
	w.d.log.Info("delivery consumer ready", zap.String("route", w.route), zap.String("consumer", queue.ConsumerName(w.route)),
		zap.Duration("ack_wait", want.AckWait), zap.Int("max_deliver", want.MaxDeliver), zap.Int("max_ack_pending", want.MaxAckPending))
	return c, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *worker) run(ctx context.Context) {
	log := w.d.log.With(zap.String("route", w.route))
	log.Info("delivering", zap.String("subject", queue.Subject(w.route)))
	defer func() {
		for w.inflight.Load() > 0 {
			<-w.slot
		}
	}()
	for ctx.Err() == nil {
		a := w.async()
		if a == nil {
			return
		}
		if a.Deliver.Paused {
			rateGauge.WithLabelValues(w.route).Set(0)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		cons, err := w.consumer(ctx, a)
		if err != nil {
			w.setErr(err)
			if ctx.Err() == nil {
				log.Warn("delivery consumer not available; retrying", zap.Error(err))
			}
			sleepCtx(ctx, time.Second)
			continue
		}
		share := a.Deliver.Rate / float64(w.d.Live())
		rateGauge.WithLabelValues(w.route).Set(share)
		free := int64(a.Deliver.Concurrency) - w.inflight.Load()
		if free <= 0 {
			w.waitSlot(ctx)
			continue
		}
		// Fetch at most about one second of work, so that fetched grants never wait
		// long in this process (their ack wait is running).
		n := int(min(free, int64(math.Ceil(share))))
		batch, err := cons.Fetch(max(n, 1), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			w.setErr(err)
			if ctx.Err() == nil {
				log.Warn("fetch failed; retrying", zap.Error(err))
			}
			sleepCtx(ctx, 500*time.Millisecond)
			continue
		}
		// Time spent waiting for the queue is no debt to catch up on: after a wait longer
		// than two intervals (and a fetch's round trip) the pacer starts afresh.
		idle := max(2*time.Duration(float64(time.Second)/share), 5*time.Millisecond)
		got, waitStart := 0, time.Now()
		for msg := range batch.Messages() {
			if time.Since(waitStart) > idle {
				w.pace.idle()
			}
			got++
			w.dispatch(ctx, msg)
			waitStart = time.Now()
		}
		if got == 0 {
			w.pace.idle()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil &&
			!errors.Is(err, context.DeadlineExceeded) {
			w.setErr(err)
			log.Debug("fetch ended", zap.Error(err))
			sleepCtx(ctx, 200*time.Millisecond)
		} else {
			w.setErr(nil)
		}
	}
}

func (w *worker) waitSlot(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-w.slot:
	case <-time.After(50 * time.Millisecond):
	}
}

// dispatch waits for the route's pace and a free slot (holding the grant while the
// route is paused), then delivers msg in its own goroutine.
func (w *worker) dispatch(ctx context.Context, msg jetstream.Msg) {
	lastProgress := time.Now()
	for {
		a := w.async()
		if ctx.Err() != nil || a == nil {
			// stopping: hand the grant back at once (not counted as a failed attempt by us;
			// the queue counts the delivery)
			msg.Nak()
			return
		}
		if a.Deliver.Paused {
			rateGauge.WithLabelValues(w.route).Set(0)
			if time.Since(lastProgress) > time.Duration(a.Deliver.AckWait)/3 {
				msg.InProgress()
				lastProgress = time.Now()
			}
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		if w.inflight.Load() >= int64(a.Deliver.Concurrency) {
			w.waitSlot(ctx)
			continue
		}
		share := a.Deliver.Rate / float64(w.d.Live())
		rateGauge.WithLabelValues(w.route).Set(share)
		if !w.pace.wait(ctx, share) {
			continue
		}
		break
	}
	w.inflight.Add(1)
	go func() {
		defer func() {
			w.inflight.Add(-1)
			select {
			case w.slot <- struct{}{}:
			default:
			}
		}()
		w.handle(ctx, msg)
	}()
}

// handle makes one delivery call for msg and settles it with the queue.
func (w *worker) handle(ctx context.Context, msg jetstream.Msg) {
	a := w.async()
	if a == nil {
		msg.Nak()
		return
	}
	dc := a.Deliver
	md, err := msg.Metadata()
	if err != nil {
		msg.Nak()
		return
	}
	rec, err := grant.Decode(msg.Data())
	if err != nil {
		deliveries.WithLabelValues(w.route, "undecodable").Inc()
		w.park(msg, "undecodable", fmt.Sprintf("stream seq %d", md.Sequence.Stream), err.Error())
		return
	}
	cfg := w.d.o.Config()
	t, ok := TargetOf(cfg, w.route)
	if !ok {
		msg.Nak()
		return
	}
	failpoint.Hit("deliver.before_call")
	out := w.d.caller.Call(t, rec)
	if out.Unreachable {
		if out, ok = w.holdUnreachable(ctx, msg, rec, out); !ok {
			msg.Nak() // stopping, or the route is gone: the queue hands it out again
			return
		}
	}
	attempt := int(md.NumDelivered)
	switch out.Class {
	case Delivered:
		failpoint.Hit("deliver.after_call")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := msg.DoubleAck(ctx)
		cancel()
		if err != nil {
			// delivered, not acknowledged: the queue hands it out again after ack_wait and
			// the backend answers "duplicate"
			w.d.log.Warn("delivered but the acknowledgement failed; it will be redelivered (harmless: same grant id)",
				zap.String("route", w.route), zap.String("grant_id", rec.ID), zap.Error(err))
		}
		if out.Duplicate {
			w.duplicates.Add(1)
			deliveries.WithLabelValues(w.route, "duplicate").Inc()
		} else {
			w.delivered.Add(1)
			deliveries.WithLabelValues(w.route, "delivered").Inc()
		}
	case Retry:
		deliveries.WithLabelValues(w.route, "error").Inc()
		if attempt >= dc.MaxAttempts {
			w.park(msg, "attempts", rec.ID, fmt.Sprintf("%d attempts, last: %s", attempt, out))
			return
		}
		wait := time.Second
		if len(dc.Backoff) > 0 {
			wait = time.Duration(dc.Backoff[min(attempt-1, len(dc.Backoff)-1)])
		}
		w.retries.Add(1)
		retries.WithLabelValues(w.route).Inc()
		if err := msg.NakWithDelay(wait); err != nil {
			w.d.log.Warn("could not hand the grant back; the queue redelivers it after ack_wait", zap.String("grant_id", rec.ID), zap.Error(err))
		}
		w.d.log.Debug("delivery failed; retrying later", zap.String("route", w.route), zap.String("grant_id", rec.ID),
			zap.Int("attempt", attempt), zap.Duration("backoff", wait), zap.Stringer("outcome", out))
	case Conflict:
		deliveries.WithLabelValues(w.route, "conflict").Inc()
		w.park(msg, "conflict", rec.ID, out.String())
	case Rejected:
		deliveries.WithLabelValues(w.route, "rejected").Inc()
		w.park(msg, "rejected", rec.ID, out.String())
	}
}

// UnreachableHold is how often a grant held for an unreachable backend is sent again.
const UnreachableHold = time.Second

// holdUnreachable keeps a grant whose backend could not be reached (the call was never
// sent) and calls again every UnreachableHold, its ack wait extended, until a call reaches
// a backend; it returns that call's outcome. A backend that is down is not the grant's
// fault: waiting does not count an attempt (the grant is not handed back, so the queue
// does not count a delivery), an outage of any length parks nothing, and the grants come
// through within UnreachableHold of the backend's return instead of after their backoff.
// While every slot holds a grant the worker fetches no more. ok is false when ctx ends or
// the route is no longer async: the caller hands the grant back.
func (w *worker) holdUnreachable(ctx context.Context, msg jetstream.Msg, rec *grant.Record, out Outcome) (_ Outcome, ok bool) {
	if w.held.Add(1) == 1 {
		w.d.log.Warn("delivery backend unreachable: holding the route's grants and calling again every second",
			zap.String("route", w.route), zap.Stringer("outcome", out))
	}
	heldGauge.WithLabelValues(w.route).Inc()
	defer func() {
		heldGauge.WithLabelValues(w.route).Dec()
		if w.held.Add(-1) == 0 && ok {
			w.d.log.Info("delivery backend reachable again", zap.String("route", w.route))
		}
	}()
	lastProgress := time.Now()
	for out.Unreachable {
		unreachableCalls.WithLabelValues(w.route).Inc()
		w.setErr(out.Err)
		if !sleepCtx(ctx, UnreachableHold) {
			return out, false
		}
		a := w.async()
		if a == nil {
			return out, false
		}
		if time.Since(lastProgress) > time.Duration(a.Deliver.AckWait)/3 {
			msg.InProgress()
			lastProgress = time.Now()
		}
		t, found := TargetOf(w.d.o.Config(), w.route)
		if !found {
			return out, false
		}
		out = w.d.caller.Call(t, rec)
	}
	return out, true
}

// park terminates a grant in the queue: it is not redelivered, it stays in the stream,
// and reconciliation reports it as missing.
func (w *worker) park(msg jetstream.Msg, reason, id, detail string) {
	w.parked.Add(1)
	parked.WithLabelValues(w.route, reason).Inc()
	w.d.log.Warn("grant parked (left for reconciliation)", zap.String("route", w.route), zap.String("grant_id", id),
		zap.String("reason", reason), zap.String("detail", detail))
	if err := msg.TermWithReason("floodgate parked: " + reason); err != nil {
		w.d.log.Warn("could not terminate the parked grant; the queue may redeliver it", zap.String("grant_id", id), zap.Error(err))
	}
}

// pacer spaces calls at a rate: each call is due one interval after the previous one's
// due time, so sleeping late does not lose rate. A pacer that fell behind while there was
// work (a stalled machine, a backend slower for a moment: all concurrency slots busy)
// catches up by at most one second's worth of calls, so the rate holds on average; after
// waiting for the queue (empty, or fed slower than the rate) it starts afresh, with no
// burst.
type pacer struct {
	next time.Time
	// clock and sleep are time.Now and sleepCtx; tests step a fake clock.
	clock func() time.Time
	sleep func(context.Context, time.Duration) bool
}

func (p *pacer) idle() { p.next = time.Time{} }

// wait returns when the next call at rate is due (false: ctx ended, or no rate).
func (p *pacer) wait(ctx context.Context, rate float64) bool {
	clock, sleep := p.clock, p.sleep
	if clock == nil {
		clock, sleep = time.Now, sleepCtx
	}
	if !(rate > 0) {
		sleep(ctx, 100*time.Millisecond)
		return false
	}
	interval := time.Duration(float64(time.Second) / rate)
	now := clock()
	if p.next.IsZero() {
		p.next = now
	}
	if floor := now.Add(-time.Second); p.next.Before(floor) {
		p.next = floor
	}
	due := p.next
	p.next = p.next.Add(interval)
	if d := due.Sub(now); d > 0 {
		return sleep(ctx, d)
	}
	return true
}

func keySafe(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
