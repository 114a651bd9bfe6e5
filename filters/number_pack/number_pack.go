// Package numberpack is the number_pack filter: eligibility by "number packs", lists of
// user numbers (millions each) that make a user eligible for a campaign.
//
// Membership comes from one of two sources:
//
//   - file: every pack of the route is loaded whole from its file into a packfile.Set
//     (one cache line per lookup, ~3.3 bytes per number), shared with every route naming
//     the same file at the same version, in the background, at start and whenever a
//     file's version changes. A new version is
//     loaded beside the serving cache and swapped in with one atomic store: a lookup
//     never sees a half-loaded pack.
//   - service: read through from the packs backend (GET /v1/membership?user=N) into a
//     bounded bigcache with a TTL for members and a shorter one for non-members; a
//     request whose user is not cached waits for the lookup, bounded by a short timeout.
//     With source file, a configured service also answers while the files are not
//     loaded (yet).
//
// In mode require a user in none of the route's packs is rejected (number_pack/
// not_eligible, 403); in mode annotate every request passes with a header naming the
// user's packs (X-Floodgate-Packs: vip,new_users). The header is always removed from the
// client's request first, so it cannot be forged. When membership cannot be known (a
// pack not loaded, the backend down or slow), the route's on_unknown policy applies:
// open admits, closed rejects (number_pack/unknown); either way it is counted.
package numberpack

import (
	"math/bits"
	"runtime"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/packfile"
)

// Filter is a built number_pack filter for one route.
type Filter struct {
	key      filters.KeySpec
	annotate bool
	open     bool // on_unknown: open
	header   []byte
	// headerCanon is header as fasthttp normalises it; headerAsIs: header differs from it
	headerCanon []byte
	headerAsIs  bool
	names       []string // pack names by bit
	full        uint64   // every pack's bit
	strs        bool     // some pack is a string pack (keys: string): any key is looked up
	values      *headerValues

	notEligible, unknown, badKey *filters.Reason

	files *loader  // source file; nil with source service
	svc   *service // source service, or the fallback of source file; may be nil
	m     *filterMetrics

	closeOnce sync.Once
}

// unknown causes
const (
	known = iota
	causeNotLoaded
	causeError
	causeTimeout
	causeBusy
)

// Decide implements filters.Filter.
//
// Its cost at 10M numbers with random users is the memory read of the user's part of
// the set (a cache miss: ~75 ns of dependent latency on this VM), so Decide starts that
// read as soon as it knows the number (generation.probe) and does as little as it can
// after it: the annotate header is stripped first (measured: stripping it while the
// read is under way, as before, cost 10-15 ns more per decision - the work queued
// behind the missing read is not free), then the key is read, the read started, and
// what is left is the lookup's end and the counters.
func (f *Filter) Decide(r *filters.Request) filters.Result {
	f.stripHeader(&r.Ctx.Request.Header) // first: the key may be this header itself
	raw, st := f.key.Read(r)             // read as a number: the same key as every other filter's
	var key []byte
	var n uint64
	num := false
	if st == filters.KeyFound {
		key, n, num = f.number(raw)
	}
	var v *view
	var p probes
	if num && f.files != nil {
		if v = f.files.current(); v != nil {
			v.gen.probe(n, &p)
		}
	}
	if st == filters.KeyBad {
		f.m.noKey.Inc(uint64(r.Now))
		return filters.RejectWith(f.badKey)
	}
	ok := st == filters.KeyFound && (num || (f.strs && packfile.ValidKey(raw)))
	if !ok {
		f.m.noKey.Inc(uint64(r.Now))
		return f.notMember()
	}
	spread := n + uint64(r.Now) // picks the counters' shard: differs between requests
	var mask uint64
	var cause int
	if f.strs {
		mask, cause = f.membershipKey(raw, key, n, num, r.Now)
	} else {
		mask, cause = f.membership(v, &p, key, n, r.Now)
	}
	if cause != known {
		f.m.unknown.Inc(spread)
		switch cause {
		case causeNotLoaded:
			f.m.unknownNotLoaded.Inc()
		case causeError:
			f.m.unknownError.Inc()
		case causeTimeout:
			f.m.unknownTimeout.Inc()
		default:
			f.m.unknownBusy.Inc()
		}
		if f.open {
			return filters.Pass
		}
		// Come back in 2-3 s: a load or the backend's recovery, not a client's fault.
		return filters.Result{Action: filters.Reject, Reason: f.unknown, RetryAfter: 2*time.Second + time.Duration(uint64(r.Now)%uint64(time.Second))}
	}
	if mask == 0 {
		f.m.notMember.Inc(spread)
		return f.notMember()
	}
	f.m.member.Inc(spread)
	if f.annotate {
		f.values.set(&r.Ctx.Request.Header, f.headerCanon, mask)
	}
	return filters.Pass
}

