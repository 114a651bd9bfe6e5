package filters

// Limit is one configured limit of a filter, for the operator's console and the
// floodgate_filter_limit gauge: something an operator compares with the traffic to see
// what is near its limit.
type Limit struct {
	// Name identifies the limit within the filter: "rate", "burst", "ratio", "pressure",
	// "tier_rate" (with Tier).
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Unit says what Value counts: "req/s", "requests", "ratio" (0..1) or "tiers".
	Unit string `json:"unit"`
	// Tier is the promotion tier a per-tier limit belongs to.
	Tier string `json:"tier,omitempty"`
	// Max is the largest meaningful value where there is one (pressure: the tier count).
	Max float64 `json:"max,omitempty"`
	// Shed is true for a tier the current pressure rejects outright.
	Shed bool `json:"shed,omitempty"`
	// Global is true when Value is for all gateway instances together (each enforces
	// Value/n).
	Global bool `json:"global,omitempty"`
}

// Limited is implemented by a filter Config that has limits worth showing against the
// traffic. It is read outside the request path (by the admin listener), on a validated
// configuration.
type Limited interface {
	Limits() []Limit
}
