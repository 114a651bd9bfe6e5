// Package config turns configuration layers (the YAML file, per-key overrides, an active
// plan) into one validated, typed Config - or into the complete list of problems, each
// naming where the bad value came from (file:line or the Consul key) and which field it is.
//
// It is the converter of the source -> converter -> updater split: sources (the file,
// Consul) produce Documents and Overrides; Load composes them in precedence order
// (file < overrides < plan), decodes strictly (unknown fields are errors), and validates
// the whole; the gateway's updater builds and swaps. Nothing here touches running state.
package config

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/filters"
)

// Config is the whole, validated configuration of one gateway process.
type Config struct {
	Server Server `yaml:"server" json:"server"`
	Admin  Admin  `yaml:"admin" json:"admin"`
	// AccessLog is the optional access log (off by default).
	AccessLog AccessLog `yaml:"access_log" json:"access_log"`
	// Log sets the process log's level and format; empty values keep the command line's
	// (-log-level, -log-format). Both change on a reload.
	Log Log `yaml:"log" json:"log"`
	// Queue is where async routes record their grants (NATS JetStream + the local journal).
	Queue  Queue             `yaml:"queue" json:"queue"`
	Pools  map[string]*Pool  `yaml:"pools" json:"pools"`
	Routes map[string]*Route `yaml:"routes" json:"routes"`

	// Sources lists every value that was set (not defaulted), with where it came from.
	Sources []Leaf `yaml:"-" json:"-"`
}

// Server is the public (traffic) listener. The defaults are the safe ones of
// RELIABILITY.md.
type Server struct {
	Listen       string           `yaml:"listen" json:"listen"`
	ReadTimeout  filters.Duration `yaml:"read_timeout" json:"read_timeout"`
	WriteTimeout filters.Duration `yaml:"write_timeout" json:"write_timeout"`
	IdleTimeout  filters.Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// ReadBufferSize bounds the request head (line + headers); larger heads get 431.
	ReadBufferSize filters.Size `yaml:"read_buffer_size" json:"read_buffer_size"`
	// MaxRequestBody is the default and the largest per-route body limit.
	MaxRequestBody filters.Size `yaml:"max_request_body" json:"max_request_body"`
	// Concurrency caps requests served at once (memory: about 16 KiB each).
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// MaxConnsPerIP caps the open connections from one client address (0: no cap).
	// Further connections get 429 edge/too_many_connections and are closed. Leave it 0
	// behind a load balancer or proxy that connects from a few addresses.
	MaxConnsPerIP int `yaml:"max_conns_per_ip" json:"max_conns_per_ip"`
	// VerdictHeader adds X-Floodgate-Verdict to every answer the gateway makes itself.
	VerdictHeader bool `yaml:"verdict_header" json:"verdict_header"`
	// TrustedProxies are the networks whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies"`
	// ShutdownTimeout bounds the graceful drain on SIGINT/SIGTERM.
	ShutdownTimeout filters.Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	// DrainDelay is how long the gateway keeps serving after SIGTERM with /readyz
	// answering 503 (and Connection: close on every answer), so that load balancers take
	// it out of rotation before the listener closes. 0 (default): close at once.
	DrainDelay filters.Duration `yaml:"drain_delay" json:"drain_delay"`
}

// Admin is the admin listener (health, metrics, config, events, dashboard).
type Admin struct {
	Listen string `yaml:"listen" json:"listen"`
	// Token, if set, is required (Authorization: Bearer) on every admin request; it is
	// mandatory when Listen is not a loopback address.
	Token     string `yaml:"token" json:"-"`
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
}

// Log is the process log (not the access log).
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level" json:"level,omitempty"`
	// Format is console (for people) or json (for log shippers).
	Format string `yaml:"format" json:"format,omitempty"`
}

// AccessLog writes one JSON line per request (route, method, path, status, verdict,
// client, duration). The request path only copies a fixed-size record into a ring and
// never waits: when the writer falls behind, records are dropped and counted
// (floodgate_access_log_dropped_total). It can be turned on and off by a reload.
type AccessLog struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Path is a file (appended) or "stderr".
	Path string `yaml:"path" json:"path"`
	// Buffer is the ring's size in records (rounded up to a power of two).
	Buffer int `yaml:"buffer" json:"buffer"`
}

