package promothrottle

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/ratelimit"
)

// Name is the filter's name in configurations, Consul paths and verdicts.
const Name = "promo_throttle"

func init() {
	filters.Register(filters.Definition{Name: Name, New: func() filters.Config {
		return &Config{
			Status:         429,
			ShedRetryAfter: filters.Duration(10 * time.Second),
			RetryJitter:    filters.Duration(2 * time.Second),
		}
	}})
}

// Bounds.
const (
	// MaxTiers bounds the number of tiers.
	MaxTiers = 64
	// MaxBurst bounds a tier's burst.
	MaxBurst = filters.MaxBurst
	// MaxRetry bounds shed_retry_after and retry_jitter.
	MaxRetry = 10 * time.Minute
)

// Config is the promo_throttle filter's configuration; see README.md.
type Config struct {
	// Source is where a request's promotion tag is: query:NAME, header:NAME or
	// cookie:NAME. Required.
	Source filters.KeySpec `yaml:"source" json:"source"`
	// DefaultTier is the tier of requests without a tag (organic traffic), and of
	// requests whose tag matches no tier unless UnknownTier is set. Required; must name
	// a tier.
	DefaultTier string `yaml:"default_tier" json:"default_tier"`
	// UnknownTier is the tier of requests whose tag matches no tier; empty (default):
	// DefaultTier. A separate tier keeps invented tags (adtag=zz) out of the organic
	// traffic's budget.
	UnknownTier string `yaml:"unknown_tier" json:"unknown_tier,omitempty"`
	// Pressure sheds tiers from the lowest priority up: at pressure p, the p tiers of
	// lowest priority are rejected outright (promo_throttle/shed). 0 (default) sheds
	// nothing; at most the number of tiers.
	Pressure int `yaml:"pressure" json:"pressure"`
	// Tiers maps a tier's name to its match rules, priority and limit.
	Tiers map[string]*Tier `yaml:"tiers" json:"tiers"`
	// Global makes each tier's rate and burst the limit of all gateway instances
	// together: each enforces rate/n and burst/n, n = the live instances.
	Global bool `yaml:"global" json:"global"`
	// Status is the HTTP status of promo_throttle/limited answers (default 429).
	Status int `yaml:"status" json:"status"`
	// ShedStatus is the HTTP status of promo_throttle/shed answers; 0 (default) gives
	// the route's fallback answer and status.
	ShedStatus int `yaml:"shed_status" json:"shed_status"`
	// ShedRetryAfter is the Retry-After of shed answers, before jitter (default 10s; 0:
	// none).
	ShedRetryAfter filters.Duration `yaml:"shed_retry_after" json:"shed_retry_after"`
	// RetryJitter is the largest random extra added to Retry-After (default 2s).
	RetryJitter filters.Duration `yaml:"retry_jitter" json:"retry_jitter"`
}

// Tier is one promotion tier.
type Tier struct {
	// Priority orders the tiers for shedding: higher is more important, shed last.
	// Priorities must differ.
	Priority int `yaml:"priority" json:"priority"`
	// Rate is the tier's limit in requests per second (> 0).
	Rate float64 `yaml:"rate" json:"rate"`
	// Burst is the tier's bucket size; 0 or unset: ceil(rate/10), at least 1.
	Burst int64 `yaml:"burst" json:"burst"`
	// Match lists tag values of this tier (exact; compared without case and without
	// surrounding whitespace).
	Match []string `yaml:"match" json:"match,omitempty"`
	// Prefix lists tag prefixes of this tier; the longest matching prefix wins, and an
	// exact match beats any prefix.
	Prefix []string `yaml:"prefix" json:"prefix,omitempty"`
}

// burst is Burst or its default, ceil(rate/10), at least 1.
func (t *Tier) burst() int64 { return filters.DefaultBurst(t.Burst, t.Rate) }

