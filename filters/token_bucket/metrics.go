package tokenbucket

import "github.com/floodgate/floodgate/internal/metrics"

// Rejections are counted by the gateway, floodgate_requests_total{route,
// verdict="token_bucket/limited"} (and "token_bucket/missing_key"); admitted requests
// are not counted here, to keep the request path free of a shared counter. These add
// what the verdicts do not show.
var (
	// queued: requests admitted after waiting for a reserved token (wait:).
	queued = metrics.NewCounterVec("token_bucket_queued_total",
		"Requests admitted after waiting for a reserved token, by route.", "route")
	// evictions: keys whose bucket was not full, evicted to make room for a new key (the
	// table is too small for the live keys: raise max_keys).
	evictions = metrics.NewCounterVec("token_bucket_evictions_total",
		"Live keys evicted from a full token_bucket table to make room for a new key, by route.", "route")
	// missingKey: requests that carried no key (handled by missing_key).
	missingKey = metrics.NewCounterVec("token_bucket_missing_key_total",
		"Requests without the configured key, by route.", "route")
)
