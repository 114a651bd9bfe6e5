package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/accept"
	"github.com/floodgate/floodgate/internal/bytesconv"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/queue"
)

// An async route is answered by the gateway itself: once its filters admit a request,
// the request is recorded as a grant (internal/grant), made durable by the acceptor
// (internal/accept: the queue, or the local journal when the queue cannot take it), and
// answered 202 with the grant id. `floodgate deliver` sends it to the route's pool later.
//
//	202  X-Floodgate-Verdict: async/accepted  {"ok":true,"grant_id":"grant-…","duplicate":false}
//	400  async/missing_key    no idempotency key and the route requires one
//	400  async/bad_key        a key longer than 256 bytes or with control characters
//	400  async/bad_request    a field named in async.required is missing
//	409  async/conflict       the key was accepted before (by this gateway, recently) with other content
//	     async/unavailable    neither the queue nor the journal could store it: the route's fallback
//
// A resubmission (the same key) gets the same grant id on every gateway instance: the id
// is derived from route and key. A gateway that accepted the key recently answers at
// once with "duplicate":true; otherwise the grant is stored again and the delivery
// backend, which records each grant id once, makes the second delivery a no-op.

var (
	asyncAccepted = metrics.NewCounterVec("async_accepted_total",
		"Grants accepted (answered 202) by async routes, by where they were stored: queue, journal, or recent (a resubmission answered from memory).", "route", "via")
	asyncCommitLatency = metrics.NewHistogramVec("async_commit_seconds",
		"Time from handing a grant to the acceptor to its durable storage (or failure), by route.", metrics.LatencyBuckets, "route")
)

var (
	contentJSON  = []byte("application/json")
	bodyPrefix   = []byte(`{"ok":true,"grant_id":"`)
	bodyDupFalse = []byte(`","duplicate":false}` + "\n")
	bodyDupTrue  = []byte(`","duplicate":true}` + "\n")
	maxKeyLen    = 256
)

// asyncRoute is an async route's part of the state.
type asyncRoute struct {
	acc        *accept.Acceptor
	recent     *recentGrants
	subject    string
	keyKind    string // header, query, form
	keyName    []byte
	requireKey bool
	required   [][]byte
	keep       [][]byte
	instance   string

	accepted, missingKey, badKey, badRequest, conflict, unavailable *filters.Reason
	viaQueue, viaJournal, viaRecent                                 func()
	commitLatency                                                   interface{ Observe(float64) }
}

