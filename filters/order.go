package filters

// Order is the order of the chain: every route runs the filters it configures in this
// order, whatever order its configuration lists them in. Live switches may tune, enable or
// disable a filter; they never reorder the chain.
//
// Like CoreDNS's plugin.cfg, this is the one reviewed place that decides it: every filter
// feels the effects of all filters above it, and must not care what those above do.
// Cheap, request-shape checks come first; filters that spend shared capacity (tokens)
// come late, so that a request rejected for another reason does not use up a token;
// number_pack, which may ask a remote service, comes last.
var Order = []string{
	// acl: allow/deny by method, path, header or client network (cheapest, stateless).
	"acl",
	// promo_throttle: the promotion layer - per promotion-tier rates and shedding by tier.
	"promo_throttle",
	// sample: non-core routes admit only a share of their users.
	"sample",
	// token_bucket: per-route and per-key rate limits.
	"token_bucket",
	// number_pack: eligibility by phone/user number packs (may read through a service).
	"number_pack",
}