// Pool is a fixed set of upstream addresses (never taken from a request) with its own
// connection budget: the bulkhead between light and heavy backends.
type Pool struct {
	Addrs []string `yaml:"addrs" json:"addrs"`
	// MaxConns is the pool's connection budget, split evenly across Addrs.
	MaxConns int `yaml:"max_conns" json:"max_conns"`
	// QueueTimeout is how long a request may wait for a free connection when the budget
	// is used up; 0 answers upstream/busy at once.
	QueueTimeout   filters.Duration `yaml:"queue_timeout" json:"queue_timeout"`
	ConnectTimeout filters.Duration `yaml:"connect_timeout" json:"connect_timeout"`
	ReadTimeout    filters.Duration `yaml:"read_timeout" json:"read_timeout"`
	WriteTimeout   filters.Duration `yaml:"write_timeout" json:"write_timeout"`
	// IdleTimeout closes idle upstream connections; keep it below the upstream's own.
	IdleTimeout     filters.Duration `yaml:"idle_timeout" json:"idle_timeout"`
	MaxResponseBody filters.Size     `yaml:"max_response_body" json:"max_response_body"`
	// HostHeader, if set, replaces the client's Host header toward this pool.
	HostHeader string `yaml:"host_header" json:"host_header,omitempty"`
	Eject      Eject  `yaml:"eject" json:"eject"`
	// HealthCheck probes ejected servers and puts one back as soon as it answers
	// (README "Upstream health"). Changing it keeps the pool's connections.
	HealthCheck HealthCheck `yaml:"health_check" json:"health_check"`
	// Adaptive is the pool's adaptive overload protection (README "Adaptive overload
	// protection"); off by default. Changing it keeps the pool's connections.
	Adaptive Adaptive `yaml:"adaptive" json:"adaptive"`
	// Pipeline sends the requests of many clients over a few connections per server,
	// pipelined (README "Upstream pipelining"); off by default.
	Pipeline Pipeline `yaml:"pipeline" json:"pipeline"`
}

// Pipeline is HTTP/1.1 pipelining to a pool's servers: requests in flight share a few
// connections, the requests that arrive together go out in one write and their answers
// come back in as few reads. Only for upstreams that answer pipelined requests in order
// (any HTTP/1.1 server must; the project's own backends do).
type Pipeline struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Conns is the most connections per server. The first one takes every request while it
	// answers; the next one is opened when it is stalled (see Stall).
	Conns int `yaml:"conns" json:"conns"`
	// Stall: a connection whose oldest unanswered request has waited this long gets no new
	// requests (head-of-line blocking: answers come back in order).
	Stall filters.Duration `yaml:"stall" json:"stall"`
}

// Adaptive is a pool's adaptive overload protection: an adaptive concurrency limit from
// live latency, and an admission level that sheds the least important requests first.
type Adaptive struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Shadow computes the limit and the level and counts what would be shed, sheds nothing.
	Shadow bool `yaml:"shadow" json:"shadow"`
	// MinLimit and MaxLimit bound the adaptive concurrency limit; MaxLimit 0 is the
	// pool's max_conns (at least min_limit). Core requests pass the in-flight gate up to
	// MaxLimit.
	MinLimit int `yaml:"min_limit" json:"min_limit"`
	MaxLimit int `yaml:"max_limit" json:"max_limit"`
	// PinnedLevel fixes the admission level (0 admits everything; requests below it are
	// shed); -1 lets the gateway move it.
	PinnedLevel int `yaml:"pinned_level" json:"pinned_level"`
	// UserKey is where the user priority's key comes from (ip, query:NAME, header:NAME,
	// cookie:NAME); UserWindow is how long one draw of user priorities lasts.
	UserKey    filters.KeySpec  `yaml:"user_key" json:"user_key"`
	UserWindow filters.Duration `yaml:"user_window" json:"user_window"`
}

// Eject is passive health checking: a server that fails Failures times in a row (connect
// errors, timeouts) is left out. With HealthCheck enabled it stays out until a probe
// passes; without, it is left out for Duration, then tried again by real requests.
type Eject struct {
	Failures int              `yaml:"failures" json:"failures"`
	Duration filters.Duration `yaml:"duration" json:"duration"`
}