func (g *Gateway) buildAsync(name string, rc *config.Route) (*asyncRoute, error) {
	if g.acceptor == nil {
		return nil, fmt.Errorf("route %s is async, but this gateway started without async routes: the queue and the journal are opened at start; restart the gateway", name)
	}
	kind, key, err := config.ParseAsyncKey(rc.Async.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	a := &asyncRoute{
		acc: g.acceptor, recent: g.recent, subject: queue.Subject(name),
		keyKind: kind, keyName: []byte(key), requireKey: rc.Async.RequireKey, instance: g.instance,
		accepted:    gatewayReason(name, "async", "accepted", fasthttp.StatusAccepted),
		missingKey:  gatewayReason(name, "async", "missing_key", fasthttp.StatusBadRequest),
		badKey:      gatewayReason(name, "async", "bad_key", fasthttp.StatusBadRequest),
		badRequest:  gatewayReason(name, "async", "bad_request", fasthttp.StatusBadRequest),
		conflict:    gatewayReason(name, "async", "conflict", fasthttp.StatusConflict),
		unavailable: gatewayReason(name, "async", "unavailable", 0),
		viaQueue:    asyncAccepted.WithLabelValues(name, "queue").Inc,
		viaJournal:  asyncAccepted.WithLabelValues(name, "journal").Inc,
		viaRecent:   asyncAccepted.WithLabelValues(name, "recent").Inc,
	}
	a.commitLatency = asyncCommitLatency.WithLabelValues(name)
	for _, f := range rc.Async.Required {
		a.required = append(a.required, []byte(f))
	}
	for _, h := range rc.Async.KeepHeaders {
		a.keep = append(a.keep, []byte(h))
	}
	return a, nil
}

// accept records an admitted request of an async route and answers it.
func (g *Gateway) accept(ctx *fasthttp.RequestCtx, st *state, rt *route, now time.Time) *filters.Reason {
	a := rt.async
	key := a.key(ctx)
	var keyBuf [32]byte
	switch {
	case len(key) == 0 && a.requireKey:
		rt.answer(ctx, st, a.missingKey, 0)
		return a.missingKey
	case len(key) == 0:
		var rnd [16]byte
		rand.Read(rnd[:])
		hex.Encode(keyBuf[:], rnd[:])
		key = keyBuf[:]
	case len(key) > maxKeyLen || !printable(key):
		rt.answer(ctx, st, a.badKey, 0)
		return a.badKey
	}
	for _, f := range a.required {
		if len(ctx.QueryArgs().PeekBytes(f)) == 0 && len(ctx.PostArgs().PeekBytes(f)) == 0 {
			rt.answer(ctx, st, a.badRequest, 0)
			return a.badRequest
		}
	}
	p := a.acc.Get()
	defer a.acc.Put(p)
	r := &p.Rec
	var idBuf [160]byte
	id := grant.AppendID(idBuf[:0], rt.name, bytesconv.String(key))
	r.ID, r.Route, r.Key, r.Accepted, r.Gateway = bytesconv.String(id), rt.name, bytesconv.String(key), now.UnixNano(), a.instance
	r.Method = bytesconv.String(ctx.Method())
	// the path as the gateway forwards it (target.go): ctx.Path() is the decoded form
	// ("/grant/ x?y" for "/grant/%20x%3Fy"), which the deliverer would write into its
	// request line as it is - a broken line, or a path cut at the '?'
	path, pathBuf := targetPath(ctx.URI())
	if pathBuf != nil {
		defer putTargetBuf(pathBuf)
	}
	r.Path = bytesconv.String(path)
	r.Query = bytesconv.String(ctx.URI().QueryString())
	if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
		// the body's type is part of the request: without it the backend cannot read a form
		p.Headers = append(p.Headers, grant.Header{Name: "Content-Type", Value: bytesconv.String(ct)})
	}
	for _, h := range a.keep {
		// every line of a kept header, in order (a repeated X-Trace is several values)
		for _, v := range ctx.Request.Header.PeekAll(bytesconv.String(h)) {
			if len(v) > 0 {
				p.Headers = append(p.Headers, grant.Header{Name: bytesconv.String(h), Value: bytesconv.String(v)})
			}
		}
	}
	r.Headers = p.Headers
	r.Body = ctx.PostBody()
	fp := fingerprint(r)
	if prev, ok := a.recent.get(id); ok {
		if prev != fp {
			rt.answer(ctx, st, a.conflict, 0)
			return a.conflict
		}
		a.viaRecent()
		a.answer202(ctx, st, id, true)
		return a.accepted
	}
	p.Subject = a.subject
	p.Data = r.AppendBinary(p.Data[:0])
	start := time.Now()
	via, err := a.acc.Submit(p, now.Add(rt.timeout))
	a.commitLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		rt.answer(ctx, st, a.unavailable, 0)
		return a.unavailable
	}
	if via == accept.ViaQueue {
		a.viaQueue()
	} else {
		a.viaJournal()
	}
	a.recent.put(id, fp)
	a.answer202(ctx, st, id, false)
	return a.accepted
}

func (a *asyncRoute) answer202(ctx *fasthttp.RequestCtx, st *state, id []byte, dup bool) {
	a.accepted.Count()
	resp := &ctx.Response
	resp.SetStatusCode(fasthttp.StatusAccepted)
	resp.Header.SetContentTypeBytes(contentJSON)
	if st.verdictHeader {
		resp.Header.SetBytesKV(verdictHeaderName, a.accepted.VerdictBytes())
	}
	resp.ResetBody()
	resp.AppendBody(bodyPrefix)
	resp.AppendBody(id)
	if dup {
		resp.AppendBody(bodyDupTrue)
	} else {
		resp.AppendBody(bodyDupFalse)
	}
}

// key returns the request's idempotency key (nil: none).
func (a *asyncRoute) key(ctx *fasthttp.RequestCtx) []byte {
	switch a.keyKind {
	case "header":
		return ctx.Request.Header.PeekBytes(a.keyName)
	case "query":
		return ctx.QueryArgs().PeekBytes(a.keyName)
	default:
		return ctx.PostArgs().PeekBytes(a.keyName)
	}
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// fingerprint is a hash of what a grant asks for (method, path, query, kept headers, body):
// the same key with another fingerprint is a conflict.
func fingerprint(r *grant.Record) uint64 {
	h := uint64(14695981039346656037)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	mix(r.Method)
	mix(r.Path)
	mix(r.Query)
	for _, hd := range r.Headers {
		mix(hd.Name)
		mix(hd.Value)
	}
	mix(bytesconv.String(r.Body))
	return h
}
