package numberpack

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/internal/metrics"
)

var (
	lookupsVec = metrics.NewShardedCounterVec("number_pack_lookups_total",
		"Membership decisions by route and result: member, not_member (in none of the route's packs), no_key (missing or non-numeric user number), unknown.",
		"route", "result")
	unknownVec = metrics.NewCounterVec("number_pack_unknown_total",
		"Requests whose membership could not be known, by route, cause (not_loaded, service_error, service_timeout, service_busy) and the policy applied (open admits, closed rejects).",
		"route", "cause", "policy")
	serviceVec = metrics.NewCounterVec("number_pack_service_total",
		"Read-through lookups against the packs backend by route and result: hit, negative_hit (cached 'in no pack'), fetched, stale (expired answer used because the backend failed), error, timeout, busy (max_inflight reached).",
		"route", "result")
	loadsVec = metrics.NewCounterVec("number_pack_loads_total",
		"Pack loads by route and result: ok, error (a file could not be read or parsed).",
		"route", "result")
	numbersVec = metrics.NewGaugeVec("number_pack_numbers",
		"Distinct user numbers in each loaded pack.", "route", "pack")
	entriesVec = metrics.NewGaugeVec("number_pack_entries",
		"User numbers held for the route: its packs' distinct numbers added up (a number in two packs counts twice).", "route")
	loadSecondsVec = metrics.NewGaugeVec("number_pack_load_seconds",
		"Duration of the route's last successful pack load.", "route")
	loadedVec = metrics.NewGaugeVec("number_pack_loaded",
		"1 when every pack of the route is loaded from its file, else 0.", "route")
)

// filterMetrics are one route's collectors, resolved at Build so that the request path
// only does atomic adds.
type filterMetrics struct {
	// Every decision counts one of these: sharded (by the user number), so that two
	// cores deciding at once do not fight over one counter's cache line.
	member, notMember, noKey, unknown *metrics.ShardedCounter

	unknownNotLoaded, unknownError, unknownTimeout, unknownBusy prometheus.Counter

	svcHit, svcNegHit, svcFetched, svcStale, svcError, svcTimeout, svcBusy prometheus.Counter

	loadOK, loadError            prometheus.Counter
	numbers                      []prometheus.Gauge // by pack bit
	entries, loadSeconds, loaded prometheus.Gauge
}

func newFilterMetrics(route string, packs []string, open bool) *filterMetrics {
	policy := "closed"
	if open {
		policy = "open"
	}
	m := &filterMetrics{
		member:    lookupsVec.WithLabelValues(route, "member"),
		notMember: lookupsVec.WithLabelValues(route, "not_member"),
		noKey:     lookupsVec.WithLabelValues(route, "no_key"),
		unknown:   lookupsVec.WithLabelValues(route, "unknown"),

		unknownNotLoaded: unknownVec.WithLabelValues(route, "not_loaded", policy),
		unknownError:     unknownVec.WithLabelValues(route, "service_error", policy),
		unknownTimeout:   unknownVec.WithLabelValues(route, "service_timeout", policy),
		unknownBusy:      unknownVec.WithLabelValues(route, "service_busy", policy),

		svcHit:     serviceVec.WithLabelValues(route, "hit"),
		svcNegHit:  serviceVec.WithLabelValues(route, "negative_hit"),
		svcFetched: serviceVec.WithLabelValues(route, "fetched"),
		svcStale:   serviceVec.WithLabelValues(route, "stale"),
		svcError:   serviceVec.WithLabelValues(route, "error"),
		svcTimeout: serviceVec.WithLabelValues(route, "timeout"),
		svcBusy:    serviceVec.WithLabelValues(route, "busy"),

		loadOK:      loadsVec.WithLabelValues(route, "ok"),
		loadError:   loadsVec.WithLabelValues(route, "error"),
		entries:     entriesVec.WithLabelValues(route),
		loadSeconds: loadSecondsVec.WithLabelValues(route),
		loaded:      loadedVec.WithLabelValues(route),
	}
	for _, p := range packs {
		m.numbers = append(m.numbers, numbersVec.WithLabelValues(route, p))
	}
	return m
}