// Validate implements filters.Config. It reports every problem, naming the field and
// the value; it changes nothing (Defaults fills in the tiers' bursts).
func (c *Config) Validate() error {
	var errs filters.Errors
	switch c.Source.Source {
	case filters.KeyQuery, filters.KeyHeader, filters.KeyCookie:
	default:
		errs.Add(filters.Errorf("source", c.Source.String(), "want query:NAME, header:NAME or cookie:NAME (where the promotion tag is)"))
	}
	names := slices.Sorted(maps.Keys(c.Tiers))
	switch {
	case len(c.Tiers) == 0:
		errs.Add(filters.Errorf("tiers", nil, "at least one tier is needed (the default tier)"))
	case len(c.Tiers) > MaxTiers:
		errs.Add(filters.Errorf("tiers", len(c.Tiers), "at most %d tiers", MaxTiers))
	}
	if _, ok := c.Tiers[c.DefaultTier]; !ok {
		errs.Add(filters.Errorf("default_tier", c.DefaultTier, "must name a tier (tiers: %s)", strings.Join(names, ", ")))
	}
	if _, ok := c.Tiers[c.UnknownTier]; c.UnknownTier != "" && !ok {
		errs.Add(filters.Errorf("unknown_tier", c.UnknownTier, "must name a tier (tiers: %s), or be empty for default_tier", strings.Join(names, ", ")))
	}
	if c.Source.Format != filters.KeyText {
		errs.Add(filters.Errorf("source", c.Source.String(), "a promotion tag is text; \"as number\" does not apply"))
	}
	if c.Pressure < 0 || c.Pressure > len(c.Tiers) {
		errs.Add(filters.Errorf("pressure", c.Pressure, "must be between 0 (shed nothing) and the number of tiers (%d: shed all)", len(c.Tiers)))
	}
	matched := map[string]string{}  // exact value -> tier
	prefixed := map[string]string{} // prefix -> tier
	priorities := map[int]string{}
	for _, name := range names {
		t := c.Tiers[name]
		path := "tiers." + name
		if !filters.ValidName(name) {
			errs.Add(filters.Errorf(path, name, "tier names use letters, digits, '-' and '_' (they appear in Consul keys and metrics)"))
		}
		if t == nil {
			errs.Add(filters.Errorf(path, nil, "a tier needs at least a priority and a rate"))
			continue
		}
		if other, dup := priorities[t.Priority]; dup {
			errs.Add(filters.Errorf(path+".priority", t.Priority, "tier %q has the same priority; priorities must differ (they decide the shedding order)", other))
		} else {
			priorities[t.Priority] = name
		}
		errs.Add(filters.CheckRate(path+".rate", t.Rate))
		errs.Add(filters.CheckBurst(path+".burst", t.Burst, t.Rate))
		for i, v := range t.Match {
			f := path + ".match." + strconv.Itoa(i)
			v = normTag(v)
			if len(v) > maxTag {
				errs.Add(filters.Errorf(f, v, "at most %d bytes", maxTag))
				continue
			}
			if v == "" {
				errs.Add(filters.Errorf(f, v, "must not be empty (a request without a tag goes to default_tier)"))
				continue
			}
			if other, dup := matched[v]; dup {
				errs.Add(filters.Errorf(f, v, "already matched by tier %q (tags are compared without case and surrounding whitespace)", other))
				continue
			}
			matched[v] = name
		}
		for i, p := range t.Prefix {
			f := path + ".prefix." + strconv.Itoa(i)
			p = normTag(p)
			if len(p) > maxTag {
				errs.Add(filters.Errorf(f, p, "at most %d bytes", maxTag))
				continue
			}
			if p == "" {
				errs.Add(filters.Errorf(f, p, "must not be empty (it would match every tag; use default_tier)"))
				continue
			}
			if other, dup := prefixed[p]; dup {
				errs.Add(filters.Errorf(f, p, "already a prefix of tier %q (tags are compared without case and surrounding whitespace)", other))
				continue
			}
			prefixed[p] = name
		}
	}
	errs.Add(filters.CheckStatus("status", c.Status, ""))
	errs.Add(filters.CheckStatus("shed_status", c.ShedStatus, "the route's fallback"))
	if c.ShedRetryAfter.D() > MaxRetry {
		errs.Add(filters.Errorf("shed_retry_after", c.ShedRetryAfter, "must be at most %v", MaxRetry))
	}
	if c.RetryJitter.D() > MaxRetry {
		errs.Add(filters.Errorf("retry_jitter", c.RetryJitter, "must be at most %v", MaxRetry))
	}
	return errs.Err()
}