// HealthCheck is active health checking of ejected servers: every Interval each ejected
// server gets one probe (never two at once), within the server's share of the pool's
// connection budget; after HealthyThreshold passes in a row it is back in rotation.
// Servers in rotation are not probed: real traffic is their health check.
type HealthCheck struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Path, if set, probes with an HTTP GET of Path (passes on a 2xx answer within
	// Timeout); empty probes with a TCP connect (passes when the connection opens).
	Path     string           `yaml:"path" json:"path,omitempty"`
	Interval filters.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one probe; 0 (default) is the interval, at most 500ms.
	Timeout filters.Duration `yaml:"timeout" json:"timeout"`
	// HealthyThreshold is how many probes in a row must pass.
	HealthyThreshold int `yaml:"healthy_threshold" json:"healthy_threshold"`
}

// Health check bounds: the gateway looks for due probes every MinHealthInterval.
const (
	MinHealthInterval   = 100 * time.Millisecond
	maxHealthInterval   = 5 * time.Minute
	maxHealthyThreshold = 100
	maxHealthPath       = 1024
	// defaultHealthTimeout is a probe's timeout when none is set (at most the interval).
	defaultHealthTimeout = 500 * time.Millisecond
)

// Route maps requests (host + longest path prefix) to a pool, through a filter chain.
type Route struct {
	// Host, if set, must equal the request host (port ignored); "*.example.com" matches
	// any subdomain. Empty matches any host.
	Host string `yaml:"host" json:"host,omitempty"`
	// Path is the prefix, matched at a segment boundary: /lottery matches /lottery,
	// /lottery/ and /lottery/draw, not /lottery2.
	Path string `yaml:"path" json:"path"`
	Pool string `yaml:"pool" json:"pool"`
	// Core marks the campaign's essential operations; non-core routes get shorter
	// default timeouts and are the ones sampling and pressure give up first.
	Core bool `yaml:"core" json:"core"`
	// Enabled false is the route's kill switch: every request gets the fallback with
	// verdict route/disabled.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Timeout for the whole upstream exchange; default 3s for core, 500ms otherwise.
	Timeout        filters.Duration `yaml:"timeout" json:"timeout"`
	MaxRequestBody filters.Size     `yaml:"max_request_body" json:"max_request_body"`
	// Upstream5xx: "pass" forwards the upstream's 5xx answers, "fallback" replaces them
	// with the fallback answer (verdict upstream/error).
	Upstream5xx string   `yaml:"upstream_5xx" json:"upstream_5xx"`
	Fallback    Fallback `yaml:"fallback" json:"fallback"`
	// Priority is the route's business priority for adaptive overload protection, 0-7,
	// higher shed later; default 6 for core routes, 2 for the others.
	Priority int `yaml:"priority" json:"priority"`
	// Async, if set, makes the route asynchronous: the gateway answers 202 itself once the
	// request is durably recorded, and `floodgate deliver` sends it to the pool later, at
	// the pool's pace. See README "Async delivery".
	Async *Async `yaml:"async" json:"async,omitempty"`
	// Filters maps a filter name to its configuration; see filters/<name>/README.md.
	RawFilters map[string]*yaml.Node `yaml:"filters" json:"-"`

	// Chain is the decoded filters in chain order (filters.Order).
	Chain []*FilterSpec `yaml:"-" json:"filters,omitempty"`
}

// Fallback is the answer the gateway gives itself when it does not proxy: a filter
// rejected, the route is disabled, or its upstream timed out or is down.
type Fallback struct {
	Status      int               `yaml:"status" json:"status"`
	ContentType string            `yaml:"content_type" json:"content_type"`
	Body        string            `yaml:"body" json:"body"`
	Headers     map[string]string `yaml:"headers" json:"headers,omitempty"`
	// Verdicts gives some verdicts an answer of their own, so that each can say what is
	// true of it: Verdicts[filter][reason], e.g. number_pack: {not_eligible: {...}}, with
	// reason "*" for every verdict of that filter or gateway part (upstream: {"*": ...}).
	// Unset fields are the fallback's.
	Verdicts map[string]map[string]VerdictFallback `yaml:"verdicts" json:"verdicts,omitempty"`
}

// VerdictFallback is the answer to one verdict (or to every verdict of a filter).
type VerdictFallback struct {
	// Status 0 keeps the verdict's own status (a filter's, e.g. 403), else the fallback's.
	Status int `yaml:"status" json:"status,omitempty"`
	// Body, if set, replaces the fallback's body.
	Body string `yaml:"body" json:"body,omitempty"`
}

// GatewayVerdicts are the parts of the gateway whose verdicts a fallback can answer
// apart (besides the route's filters): route/disabled, upstream/*, overload/shed,
// async/*.
var GatewayVerdicts = []string{"async", "overload", "route", "upstream"}

