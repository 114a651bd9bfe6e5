// Package tokenbucket is the token_bucket filter: exact token buckets per route or per
// key (user number, client IP, any header), in bounded memory, optionally split across
// the live gateway instances. See README.md.
package tokenbucket

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/ratelimit"
)

type missingPolicy uint8

const (
	missingShared missingPolicy = iota
	missingPass
	missingReject
)

// TokenBucket is a built token_bucket filter. Decide is safe for concurrent use; it
// takes no locks and allocates nothing.
type TokenBucket struct {
	rate    float64
	burst   int64
	limit   ratelimit.Limit // the limit of one instance (global: of a single instance)
	global  bool
	env     *filters.Env
	key     filters.KeySpec
	maxKeys int
	missing missingPolicy
	maxWait int64 // ns
	jitter  int64 // ns

	// bucket is the route's bucket (no key), or the one shared by requests without a key,
	// carried over reloads (and over a change of rate or burst: ratelimit.Carried).
	bucket ratelimit.Carried
	// table holds a bucket per key (nil without a key).
	table *ratelimit.Table
	// keyHandover, when the rate or burst changed at a reload, carries each key's tokens
	// from the previous filter's table into table at the key's first request (nil: no
	// change, or the previous table's keys have all expired).
	keyHandover *ratelimit.KeyHandover
	// carried is true when the buckets were taken over from the previous filter.
	carried bool

	limited *filters.Reason
	noKey   *filters.Reason
	badKey  *filters.Reason // the key given twice or malformed

	queued, evictions, missingKey prometheus.Counter
}

// Decide implements filters.Filter.
func (f *TokenBucket) Decide(r *filters.Request) filters.Result {
	lim, n := f.limit, int64(1)
	if f.global {
		if n = f.env.Instances(); n > 1 {
			lim = ratelimit.Share(f.rate, f.burst, n)
		}
	}
	var d ratelimit.Decision
	var seed uint64
	if f.table == nil {
		d = f.routeBucket(r.Now, lim, n)
	} else if h, st := f.key.Hash(r); st == filters.KeyBad {
		return filters.RejectWith(f.badKey)
	} else if st == filters.KeyFound {
		var evicted bool
		d, evicted = f.table.ReserveCarried(h, r.Now, lim, f.maxWait, f.keyHandover, n)
		if evicted {
			f.evictions.Inc()
		}
		seed = h
	} else {
		f.missingKey.Inc()
		switch f.missing {
		case missingPass:
			return filters.Pass
		case missingReject:
			return filters.RejectWith(f.noKey)
		}
		d = f.routeBucket(r.Now, lim, n)
	}
	if d.OK {
		if d.Delay > 0 {
			f.queued.Inc()
			return filters.Result{Wait: time.Duration(d.Delay)}
		}
		return filters.Pass
	}
	// Retry-After: when the next token is due, plus jitter drawn from the request's time
	// and key so that rejected clients do not come back in lockstep.
	return filters.Result{
		Action:     filters.Reject,
		Reason:     f.limited,
		RetryAfter: time.Duration(d.Delay + ratelimit.Jitter(uint64(r.Now)^seed, f.jitter)),
	}
}

// routeBucket takes a token of the route's bucket (or of the one shared by requests
// without a key), carried over a change of limit by the handover; n is the instance count
// lim is shared among (Decide read it once).
func (f *TokenBucket) routeBucket(now int64, lim ratelimit.Limit, n int64) ratelimit.Decision {
	b, lim := f.bucket.Pick(now, lim, n)
	return b.Reserve(now, lim, f.maxWait)
}

// carryKeys takes over p's buckets per key: p's table as it is when the limit did not
// change (with p's handover, if it still runs), else a new table whose keys start from
// the tokens they held in p's (ratelimit.KeyHandover).
func (f *TokenBucket) carryKeys(p *TokenBucket) {
	if p.rate == f.rate && p.burst == f.burst {
		f.table, f.keyHandover = p.table, p.keyHandover
		return
	}
	f.table = ratelimit.NewTable(f.maxKeys)
	f.keyHandover = ratelimit.NewKeyHandover(p.table, p.rate, p.burst, p.keyHandover)
}

// KeyHandover returns the handover carrying keys from the previous filter's table (nil:
// none), for tests and diagnostics.
func (f *TokenBucket) KeyHandover() *ratelimit.KeyHandover { return f.keyHandover }

// Table returns the filter's table of keys (nil without a key), for tests and
// diagnostics.
func (f *TokenBucket) Table() *ratelimit.Table { return f.table }

// Carried reports whether the filter took its buckets over from the previous one.
func (f *TokenBucket) Carried() bool { return f.carried }

var _ filters.Filter = (*TokenBucket)(nil)