// Defaults implements filters.Defaulter: each tier's burst, from its rate when unset.
func (c *Config) Defaults() {
	for _, t := range c.Tiers {
		t.Burst = t.burst()
	}
}

// Build implements filters.Config.
//
// Each tier's bucket is taken over from prev (a promo_throttle of the same route) when
// prev has a tier of the same name, so a reload - a new pressure, a new rate - is neither
// a free burst nor a blackout: a changed rate or burst carries the bucket's tokens over
// (tier.takeOver, ratelimit.Handover). New tiers start with a full bucket.
func (c *Config) Build(bc *filters.BuildContext, prev filters.Filter) (filters.Filter, error) {
	p, _ := prev.(*PromoThrottle)
	f := &PromoThrottle{
		source:     c.Source,
		global:     c.Global,
		env:        bc.Env,
		exact:      map[string]int{},
		jitter:     int64(c.RetryJitter),
		shedRetry:  int64(c.ShedRetryAfter),
		limited:    bc.Reason("limited", c.Status),
		shedReason: bc.Reason("shed", c.ShedStatus),
		badKey:     bc.Reason("bad_key", 400),
	}
	if f.env == nil {
		f.env = filters.NewEnv()
	}
	// Tiers in shedding order: lowest priority first.
	names := slices.Sorted(maps.Keys(c.Tiers))
	sort.SliceStable(names, func(i, j int) bool { return c.Tiers[names[i]].Priority < c.Tiers[names[j]].Priority })
	f.tiers = make([]tier, len(names))
	route := bc.Route.Name
	for i, name := range names {
		ct := c.Tiers[name]
		t := &f.tiers[i]
		t.name = name
		t.rate, t.burst = ct.Rate, ct.burst()
		t.limit = ratelimit.NewLimit(t.rate, t.burst)
		t.shed = i < c.Pressure
		t.admitted = requests.WithLabelValues(route, name, "admitted")
		t.rejected = requests.WithLabelValues(route, name, "limited")
		t.shedCount = requests.WithLabelValues(route, name, "shed")
		t.takeOver(p.tier(name))
		if name == c.DefaultTier {
			f.def = i
		}
		for _, v := range ct.Match {
			f.exact[normTag(v)] = i
		}
		for _, pre := range ct.Prefix {
			f.prefixes = append(f.prefixes, prefix{value: []byte(normTag(pre)), tier: i})
		}
	}
	f.unknown = f.def
	for i := range f.tiers {
		if f.tiers[i].name == c.UnknownTier {
			f.unknown = i
		}
	}
	// Longest prefix first, so that the most specific one wins.
	sort.SliceStable(f.prefixes, func(i, j int) bool { return len(f.prefixes[i].value) > len(f.prefixes[j].value) })
	return f, nil
}

var _ filters.Config = (*Config)(nil)

// Limits implements filters.Limited: the pressure (how many tiers are shed, out of how
// many) and each tier's rate.
func (c *Config) Limits() []filters.Limit {
	out := []filters.Limit{{Name: "pressure", Value: float64(c.Pressure), Unit: "tiers", Max: float64(len(c.Tiers))}}
	names := slices.Sorted(maps.Keys(c.Tiers))
	// highest priority first; the last Pressure ones are shed
	sort.SliceStable(names, func(i, j int) bool { return c.Tiers[names[i]].Priority > c.Tiers[names[j]].Priority })
	for i, name := range names {
		out = append(out, filters.Limit{Name: "tier_rate", Tier: name, Value: c.Tiers[name].Rate, Unit: "req/s",
			Shed: i >= len(names)-c.Pressure, Global: c.Global})
	}
	return out
}

// maxTag bounds the length of a tag that can match a tier (longer tags are unknown).
const maxTag = 64

// normTag is a tag as it is compared: without surrounding spaces and tabs, in lower case
// (ASCII).
func normTag(s string) string { return strings.ToLower(strings.Trim(s, " \t")) }
