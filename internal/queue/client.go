// Package queue is floodgate's durable queue of accepted grants: a NATS JetStream stream,
// served by embedded nats-server nodes (`floodgate queue`, server.go) or by an existing
// NATS cluster, and the client side the gateway, the deliverer and reconciliation share.
//
// What a queue acknowledgement means (the facts the design rests on):
//   - JetStream's file store syncs to disk every 2 minutes by default (sync_interval); an
//     acknowledged message is on disk only with sync "always" (what `floodgate queue` runs
//     with) or once a quorum of an R3/R5 stream stored it. Jepsen's analysis of NATS 2.12.1
//     and nats-server #7564 found acknowledged writes lost with the defaults.
//   - With sync "always" every stored message costs an fsync (about 1,300 messages/s on
//     this project's 2-core test machine). An atomic batch (Nats-Batch-Id, up to 1,000
//     messages, one commit acknowledgement) on an R1 file store is synced once for the
//     whole batch (nats-server 2.15 "coalesced R1 durability boundary"): 11,000-17,000
//     messages/s on the same machine. PublishBatch uses it.
//   - The dedupe window (Nats-Msg-Id, 2 minutes by default) remembers an id even after
//     the message was acknowledged (#2921), and an atomic batch that contains a remembered
//     id fails whole. Grants are therefore published WITHOUT Nats-Msg-Id: a grant published
//     twice (a resubmission, a replayed journal record) is two messages with the same grant
//     id, and the delivery backend, which records each grant id once, makes the second
//     delivery a no-op. Reconciliation counts grants by id.
//   - The stream discards NEW messages when full (never the oldest): a full stream refuses
//     the batch and the gateway journals it. (#4771 reports silent loss with some
//     limit/discard combinations; the tests check that refused batches are refused.)
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"
)

// SubjectPrefix is the prefix of the subjects grants are published on: one subject per
// route, SubjectPrefix + route.
const SubjectPrefix = "floodgate.grants."

// Subject returns the subject of a route's grants.
func Subject(route string) string { return SubjectPrefix + route }

// StreamConfig is the stream's configuration as floodgate sets it.
type StreamConfig struct {
	Name     string
	Replicas int
	MaxAge   time.Duration
	MaxBytes int64
}

// Options configures Connect.
type Options struct {
	// URLs are the NATS servers, comma-separated.
	URLs   string
	Name   string // client name shown by the server
	Stream StreamConfig
	Logger *zap.Logger
	// ConnectTimeout bounds the first connection attempt (default 2s).
	ConnectTimeout time.Duration
}

// Client is a connection to the queue. It reconnects by itself forever; while
// disconnected, publishing fails at once (no client-side buffering: a grant is either
// acknowledged by the stream or handed to the journal, never held in memory).
type Client struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	stream StreamConfig
	log    *zap.Logger
}

// Connect connects to the queue. The servers need not be up: the client keeps trying in
// the background, and Connected says when it is connected.
func Connect(opts Options) (*Client, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 2 * time.Second
	}
	c := &Client{stream: opts.Stream, log: log}
	nc, err := nats.Connect(opts.URLs,
		nats.Name(opts.Name),
		nats.Timeout(opts.ConnectTimeout),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 0),
		nats.ReconnectBufSize(-1), // no buffering while disconnected: publish fails at once
		nats.PingInterval(2*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("queue disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("queue reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", opts.URLs, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	c.NC, c.JS = nc, js
	return c, nil
}

// Connected reports whether the client is connected to a server now.
func (c *Client) Connected() bool { return c.NC.IsConnected() }

// Close closes the connection.
func (c *Client) Close() { c.NC.Close() }

// StreamName is the name of the grants stream.
func (c *Client) StreamName() string { return c.stream.Name }

// EnsureStream creates the grants stream, or updates it to the configured limits.
func (c *Client) EnsureStream(ctx context.Context) (jetstream.Stream, error) {
	cfg := jetstream.StreamConfig{
		Name:               c.stream.Name,
		Description:        "floodgate: accepted grants of async routes",
		Subjects:           []string{SubjectPrefix + ">"},
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxAge:             c.stream.MaxAge,
		MaxBytes:           c.stream.MaxBytes,
		Storage:            jetstream.FileStorage,
		Replicas:           c.stream.Replicas,
		AllowAtomicPublish: true,
	}
	s, err := c.JS.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, streamError(c.stream.Name, c.stream.MaxBytes, err)
	}
	return s, nil
}

