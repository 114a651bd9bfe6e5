// Package promothrottle is the promo_throttle filter: the promotion-layer switch. A
// request's promotion tag (a query parameter, header or cookie) puts it in a tier; each
// tier has its own exact rate limit and a priority, and the operator's pressure level
// sheds whole tiers from the lowest priority up. See README.md.
package promothrottle

import (
	"bytes"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/ratelimit"
)

// PromoThrottle is a built promo_throttle filter. Decide is safe for concurrent use; it
// takes no locks and allocates nothing.
type PromoThrottle struct {
	source filters.KeySpec
	global bool
	env    *filters.Env
	// tiers in shedding order (lowest priority first); the first `pressure` are shed.
	tiers   []tier
	def     int // index of the default tier (no tag)
	unknown int // index of the tier of tags that match no tier
	// exact maps a tag value to its tier; looked up as exact[string(b)], which Go does
	// without allocating.
	exact map[string]int
	// prefixes, longest first.
	prefixes []prefix

	jitter, shedRetry int64 // ns

	limited, shedReason, badKey *filters.Reason
}

type tier struct {
	name  string
	rate  float64
	burst int64
	limit ratelimit.Limit
	shed  bool
	// bucket is the tier's bucket, carried over reloads (and over a change of its rate or
	// burst: ratelimit.Carried)
	bucket ratelimit.Carried

	admitted, rejected, shedCount prometheus.Counter
}

type prefix struct {
	value []byte
	tier  int
}

// Decide implements filters.Filter.
func (f *PromoThrottle) Decide(r *filters.Request) filters.Result {
	ti := f.classify(r)
	r.Rank = max(ti, 0) + 1 // a tag given twice ranks with the lowest tier
	if ti < 0 {
		return filters.RejectWith(f.badKey)
	}
	t := &f.tiers[ti]
	if t.shed {
		t.shedCount.Inc()
		res := filters.RejectWith(f.shedReason)
		if f.shedRetry > 0 {
			res.RetryAfter = time.Duration(f.shedRetry + ratelimit.Jitter(uint64(r.Now), f.jitter))
		}
		return res
	}
	lim, n := t.limit, int64(1)
	if f.global {
		if n = f.env.Instances(); n > 1 {
			lim = ratelimit.Share(t.rate, t.burst, n)
		}
	}
	b, lim := t.bucket.Pick(r.Now, lim, n)
	if d := b.Reserve(r.Now, lim, 0); !d.OK {
		t.rejected.Inc()
		return filters.Result{
			Action:     filters.Reject,
			Reason:     f.limited,
			RetryAfter: time.Duration(d.Delay + ratelimit.Jitter(uint64(r.Now), f.jitter)),
		}
	}
	t.admitted.Inc()
	return filters.Pass
}

// classify returns the index of r's tier: an exact match of the tag, else its longest
// matching prefix, else the unknown tier; the default tier when there is no tag; -1 when
// the tag is given more than once (adtag=zz&adtag=banner: which one the upstream reads
// is unknown, so the request is rejected, promo_throttle/bad_key). Tags are compared
// without surrounding spaces and tabs and without case: "Banner", "BANNER" and
// "banner%20" are the tag "banner".
func (f *PromoThrottle) classify(r *filters.Request) int {
	raw, st := f.source.Read(r)
	switch st {
	case filters.KeyBad:
		return -1
	case filters.KeyMissing:
		return f.def
	}
	for len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') {
		raw = raw[1:]
	}
	for len(raw) > 0 && (raw[len(raw)-1] == ' ' || raw[len(raw)-1] == '\t') {
		raw = raw[:len(raw)-1]
	}
	if len(raw) == 0 {
		return f.def
	}
	if len(raw) > maxTag {
		return f.unknown
	}
	var buf [maxTag]byte
	tag := buf[:len(raw)]
	for i, c := range raw {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		tag[i] = c
	}
	if i, ok := f.exact[string(tag)]; ok {
		return i
	}
	for i := range f.prefixes {
		if bytes.HasPrefix(tag, f.prefixes[i].value) {
			return f.prefixes[i].tier
		}
	}
	return f.unknown
}

// Tiers returns the number of tiers. Decide sets the request's Rank (1..Tiers) to its
// tier's place in shedding order; adaptive overload protection maps it to the tier part
// of the request's admission level.
func (f *PromoThrottle) Tiers() int { return len(f.tiers) }

// Tier returns the name of the tier r falls into (for tests and diagnostics).
func (f *PromoThrottle) Tier(r *filters.Request) string {
	if i := f.classify(r); i >= 0 {
		return f.tiers[i].name
	}
	return ""
}

// tier returns f's tier called name, or nil (also when f is nil).
// takeOver takes the bucket of old (the tier of the same name in the previous filter;
// nil: none, the bucket starts full). When the rate or burst changed, the tokens are
// carried over the change (ratelimit.Handover): a burst cut is not a blackout and a
// raise is not a free burst.
func (t *tier) takeOver(old *tier) {
	if old == nil {
		t.bucket = ratelimit.Follow(nil, 0, 0, t.rate, t.burst)
		return
	}
	t.bucket = ratelimit.Follow(&old.bucket, old.rate, old.burst, t.rate, t.burst)
}

func (f *PromoThrottle) tier(name string) *tier {
	if f == nil {
		return nil
	}
	for i := range f.tiers {
		if f.tiers[i].name == name {
			return &f.tiers[i]
		}
	}
	return nil
}

var _ filters.Filter = (*PromoThrottle)(nil)