// Queue is the durable queue of async routes: a NATS JetStream stream (an embedded
// `floodgate queue` server or an existing NATS cluster) and, for when the queue is down,
// full or slow, the gateway's local journal.
type Queue struct {
	// URL lists the NATS servers, comma-separated (nats://127.0.0.1:4222).
	URL string `yaml:"url" json:"url"`
	// Stream is the JetStream stream that keeps accepted grants (subjects
	// floodgate.grants.<route>); created or updated by the gateway and the deliverer.
	Stream string `yaml:"stream" json:"stream"`
	// Replicas is the stream's replication factor (1, 3 or 5; 3 needs a 3-node cluster).
	Replicas int `yaml:"replicas" json:"replicas"`
	// MaxAge is how long the stream keeps accepted grants (the log reconciliation reads).
	MaxAge filters.Duration `yaml:"max_age" json:"max_age"`
	// MaxBytes caps the stream; when full, new grants are refused by the queue (never the
	// oldest dropped) and go to the journal.
	MaxBytes filters.Size `yaml:"max_bytes" json:"max_bytes"`
	// PublishTimeout is how long the gateway waits for the queue's acknowledgement before
	// it writes the grants to the journal instead.
	PublishTimeout filters.Duration `yaml:"publish_timeout" json:"publish_timeout"`
	// MaxBatch is the most grants one commit (one queue batch, one journal fsync) carries.
	MaxBatch int `yaml:"max_batch" json:"max_batch"`
	// Journal is the local journal.
	Journal Journal `yaml:"journal" json:"journal"`
}

// Journal is the gateway's local journal of grants the queue could not take.
type Journal struct {
	// Dir is the journal's directory; empty: floodgate/journal-<server.listen> in the
	// user cache directory.
	Dir string `yaml:"dir" json:"dir"`
	// MaxBytes caps the journal; beyond it grants are refused (async/unavailable).
	MaxBytes filters.Size `yaml:"max_bytes" json:"max_bytes"`
	// SegmentBytes is the size at which the journal starts a new segment file.
	SegmentBytes filters.Size `yaml:"segment_bytes" json:"segment_bytes"`
}

// Async is an async route's recording and delivery.
type Async struct {
	// IdempotencyKey is where the client's key is: header:NAME, query:NAME or form:NAME.
	// The grant id is derived from it, so a resubmission gets the same grant id.
	IdempotencyKey string `yaml:"idempotency_key" json:"idempotency_key"`
	// RequireKey answers 400 (async/missing_key) to requests without a key; when false the
	// gateway makes a random key (no resubmission protection).
	RequireKey bool `yaml:"require_key" json:"require_key"`
	// Required lists form fields (query or urlencoded body) that must be present, so that
	// the gateway refuses at once (400 async/bad_request) what the backend would refuse.
	Required []string `yaml:"required" json:"required,omitempty"`
	// KeepHeaders lists the request headers recorded with the grant and sent on delivery.
	KeepHeaders []string `yaml:"keep_headers" json:"keep_headers,omitempty"`
	// Deliver is how `floodgate deliver` sends grants to the route's pool.
	Deliver Deliver `yaml:"deliver" json:"deliver"`
}

