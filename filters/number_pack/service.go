package numberpack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/internal/bytesconv"
)

// serviceSpec is everything a service depends on; two configurations with equal specs
// share one service (its connections and cached answers survive the reload).
type serviceSpec struct {
	addr        string
	names       string // the route's pack names, comma-joined, in bit order
	timeout     time.Duration
	ttl         time.Duration
	negativeTTL time.Duration
	staleTTL    time.Duration
	cacheMB     int
	maxInflight int
}

// service answers membership by reading through to the packs backend. Answers are
// cached in a bigcache bounded by cacheMB (the oldest answers go first when it is full;
// a lost answer is only a new lookup): 16 bytes per user, the mask of the route's packs
// and the monotonic time it expires. The cache has no cleaner goroutine (CleanWindow 0:
// bigcache drops a shard's expired oldest entry on each Set), so nothing needs closing.
type service struct {
	spec     serviceSpec
	client   *fasthttp.HostClient
	cache    *bigcache.BigCache
	names    [][]byte
	inflight atomic.Int64
}

var membershipPath = []byte("/v1/membership?user=")

func newService(spec serviceSpec, names []string) (*service, error) {
	life := max(spec.ttl, spec.negativeTTL) + spec.staleTTL + time.Second // bigcache counts whole seconds
	cache, err := bigcache.New(context.Background(), bigcache.Config{
		Shards:             256,
		LifeWindow:         life,
		CleanWindow:        0,
		MaxEntriesInWindow: 256 * 64,
		MaxEntrySize:       64,
		HardMaxCacheSize:   spec.cacheMB,
		Hasher:             numberHasher{},
		Logger:             nopLogger{},
	})
	if err != nil {
		return nil, err
	}
	s := &service{spec: spec, cache: cache}
	for _, n := range names {
		s.names = append(s.names, []byte(n))
	}
	timeout := spec.timeout
	s.client = &fasthttp.HostClient{
		Addr:                      spec.addr,
		Name:                      "floodgate-number-pack",
		Dial:                      func(addr string) (net.Conn, error) { return fasthttp.DialTimeout(addr, timeout) },
		MaxConns:                  spec.maxInflight,
		MaxConnWaitTimeout:        timeout,
		MaxIdleConnDuration:       30 * time.Second,
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxResponseBodySize:       64 << 10,
		MaxIdemponentCallAttempts: 2, // one retry, on a keep-alive connection the backend closed
		DisablePathNormalizing:    true,
	}
	return s, nil
}

// membership returns the route's packs holding key from the cache, or asks the backend.
// When the backend fails, an answer expired less than staleTTL ago is used.
func (s *service) membership(key []byte, now int64, m *filterMetrics) (uint64, int) {
	var stale bool
	var staleMask uint64
	if v, err := s.cache.Get(bytesconv.String(key)); err == nil && len(v) == 16 {
		mask, exp := le64(v), int64(le64(v[8:]))
		if now < exp {
			if mask == 0 {
				m.svcNegHit.Inc()
			} else {
				m.svcHit.Inc()
			}
			return mask, known
		}
		stale, staleMask = now-exp < int64(s.spec.staleTTL), mask
	}
	mask, cause := s.fetch(key)
	switch cause {
	case known:
		ttl := s.spec.ttl
		if mask == 0 {
			ttl = s.spec.negativeTTL
		}
		var e [16]byte
		putLE64(e[:], mask)
		putLE64(e[8:], uint64(now+int64(ttl)))
		s.cache.Set(bytesconv.String(key), e[:])
		m.svcFetched.Inc()
		return mask, known
	case causeTimeout:
		m.svcTimeout.Inc()
	case causeBusy:
		m.svcBusy.Inc()
	default:
		m.svcError.Inc()
	}
	if stale {
		m.svcStale.Inc()
		return staleMask, known
	}
	return 0, cause
}

// fetch asks the backend which of the route's packs hold key.
func (s *service) fetch(key []byte) (uint64, int) {
	if s.inflight.Add(1) > int64(s.spec.maxInflight) {
		s.inflight.Add(-1)
		return 0, causeBusy
	}
	defer s.inflight.Add(-1)
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var ub [64]byte
	req.SetRequestURIBytes(append(append(ub[:0], membershipPath...), key...))
	req.Header.SetHost(s.spec.addr)
	if err := s.client.DoTimeout(req, resp, s.spec.timeout); err != nil {
		if isTimeout(err) {
			return 0, causeTimeout
		}
		return 0, causeError
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return 0, causeError
	}
	mask, ok := parseMembership(resp.Body(), key, s.names)
	if !ok {
		return 0, causeError
	}
	return mask, known
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseMembership reads the backend's answer {"user":"N","packs":["a","b"]} without
// allocating: the user must be key, and the result is the bitmask of names found in
// packs (names the route does not use are ignored). Other members are skipped.
func parseMembership(b, key []byte, names [][]byte) (mask uint64, ok bool) {
	p := jsonScanner{b: b}
	if !p.consume('{') {
		return 0, false
	}
	var userOK, packsOK bool
	for first := true; ; first = false {
		if p.consume('}') {
			if !userOK || !packsOK {
				return 0, false
			}
			return mask, true
		}
		if !first && !p.consume(',') {
			return 0, false
		}
		name, ok := p.str()
		if !ok || !p.consume(':') {
			return 0, false
		}
		switch string(name) { // no allocation: the compiler compares in place
		case "user":
			v, ok := p.str()
			if !ok || !bytes.Equal(v, key) {
				return 0, false
			}
			userOK = true
		case "packs":
			if !p.consume('[') {
				return 0, false
			}
			for i := 0; !p.consume(']'); i++ {
				if i > 0 && !p.consume(',') {
					return 0, false
				}
				v, ok := p.str()
				if !ok {
					return 0, false
				}
				for bit, n := range names {
					if bytes.Equal(v, n) {
						mask |= 1 << uint(bit)
					}
				}
			}
			packsOK = true
		default:
			if !p.skipValue() {
				return 0, false
			}
		}
	}
}

type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonScanner) consume(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string and returns its raw bytes (escapes left as they are: the names
// compared against never need them).
func (p *jsonScanner) str() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '\\':
			p.i += 2
			continue
		case '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		}
		p.i++
	}
	return nil, false
}

// skipValue skips a number, literal, string, array or object.
func (p *jsonScanner) skipValue() bool {
	p.ws()
	if p.i >= len(p.b) {
		return false
	}
	switch p.b[p.i] {
	case '"':
		_, ok := p.str()
		return ok
	case '[', '{':
		depth := 0
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				if _, ok := p.str(); !ok {
					return false
				}
				continue
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					p.i++
					return true
				}
			}
			p.i++
		}
		return false
	}
	for p.i < len(p.b) && p.b[p.i] != ',' && p.b[p.i] != '}' && p.b[p.i] != ']' {
		p.i++
	}
	return true
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func putLE64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