// stripHeader removes the annotate header from the client's request. fasthttp's
// DelBytes normalises the name on every call (a byte at a time: ~30 ns, a fifth of a
// decision at 10M), so the header is looked for first, by its canonical name (the
// gateway normalises header names as it reads them) and as configured: DelBytes runs
// only when the client sent it. A header sent with an empty value may be reported
// absent (fasthttp stores it with a nil value) and pass: it names no pack.
func (f *Filter) stripHeader(h *fasthttp.RequestHeader) {
	if h.PeekCanonical(f.headerCanon) != nil || (f.headerAsIs && h.PeekCanonical(f.header) != nil) {
		h.DelBytes(f.header)
	}
}

// number returns the user number in a key read and its canonical form (see canonical);
// ok is false when the key is not a user number.
func (f *Filter) number(raw []byte) (key []byte, n uint64, ok bool) {
	if f.key.Format != filters.KeyNumber {
		return canonical(raw)
	}
	// Read as a number, the key is canonical already: 1 to 20 digits, no leading zero,
	// at most MaxUint64. Only its value is left to compute.
	for _, c := range raw {
		n = n*10 + uint64(c-'0')
	}
	if n == reservedNumber {
		return nil, 0, false
	}
	return raw, n, true
}

func (f *Filter) notMember() filters.Result {
	if f.annotate {
		return filters.Pass
	}
	return filters.RejectWith(f.notEligible)
}

// membership returns the bitmask of the route's packs that hold the user number n (key
// is its canonical decimal form), or the reason it cannot be known. A number found in a loaded pack is a member
// even while another pack of the route is still loading; "in none" needs all of them.
// v is the serving view when the lookup was probed (p), nil when none was serving.
func (f *Filter) membership(v *view, p *probes, key []byte, n uint64, now int64) (uint64, int) {
	if f.files != nil {
		if v != nil {
			if m := v.lookupProbed(n, p); m != 0 || v.known == f.full {
				return m, known
			}
		}
		if f.svc == nil {
			return 0, causeNotLoaded
		}
	}
	return f.svc.membership(key, now, f.m)
}

// membershipKey is membership for a route with string packs: string packs are asked
// with the key as sent (raw), number packs with its value when it is a number.
func (f *Filter) membershipKey(raw, key []byte, n uint64, num bool, now int64) (uint64, int) {
	if v := f.files.current(); v != nil {
		if m := v.lookupKey(raw, n, num); m != 0 || v.known == f.full {
			return m, known
		}
	}
	if f.svc == nil || !num {
		return 0, causeNotLoaded
	}
	return f.svc.membership(key, now, f.m)
}

// start runs the background work of a freshly built filter. If the gateway drops the
// filter without closing it (a configuration that failed to build elsewhere), the
// loader is stopped when the filter is garbage collected.
func (f *Filter) start() {
	if f.files == nil {
		return
	}
	f.files.start()
	runtime.AddCleanup(f, func(l *loader) { l.shutdown(false) }, f.files)
}

// Close stops the filter's pack loader. Requests still in the retired chain keep
// working: the loaded packs stay readable until the last of them is gone.
func (f *Filter) Close() error {
	f.closeOnce.Do(func() {
		if f.files != nil {
			f.files.close()
		}
	})
	return nil
}

// Packs returns the route's pack names in bit order (bit 0 first).
func (f *Filter) Packs() []string { return f.names }

// headerValues are the annotate header's values ("vip,new_users"): precomputed for every
// combination when the route has at most 8 packs, else built per request in a pooled
// buffer.
type headerValues struct {
	table [][]byte
	names [][]byte
	pool  sync.Pool
}

const maxTablePacks = 8

func newHeaderValues(names []string) *headerValues {
	hv := &headerValues{}
	for _, n := range names {
		hv.names = append(hv.names, []byte(n))
	}
	hv.pool.New = func() any { b := make([]byte, 0, 256); return &b }
	if len(names) <= maxTablePacks {
		hv.table = make([][]byte, 1<<uint(len(names)))
		for m := range hv.table {
			hv.table[m] = hv.appendValue(nil, uint64(m))
		}
	}
	return hv
}

func (hv *headerValues) appendValue(b []byte, mask uint64) []byte {
	for first := true; mask != 0; mask &= mask - 1 {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, hv.names[bits.TrailingZeros64(mask)]...)
	}
	return b
}

// set sets the header key (in canonical form: SetCanonical skips SetBytesKV's
// normalisation of the name, ~30 ns) to the packs of mask.
func (hv *headerValues) set(h *fasthttp.RequestHeader, key []byte, mask uint64) {
	if hv.table != nil {
		h.SetCanonical(key, hv.table[mask])
		return
	}
	bp := hv.pool.Get().(*[]byte)
	*bp = hv.appendValue((*bp)[:0], mask)
	h.SetCanonical(key, *bp)
	hv.pool.Put(bp)
}

var (
	_ filters.Filter             = (*Filter)(nil)
	_ interface{ Close() error } = (*Filter)(nil)
)
