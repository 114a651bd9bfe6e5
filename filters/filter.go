// Package filters is the filter API of floodgate: what a filter is, how it declares
// itself, how its configuration is checked and built, and what it sees of a request.
//
// A filter is a per-route admission step. The gateway builds one chain per route from the
// filters the route's configuration names, in the fixed order of order.go, and runs it on
// every request before proxying:
//
//	for each filter in the route's chain:
//	    result := filter.Decide(request)
//	    Continue -> next filter (after result.Wait, if a filter queued the request)
//	    Reject   -> the gateway answers itself (the route's fallback, the reason's status,
//	                X-Floodgate-Verdict: <filter>/<reason>, Retry-After) and stops
//
// The lifecycle follows Caddy's: a filter registers a Definition in init(); for each
// configuration the gateway makes a fresh Config with Definition.New, decodes the route's
// YAML into it strictly (unknown fields are errors), calls Validate, then Build - beside
// the running chain, never touching it. Only when every route of the new configuration has
// built does the gateway swap the new chains in with one atomic store. Filters of the old
// configuration that implement io.Closer are closed after the swap unless the new chain
// reuses them.
//
// Decide runs on the request path: it must not allocate, block on a lock, log, or call
// time.Now (the request's time is in Request.Now). filters/filtertest proves the first.
package filters

import (
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Filter decides on one request. Implementations are built by Config.Build and shared by
// every request of their route, so Decide must be safe for concurrent use.
type Filter interface {
	Decide(r *Request) Result
}

// Config is a filter's decoded configuration for one route.
//
// Validate checks the values alone (no I/O, no side effects: it changes nothing, not even
// to fill in a default) and returns nil or the problems found; use FieldError (or Errors
// of them) so that the operator sees route, filter, field and value. Defaults live in the
// Definition's New; a default that follows from another field (a burst from the rate)
// is filled in by Defaults (see Defaulter) once Validate has passed.
//
// Build makes the filter. prev is the filter of the same name that serves the same route
// in the running configuration, or nil. Build may reuse prev's state (a token bucket whose
// parameters did not change keeps its tokens, so that a reload is not a free burst), but
// must not change prev or anything else the running configuration uses: if any other part
// of the new configuration fails, the new one is thrown away and prev keeps serving.
type Config interface {
	Validate() error
	Build(bc *BuildContext, prev Filter) (Filter, error)
}

// Defaulter is implemented by a Config with defaults that follow from other fields (a
// burst of rate/10). The gateway calls Defaults once Validate has passed, before Build
// and before /config shows the configuration, so that operators see the effective
// values. Defaults must not fail: whatever it needs, Validate has checked.
type Defaulter interface {
	Defaults()
}

// Definition declares a filter: its name (the key under a route's `filters:` and in Consul
// paths) and a constructor for a Config holding the defaults, into which the route's YAML
// is decoded.
type Definition struct {
	Name string
	New  func() Config
}

// Action is what a filter decided.
type Action uint8

const (
	// Continue passes the request to the next filter (or the upstream).
	Continue Action = iota
	// Reject stops the chain; the gateway answers with Result.Reason.
	Reject
)

// Result is a filter's decision. The zero value is Continue.
type Result struct {
	Action Action
	// Reason says why the request was rejected (Action == Reject). It must come from
	// BuildContext.Reason so that the gateway can count it without a lookup.
	Reason *Reason
	// RetryAfter, when positive on a Reject, becomes the Retry-After header (whole
	// seconds, rounded up). Filters add jitter themselves so clients do not return in
	// lockstep.
	RetryAfter time.Duration
	// Wait, when positive on a Continue, asks the gateway to hold the request that long
	// before the next filter (a filter queued it for a token it has already reserved).
	Wait time.Duration
}

// Pass is the Continue result.
var Pass = Result{}

// RejectWith returns a Reject result for reason.
func RejectWith(reason *Reason) Result { return Result{Action: Reject, Reason: reason} }

// Route is what a filter may know about the route it serves.
type Route struct {
	Name string
	// Core routes carry the campaign's essential operations (lottery, grant); non-core
	// ones (info, report) are the first to give up under pressure.
	Core bool
}

// Request is a filter's view of one request. It is valid only during Decide: keep nothing
// from it, nor any byte slice obtained from Ctx, after Decide returns.
type Request struct {
	// Ctx is the fasthttp request. Filters read it; a filter that annotates the request
	// for the upstream (number_pack's membership header) may set request headers.
	Ctx *fasthttp.RequestCtx
	// Now is the request's arrival time on the process's monotonic clock, in nanoseconds.
	// Use it for rates and intervals.
	Now int64
	// Wall is the same instant as Unix nanoseconds. Use it only for things that must agree
	// across gateway instances (sampling windows), never for intervals.
	Wall int64
	// Route is the route the request matched.
	Route *Route
	// ClientIP is the client's address: the peer, or the nearest untrusted address of
	// X-Forwarded-For when the peer is a configured trusted proxy.
	ClientIP netip.Addr
	// Rank is set by a filter that sorts requests into promotion tiers (promo_throttle):
	// 1 + the rank of the request's tier in shedding order (1: the tier shed first); 0
	// when no filter ranked the request. The gateway's adaptive overload protection takes
	// it as the tier part of the request's admission level, so the tag is classified once.
	Rank int

	keyBuf [24]byte // KeySpec.Read's canonical key
	valArr [64]byte // Query's decoded value, when it fits
	valBuf []byte   // Query's decoded value
}

// BuildContext carries what Build needs from the gateway: the route, where to log, and
// how to declare rejection reasons.
type BuildContext struct {
	Route  Route
	Filter string
	Logger *zap.Logger
	// Env is shared by every route of one gateway process and survives reloads.
	Env     *Env
	newHook func(*Reason)
}

// NewBuildContext is used by the gateway (and filtertest) to build one filter of one
// route. onReason, if not nil, is called for every Reason the filter declares, so that the
// caller can attach its counters.
func NewBuildContext(route Route, filter string, logger *zap.Logger, env *Env, onReason func(*Reason)) *BuildContext {
	if logger == nil {
		logger = zap.NewNop()
	}
	if env == nil {
		env = NewEnv()
	}
	return &BuildContext{Route: route, Filter: filter, Logger: logger.With(zap.String("route", route.Name), zap.String("filter", filter)), Env: env, newHook: onReason}
}

// Reason declares one reason this filter may reject for, e.g. bc.Reason("limited", 429)
// gives the verdict "token_bucket/limited". status is the HTTP status of the answer; 0
// means the route's fallback status.
func (bc *BuildContext) Reason(name string, status int) *Reason {
	r := &Reason{Filter: bc.Filter, Name: name, Status: status}
	r.Verdict = bc.Filter + "/" + name
	r.header = []byte(r.Verdict)
	if bc.newHook != nil {
		bc.newHook(r)
	}
	return r
}

// Reason is one way a filter rejects. The gateway writes Verdict into the
// X-Floodgate-Verdict header and counts it in floodgate_requests_total{route,verdict}.
type Reason struct {
	Filter string
	Name   string
	// Verdict is "<filter>/<name>".
	Verdict string
	// Status is the HTTP status of the answer; 0 means the route's fallback status.
	Status int
	header []byte
	// Counters are attached by the gateway when it builds the chain.
	Count  func()
	Shadow func()
}

// VerdictBytes is Verdict as bytes, ready for a header, without allocating.
func (r *Reason) VerdictBytes() []byte { return r.header }