// jsInsufficientResources is JetStream's err_code when a stream's max_bytes is more than
// the node can reserve (its max store: by default 75% of the disk's free space).
const jsInsufficientResources jetstream.ErrorCode = 10047

// streamError says what to do when the queue refuses the stream for its size: NATS's
// own message ("insufficient storage resources available") names neither number.
func streamError(name string, maxBytes int64, err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == jsInsufficientResources && maxBytes > 0 {
		return fmt.Errorf("queue: stream %s: the queue node cannot reserve queue.max_bytes (%d MiB) on its disk: "+
			"free disk space on the node, start it with a larger -max-store, or lower queue.max_bytes (%w)",
			name, maxBytes>>20, err)
	}
	return fmt.Errorf("queue: stream %s: %w", name, err)
}

// Errors of PublishBatch, for metrics and messages.
var (
	ErrNotConnected = errors.New("queue not connected")
	ErrFull         = errors.New("queue full")
	ErrRefused      = errors.New("queue refused the batch")
)

// batchAck is the stream's answer to an atomic batch commit.
type batchAck struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Batch  string `json:"batch"`
	Count  int    `json:"count"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// Outgoing is one message of a batch.
type Outgoing struct {
	Subject string
	Data    []byte
}

// PublishBatch stores payloads on one subject as one atomic batch; see Publish.
func (c *Client) PublishBatch(ctx context.Context, subject string, payloads [][]byte) error {
	msgs := make([]Outgoing, len(payloads))
	for i, p := range payloads {
		msgs[i] = Outgoing{Subject: subject, Data: p}
	}
	return c.Publish(ctx, msgs)
}

// Publish stores msgs (each on its own subject of the grants stream) as one atomic batch and returns once the
// stream acknowledged the whole batch (all stored) or failed (none stored). At most 1,000
// messages (JetStream's atomic batch limit). ctx bounds the wait for the acknowledgement.
//
// A failure is not proof that nothing was stored: an acknowledgement lost on the way
// back leaves a stored batch behind. Callers journal the grants then, and the second copy
// is harmless (grants are delivered idempotently by id).
func (c *Client) Publish(ctx context.Context, msgs []Outgoing) error {
	n := len(msgs)
	switch {
	case n == 0:
		return nil
	case n > 1000:
		return fmt.Errorf("queue: batch of %d is above the atomic batch limit of 1000", n)
	case !c.NC.IsConnected():
		return ErrNotConnected
	}
	id := nuid.Next()
	var seq [20]byte
	for i, o := range msgs {
		m := &nats.Msg{Subject: o.Subject, Data: o.Data, Header: nats.Header{}}
		m.Header["Nats-Batch-Id"] = []string{id}
		m.Header["Nats-Batch-Sequence"] = []string{string(strconv.AppendInt(seq[:0], int64(i+1), 10))}
		if i < n-1 {
			if err := c.NC.PublishMsg(m); err != nil {
				return fmt.Errorf("%w: %v", ErrNotConnected, err)
			}
			continue
		}
		m.Header["Nats-Batch-Commit"] = []string{"1"}
		resp, err := c.NC.RequestMsgWithContext(ctx, m)
		if err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				return fmt.Errorf("%w: no stream answers on %s", ErrRefused, m.Subject)
			}
			return fmt.Errorf("queue: waiting for the batch acknowledgement: %w", err)
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("%w: unreadable acknowledgement %q", ErrRefused, resp.Data)
		}
		if ack.Error != nil {
			d := ack.Error.Description
			if strings.Contains(d, "maximum") || strings.Contains(d, "resources exceeded") || strings.Contains(d, "insufficient resources") {
				return fmt.Errorf("%w: %s (code %d)", ErrFull, d, ack.Error.ErrCode)
			}
			return fmt.Errorf("%w: %s (code %d)", ErrRefused, d, ack.Error.ErrCode)
		}
		if ack.Count != n {
			return fmt.Errorf("%w: acknowledged %d of %d messages", ErrRefused, ack.Count, n)
		}
	}
	return nil
}

// ConsumerName is the durable consumer the deliverers of a route share.
func ConsumerName(route string) string { return "deliver-" + route }

// ConsumerConfig is the delivery consumer's configuration for a route.
type ConsumerConfig struct {
	Route         string
	AckWait       time.Duration
	MaxDeliver    int
	MaxAckPending int
}

// EnsureConsumer creates or updates the durable pull consumer of a route's deliverers:
// explicit acknowledgement, a redelivery after AckWait, at most MaxDeliver deliveries.
func (c *Client) EnsureConsumer(ctx context.Context, cc ConsumerConfig) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       ConsumerName(cc.Route),
		Description:   "floodgate deliver: grants of route " + cc.Route,
		FilterSubject: Subject(cc.Route),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cc.AckWait,
		MaxDeliver:    cc.MaxDeliver,
		MaxAckPending: cc.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, c.stream.Name, cfg)
	if err != nil {
		return nil, fmt.Errorf("queue: consumer %s: %w", cfg.Durable, err)
	}
	return cons, nil
}

// Backlog is what is left to deliver for one route.
type Backlog struct {
	Route string `json:"route"`
	// Pending is grants not yet handed to a deliverer; AckPending handed out and not yet
	// acknowledged.
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	// Delivered is the consumer's last delivered stream sequence, AckFloor the sequence
	// up to which every grant is acknowledged (delivered or parked).
	Delivered uint64 `json:"delivered_seq"`
	AckFloor  uint64 `json:"ack_floor_seq"`
	// OldestAge is the age of the oldest grant not yet acknowledged (0: none).
	OldestAge time.Duration `json:"oldest_age_ns"`
	Paused    bool          `json:"paused"`
}

// RouteBacklog reads a route's backlog from its delivery consumer (a route whose
// consumer does not exist yet has everything pending: reported from the stream).
func (c *Client) RouteBacklog(ctx context.Context, route string) (Backlog, error) {
	b := Backlog{Route: route}
	s, err := c.JS.Stream(ctx, c.stream.Name)
	if err != nil {
		return b, fmt.Errorf("queue: stream %s: %w", c.stream.Name, err)
	}
	cons, err := s.Consumer(ctx, ConsumerName(route))
	var first uint64
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(Subject(route)))
		if err != nil {
			return b, err
		}
		b.Pending = info.State.Subjects[Subject(route)]
		if b.Pending > 0 {
			first = 1
		}
	} else if err != nil {
		return b, err
	} else {
		info, err := cons.Info(ctx)
		if err != nil {
			return b, err
		}
		b.Pending, b.AckPending = info.NumPending, info.NumAckPending
		b.Delivered, b.AckFloor = info.Delivered.Stream, info.AckFloor.Stream
		b.Paused = info.Paused
		if b.Pending > 0 || b.AckPending > 0 {
			first = info.AckFloor.Stream + 1
		}
	}
	if first > 0 {
		if m, err := s.GetMsg(ctx, first, jetstream.WithGetMsgSubject(Subject(route))); err == nil {
			b.OldestAge = time.Since(m.Time)
		} else if m, err := s.GetLastMsgForSubject(ctx, Subject(route)); err == nil && b.Pending+uint64(b.AckPending) == 1 {
			b.OldestAge = time.Since(m.Time)
		}
	}
	return b, nil
}

// Message is one stored grant message, as Scan reads it.
type Message struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Data    []byte
}

// Scan reads every message of the grants stream on subjects matching filter (e.g.
// floodgate.grants.> or one route's subject) stored at or after since (zero: from the
// start), up to the last message stored when Scan began, and calls fn for each in order.
func (c *Client) Scan(ctx context.Context, filter string, since time.Time, fn func(Message) error) error {
	s, err := c.JS.Stream(ctx, c.stream.Name)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", c.stream.Name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		occ.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		occ.OptStartTime = &since
	}
	cons, err := s.OrderedConsumer(ctx, occ)
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if md.Sequence.Stream > last {
				return nil
			}
			if err := fn(Message{Seq: md.Sequence.Stream, Subject: m.Subject(), Time: md.Timestamp, Data: m.Data()}); err != nil {
				return err
			}
			if md.Sequence.Stream == last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if got == 0 {
			// Nothing came in 2 s: either nothing more matches (the filter, the start
			// time), or the stream cannot answer now (a leader election after a node was
			// lost). Only the server's count of what this consumer still has to deliver
			// tells them apart; returning here on a stalled stream would give a partial
			// scan as if it were whole.
			if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("queue: scan of %s stopped before its end (the stream did not answer): %w", filter, err)
		}
	}
}
