package ratelimit

// Carried is a bucket a filter keeps across its rebuilds (a route's bucket, a promotion
// tier's): taken over as it is when the limit did not change, carried through a Handover
// when it did, so that a reload is neither a blackout nor a free burst. The zero value has
// no bucket; Follow makes one.
type Carried struct {
	bucket *Bucket
	// handover, after a change of limit, carries the previous bucket's tokens into bucket
	// at the first request (nil: no change).
	handover  *Handover
	prevRate  float64
	prevBurst int64
}

// Follow returns the bucket of a filter kept under rate and burst that replaces old,
// whose bucket was kept under oldRate and oldBurst; old nil (or without a bucket): a new,
// full bucket.
func Follow(old *Carried, oldRate float64, oldBurst int64, rate float64, burst int64) Carried {
	if old == nil || old.bucket == nil {
		return Carried{bucket: new(Bucket)}
	}
	from := old.bucket
	if h := old.handover; h != nil {
		if src := h.Source(); src != nil {
			// old never served a request: its own predecessor's bucket and limit
			from, oldRate, oldBurst = src, old.prevRate, old.prevBurst
		} else {
			from = h.Bucket()
		}
	}
	if oldRate == rate && oldBurst == burst {
		return Carried{bucket: from}
	}
	h := NewHandover(from)
	return Carried{bucket: h.Bucket(), handover: h, prevRate: oldRate, prevBurst: oldBurst}
}

// Pick returns the bucket to reserve from at time now and the limit to reserve it
// under: l (this filter's limit, shared among n instances), or - for the one request
// that converts the carried tokens, and any that come while it does - the previous
// limit shared among n.
func (c *Carried) Pick(now int64, l Limit, n int64) (*Bucket, Limit) {
	h := c.handover
	if h == nil || h.state.Load() == 2 {
		return c.bucket, l
	}
	return h.Pick(now, Share(c.prevRate, c.prevBurst, n), l)
}

// Bucket returns the bucket requests reserve from once any handover is done (for tests
// and diagnostics).
func (c *Carried) Bucket() *Bucket { return c.bucket }
