package gateway

import (
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/floodgate/floodgate/internal/bytesconv"
)

// recentGrants remembers the grants this gateway accepted recently (grant id -> content
// fingerprint), so that a resubmission is answered at once with the same grant id, and a
// resubmission with other content is refused as a conflict. It is an optimisation and a
// courtesy, not the guarantee: a resubmission it does not remember (another instance, a
// restart, an old key) is stored again, and the delivery backend records each grant id
// once.
//
// Memory is bounded: each shard keeps two generations of at most perGen entries each;
// when the current one is full or older than maxAge, the previous one is dropped and the
// current one becomes previous. A lookup checks both. Async routes wait for a durable
// commit anyway, so the shard mutex is not the request path's bottleneck.
type recentGrants struct {
	shards [64]recentShard
	perGen int
	maxAge time.Duration
}

type recentShard struct {
	mu        sync.Mutex
	cur, prev map[string]uint64
	started   time.Time
}

func newRecentGrants(capacity int, maxAge time.Duration) *recentGrants {
	r := &recentGrants{perGen: max(capacity/len(recentGrants{}.shards)/2, 16), maxAge: maxAge}
	for i := range r.shards {
		r.shards[i].cur = map[string]uint64{}
		r.shards[i].started = time.Now()
	}
	return r
}

func (r *recentGrants) shard(id []byte) *recentShard {
	return &r.shards[xxhash.Sum64(id)%uint64(len(r.shards))]
}

func (r *recentGrants) get(id []byte) (uint64, bool) {
	s := r.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if fp, ok := s.cur[bytesconv.String(id)]; ok {
		return fp, true
	}
	fp, ok := s.prev[bytesconv.String(id)]
	return fp, ok
}

func (r *recentGrants) put(id []byte, fp uint64) {
	s := r.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= r.perGen || time.Since(s.started) > r.maxAge {
		s.prev, s.cur, s.started = s.cur, make(map[string]uint64, len(s.cur)), time.Now()
	}
	s.cur[string(id)] = fp
}
