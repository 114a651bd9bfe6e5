package promothrottle

import "github.com/floodgate/floodgate/internal/metrics"

// requests counts every decision by tier: floodgate_promo_throttle_requests_total{route,
// tier, verdict}, verdict = admitted | limited | shed. Rejections are also counted by the
// gateway under floodgate_requests_total{route, verdict="promo_throttle/limited" or
// "promo_throttle/shed"}; this counter adds the tier, and the admitted side, so that an
// operator sees what each promotion channel sends and what it gets through. Counters are
// resolved when the filter is built; a decision costs one atomic add.
var requests = metrics.NewCounterVec("promo_throttle_requests_total",
	"Requests by route, promotion tier and verdict (admitted, limited, shed).",
	"route", "tier", "verdict")