// Deliver is the delivery side of an async route; every field changes live (Consul
// routes/<route>/async/deliver/<field>).
type Deliver struct {
	// Path is the path grants are sent to; empty: the path the client used.
	Path string `yaml:"path" json:"path,omitempty"`
	// Rate is the most grants per second sent, across all deliverers together.
	Rate float64 `yaml:"rate" json:"rate"`
	// Concurrency is the most delivery calls in flight per deliverer.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Paused stops delivery (grants wait in the queue).
	Paused bool `yaml:"paused" json:"paused"`
	// Timeout bounds one delivery call; 0: the route's timeout.
	Timeout filters.Duration `yaml:"timeout" json:"timeout"`
	// MaxAttempts is how often a grant is tried before it is parked as failed.
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`
	// Backoff is the wait before each retry (the last one repeats).
	Backoff []filters.Duration `yaml:"backoff" json:"backoff"`
	// AckWait is how long the queue waits for a deliverer before it hands the grant to
	// another; keep it above timeout.
	AckWait filters.Duration `yaml:"ack_wait" json:"ack_wait"`
	// IDHeader carries the grant id to the backend, which records each id once.
	IDHeader string `yaml:"id_header" json:"id_header"`
}

func (a *Async) setDefaults() {
	*a = Async{
		IdempotencyKey: "header:Idempotency-Key",
		RequireKey:     true,
		Deliver: Deliver{
			Concurrency: 16,
			MaxAttempts: 10,
			Backoff:     []filters.Duration{filters.Duration(time.Second), filters.Duration(5 * time.Second), filters.Duration(30 * time.Second), filters.Duration(2 * time.Minute)},
			AckWait:     filters.Duration(30 * time.Second),
			IDHeader:    "X-Grant-Id",
		},
	}
}

// FilterSpec is one filter of a route's chain, decoded and validated.
type FilterSpec struct {
	Name string `json:"name"`
	// Enabled false leaves the filter out of the chain (a live switch).
	Enabled bool `json:"enabled"`
	// Shadow counts what the filter would reject but admits it.
	Shadow bool           `json:"shadow"`
	Config filters.Config `json:"config"`
}

// commonFilterFields are keys every filter accepts; the rest go to the filter's Config.
var commonFilterFields = map[string]bool{"enabled": true, "shadow": true}

func defaultConfig() *Config {
	return &Config{
		Server: Server{
			Listen:          "127.0.0.1:8080",
			ReadTimeout:     filters.Duration(10 * time.Second),
			WriteTimeout:    filters.Duration(15 * time.Second),
			IdleTimeout:     filters.Duration(60 * time.Second),
			ReadBufferSize:  8 << 10,
			MaxRequestBody:  1 << 20,
			Concurrency:     50000,
			VerdictHeader:   true,
			ShutdownTimeout: filters.Duration(10 * time.Second),
		},
		Admin:     Admin{Listen: "127.0.0.1:9901"},
		AccessLog: AccessLog{Path: "stderr", Buffer: 65536},
		Queue: Queue{
			URL:            "nats://127.0.0.1:4222",
			Stream:         "FLOODGATE_GRANTS",
			Replicas:       1,
			MaxAge:         filters.Duration(30 * 24 * time.Hour),
			MaxBytes:       10 << 30,
			PublishTimeout: filters.Duration(time.Second),
			MaxBatch:       500,
			Journal:        Journal{MaxBytes: 1 << 30, SegmentBytes: 64 << 20},
		},
	}
}

func (p *Pool) setDefaults() {
	*p = Pool{
		MaxConns:        512,
		ConnectTimeout:  filters.Duration(time.Second),
		ReadTimeout:     filters.Duration(10 * time.Second),
		WriteTimeout:    filters.Duration(10 * time.Second),
		IdleTimeout:     filters.Duration(30 * time.Second),
		MaxResponseBody: 8 << 20,
		Eject:           Eject{Failures: 5, Duration: filters.Duration(10 * time.Second)},
		HealthCheck:     HealthCheck{Enabled: true, Interval: filters.Duration(time.Second), HealthyThreshold: 1},
		Adaptive:        Adaptive{MinLimit: 4, PinnedLevel: -1, UserKey: filters.KeySpec{Source: filters.KeyIP}, UserWindow: filters.Duration(10 * time.Second)},
		Pipeline:        Pipeline{Conns: 4, Stall: filters.Duration(5 * time.Millisecond)},
	}
}

func (r *Route) setDefaults() {
	*r = Route{
		Enabled:     true,
		Upstream5xx: "pass",
		Priority:    -1,
		Fallback: Fallback{
			Status:      503,
			ContentType: "application/json",
			Body:        `{"ok":false,"error":"busy, please retry later"}`,
		},
	}
}

// defaulter is implemented by map elements that start from defaults before decoding.
type defaulter interface{ setDefaults() }

// HasAsync reports whether any route is async.
func (c *Config) HasAsync() bool {
	for _, r := range c.Routes {
		if r.Async != nil {
			return true
		}
	}
	return false
}

// JournalDir is the local journal's directory: queue.journal.dir, or
// floodgate/journal-<server.listen> in the user cache directory (the same for the gateway
// and for `floodgate reconcile` reading the same configuration).
func (c *Config) JournalDir() string {
	if c.Queue.Journal.Dir != "" {
		return c.Queue.Journal.Dir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	name := strings.NewReplacer(":", "_", "[", "", "]", "").Replace(c.Server.Listen)
	return filepath.Join(base, "floodgate", "journal-"+name)
}
