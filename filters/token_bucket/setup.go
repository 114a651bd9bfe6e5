package tokenbucket

import (
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/ratelimit"
)

// Name is the filter's name in configurations, Consul paths and verdicts.
const Name = "token_bucket"

func init() {
	filters.Register(filters.Definition{Name: Name, New: func() filters.Config {
		return &Config{Status: 429, RetryJitter: filters.Duration(2 * time.Second)}
	}})
}

// Defaults and bounds.
const (
	// DefaultMaxKeys is max_keys when a key is set and max_keys is not (8 MiB).
	DefaultMaxKeys = 1 << 20
	// MaxMaxKeys bounds max_keys (1 GiB of table).
	MaxMaxKeys = 1 << 27
	// MaxBurst bounds burst.
	MaxBurst = filters.MaxBurst
	// MaxWait bounds wait: a queued request holds its connection while it waits.
	MaxWait = 10 * time.Second
	// MaxRetryJitter bounds retry_jitter.
	MaxRetryJitter = time.Minute
)

// Missing-key policies (missing_key).
const (
	MissingShared = "shared"
	MissingPass   = "pass"
	MissingReject = "reject"
)

// Config is the token_bucket filter's configuration; see README.md.
type Config struct {
	// Rate is the number of requests admitted per second (per key when Key is set; for
	// all gateway instances together when Global is set). Required, > 0.
	Rate float64 `yaml:"rate" json:"rate"`
	// Burst is the bucket's capacity: how many requests may pass at once after a quiet
	// period. 0 or unset: ceil(rate/10), at least 1 (a 100 ms window).
	Burst int64 `yaml:"burst" json:"burst"`
	// Key selects a bucket per request: ip, header:NAME, cookie:NAME, query:NAME, or
	// none (one bucket for the route).
	Key filters.KeySpec `yaml:"key" json:"key"`
	// MaxKeys bounds the keys held at once (memory: 8 bytes per key, max_keys rounded up
	// to a power of two). Only with a key; default 1,048,576.
	MaxKeys int `yaml:"max_keys" json:"max_keys,omitempty"`
	// MissingKey says what happens to requests that carry no key: shared (default: they
	// share one bucket of the same rate), pass (not limited), reject
	// (token_bucket/missing_key, 400). Only with a key.
	MissingKey string `yaml:"missing_key" json:"missing_key,omitempty"`
	// Wait, if set, queues a request whose token is due within Wait instead of
	// rejecting it: the token is reserved and the gateway holds the request until then.
	Wait filters.Duration `yaml:"wait" json:"wait"`
	// Status is the HTTP status of token_bucket/limited answers (default 429).
	Status int `yaml:"status" json:"status"`
	// Global makes Rate and Burst the limit of all gateway instances together: each
	// enforces rate/n and burst/n, n = the live instances (filters.Env.Instances, set
	// from Consul by gateway/consul), read on every request.
	Global bool `yaml:"global" json:"global"`
	// RetryJitter is the largest random extra added to Retry-After (default 2s: clients
	// rejected at the same moment come back spread over about three seconds).
	RetryJitter filters.Duration `yaml:"retry_jitter" json:"retry_jitter"`
}

// Validate implements filters.Config. It reports every problem, naming the field and
// the value; it changes nothing (Defaults fills in burst, max_keys and missing_key).
func (c *Config) Validate() error {
	var errs filters.Errors
	errs.Add(filters.CheckRate("rate", c.Rate))
	errs.Add(filters.CheckBurst("burst", c.Burst, c.Rate))
	keyed := c.Key.Source != filters.KeyNone
	switch {
	case c.MaxKeys < 0 || c.MaxKeys > MaxMaxKeys:
		errs.Add(filters.Errorf("max_keys", c.MaxKeys, "must be between 1 and %d", MaxMaxKeys))
	case c.MaxKeys != 0 && !keyed:
		errs.Add(filters.Errorf("max_keys", c.MaxKeys, "applies only with a key (key: ip, header:NAME, cookie:NAME or query:NAME)"))
	}
	switch c.MissingKey {
	case "", MissingShared, MissingPass, MissingReject:
		if c.MissingKey != "" && !keyed {
			errs.Add(filters.Errorf("missing_key", c.MissingKey, "applies only with a key"))
		}
	default:
		errs.Add(filters.Errorf("missing_key", c.MissingKey, "want shared, pass or reject"))
	}
	if c.Wait.D() > MaxWait {
		errs.Add(filters.Errorf("wait", c.Wait, "must be at most %v (a queued request holds its connection)", MaxWait))
	}
	errs.Add(filters.CheckStatus("status", c.Status, ""))
	if c.RetryJitter.D() > MaxRetryJitter {
		errs.Add(filters.Errorf("retry_jitter", c.RetryJitter, "must be at most %v", MaxRetryJitter))
	}
	return errs.Err()
}

