package sample

import "github.com/floodgate/floodgate/internal/metrics"

// decisions counts every draw: floodgate_sample_decisions_total{route, result, key},
// result = kept | dropped, key = user (drawn per user and window) | none (the request
// carried no key and was drawn on its own). Rejections are also counted by the gateway
// under floodgate_requests_total{route, verdict="sample/dropped"}; this counter adds the
// kept side and the keyless share, so the effective ratio can be read off directly.
var decisions = metrics.NewCounterVec("sample_decisions_total",
	"Sampling draws by route, result (kept, dropped) and key (user, none).",
	"route", "result", "key")