// Defaults implements filters.Defaulter: the defaults that follow from other fields
// (burst from rate; max_keys and missing_key only with a key).
func (c *Config) Defaults() {
	c.Burst = c.burst()
	if c.Key.Source != filters.KeyNone {
		if c.MaxKeys == 0 {
			c.MaxKeys = DefaultMaxKeys
		}
		if c.MissingKey == "" {
			c.MissingKey = MissingShared
		}
	}
}

// burst is Burst or its default, ceil(rate/10), at least 1.
func (c *Config) burst() int64 { return filters.DefaultBurst(c.Burst, c.Rate) }

// Build implements filters.Config.
//
// If prev is a token_bucket with the same key and max_keys, the new filter takes over its
// buckets (the table of keys, the route's bucket), so a reload is neither a free burst
// nor a blackout: when rate or burst changed, every bucket - the route's, and each key's
// at its first request - holds the tokens it held under the old limit, at most the new
// burst (ratelimit.Handover, ratelimit.KeyHandover), and refills at the new rate. A
// different key or max_keys starts with full buckets.
func (c *Config) Build(bc *filters.BuildContext, prev filters.Filter) (filters.Filter, error) {
	f := &TokenBucket{
		rate:    c.Rate,
		burst:   c.burst(),
		limit:   ratelimit.NewLimit(c.Rate, c.burst()),
		global:  c.Global,
		env:     bc.Env,
		key:     c.Key,
		maxKeys: c.MaxKeys,
		maxWait: int64(c.Wait),
		jitter:  int64(c.RetryJitter),
		limited: bc.Reason("limited", c.Status),
		badKey:  bc.Reason("bad_key", 400),
	}
	if f.env == nil {
		f.env = filters.NewEnv()
	}
	keyed := c.Key.Source != filters.KeyNone
	if keyed {
		if f.maxKeys == 0 {
			f.maxKeys = DefaultMaxKeys
		}
		switch c.MissingKey {
		case MissingPass:
			f.missing = missingPass
		case MissingReject:
			f.missing = missingReject
			f.noKey = bc.Reason("missing_key", 400)
		}
	}
	route := bc.Route.Name
	f.queued = queued.WithLabelValues(route)
	f.evictions = evictions.WithLabelValues(route)
	f.missingKey = missingKey.WithLabelValues(route)

	if p, ok := prev.(*TokenBucket); ok && p.key.String() == f.key.String() && p.maxKeys == f.maxKeys {
		f.table, f.carried = p.table, true
		// the route's bucket (or the one of requests without a key): taken over, its
		// tokens carried over a change of rate or burst
		f.bucket = ratelimit.Follow(&p.bucket, p.rate, p.burst, f.rate, f.burst)
		if keyed {
			f.carryKeys(p)
		}
		return f, nil
	}
	f.bucket = ratelimit.Follow(nil, 0, 0, f.rate, f.burst)
	if keyed {
		f.table = ratelimit.NewTable(f.maxKeys)
	}
	return f, nil
}

var _ filters.Config = (*Config)(nil)

// Limits implements filters.Limited: the rate and the burst.
func (c *Config) Limits() []filters.Limit {
	burst := c.burst()
	return []filters.Limit{
		{Name: "rate", Value: c.Rate, Unit: "req/s", Global: c.Global},
		{Name: "burst", Value: float64(burst), Unit: "requests", Global: c.Global},
	}
}
