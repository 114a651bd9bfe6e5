package planner

import (
	"fmt"
	"math"
	"strings"
)

// Options override the funnel's own settings; zero values keep them.
type Options struct {
	SafetyFactor float64
	Instances    int
	BurstRatio   *float64
	// NoCap keeps every route at estimate x safety factor even where a backend cannot carry
	// it (by default such routes are cut to what the backend can carry, core routes first).
	NoCap bool
}

// Status of a backend against what the plan asks of it.
type Status int

// Backend statuses.
const (
	// OK: capacity >= estimate x safety factor.
	OK Status = iota
	// ShortOfMargin: the backend carries the estimate but not the safety margin.
	ShortOfMargin
	// ShortOfEstimate: the backend cannot carry even the estimate.
	ShortOfEstimate
)

func (s Status) String() string {
	return [...]string{"ok", "cannot support the margin", "cannot support the estimate"}[s]
}

// MarshalText names the status in JSON: ok, short_of_margin, short_of_estimate.
func (s Status) MarshalText() ([]byte, error) {
	return []byte([...]string{"ok", "short_of_margin", "short_of_estimate"}[s]), nil
}

// Plan is the planner's result. Rates are requests/s; Need is the funnel estimate,
// Planned is Need x SafetyFactor, Limit is Planned cut to what the backends carry.
type Plan struct {
	Name         string        `json:"name"`
	SafetyFactor float64       `json:"safety_factor"`
	Instances    int           `json:"instances"`
	BurstRatio   float64       `json:"burst_ratio"`
	Capped       bool          `json:"capped"`
	Steps        []string      `json:"steps"`
	Channels     []ChannelPlan `json:"channels"`
	Routes       []RoutePlan   `json:"routes"`
	Backends     []BackendPlan `json:"backends"`
	// Links is the bandwidth of every link (empty when the funnel gives no sizes and no
	// link capacities); Storage the storage of every backend that gives its disk.
	Links   []LinkPlan    `json:"links"`
	Storage []StoragePlan `json:"storage"`
	// Need and Planned summed over all routes.
	Need    float64 `json:"need"`
	Planned float64 `json:"planned"`
}

// ChannelPlan is one promotion channel through the funnel.
type ChannelPlan struct {
	Name      string  `json:"name"`
	Exposures float64 `json:"exposures"`
	// Visitors per second at each step (same order as Plan.Steps).
	Visitors []float64 `json:"visitors"`
	// Need is the requests/s this channel brings to all routes; Planned is x safety.
	Need    float64 `json:"need"`
	Planned float64 `json:"planned"`
}

// RoutePlan is one route's limits.
type RoutePlan struct {
	Name               string   `json:"name"`
	Step               string   `json:"step"`
	Core               bool     `json:"core"`
	Backends           []string `json:"backends"`
	RequestsPerVisitor float64  `json:"requests_per_visitor"`
	Visitors           float64  `json:"visitors"` // visitors/s at the route's step, all channels
	Need               float64  `json:"need"`     // Visitors x RequestsPerVisitor
	Planned            float64  `json:"planned"`  // Need x SafetyFactor
	Limit              float64  `json:"limit"`    // Planned, cut to what the backends carry
	CutBy              string   `json:"cut_by"`   // the backend that cut the limit ("" if none)
	// PerInstance is the token bucket rate per gateway instance: ceil(Limit / Instances).
	PerInstance int64 `json:"per_instance"`
	// Burst is ceil(BurstRatio x PerInstance), at least 1.
	Burst int64 `json:"burst"`
	// Abandoned: no capacity left for the route: the plan turns it off.
	Abandoned bool `json:"abandoned"`
	// NoEstimate: the funnel brings no requests to the route; the plan leaves it alone.
	NoEstimate    bool       `json:"no_estimate"`
	Tiers         []TierPlan `json:"tiers"`
	TokenBucket   bool       `json:"token_bucket"`   // emit token_bucket limits
	PromoThrottle bool       `json:"promo_throttle"` // emit promo_throttle tier limits
}

// TierPlan is one promotion tier (channel) of a route.
type TierPlan struct {
	Channel     string  `json:"channel"`
	Need        float64 `json:"need"`
	Limit       float64 `json:"limit"` // the route's Limit split by the channels' shares of its need
	PerInstance int64   `json:"per_instance"`
}

// BackendPlan is one backend's need against its capacity.
type BackendPlan struct {
	Name     string   `json:"name"`
	Routes   []string `json:"routes"`
	Need     float64  `json:"need"`    // sum of the routes' Need
	Planned  float64  `json:"planned"` // Need x SafetyFactor
	Capacity float64  `json:"capacity"`
	Status   Status   `json:"status"`
	// Admitted is the sum of the routes' limits after cuts (<= Capacity when capped).
	Admitted float64 `json:"admitted"`
	// Abandonable lists the non-core routes on this backend, the ones that "can be
	// abandoned" when it cannot support the need.
	Abandonable []string `json:"abandonable"`
}

// eps absorbs floating-point noise so that 100 x 0.6 x 0.5 x 4 x 3 is 360, not 361.
const eps = 1e-9

func ceilInt(x float64) int64 {
	if x <= eps {
		return 0
	}
	return int64(math.Ceil(x - eps*math.Max(1, x)))
}

// Compute works the funnel into a plan.
func Compute(f *Funnel, o Options) (*Plan, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{Name: f.Name, SafetyFactor: f.SafetyFactor, Instances: f.Instances, BurstRatio: DefaultBurstRatio, Capped: !o.NoCap}
	if f.BurstRatio != nil {
		p.BurstRatio = *f.BurstRatio
	}
	if o.SafetyFactor != 0 {
		p.SafetyFactor = o.SafetyFactor
	}
	if o.Instances != 0 {
		p.Instances = o.Instances
	}
	if o.BurstRatio != nil {
		p.BurstRatio = *o.BurstRatio
	}
	if p.SafetyFactor == 0 {
		p.SafetyFactor = DefaultSafetyFactor
	}
	if p.Instances == 0 {
		p.Instances = DefaultInstances
	}
	switch {
	case bad(p.SafetyFactor) || p.SafetyFactor < 1 || p.SafetyFactor > 100:
		return nil, fmt.Errorf("safety factor must be between 1 and 100, got %v", p.SafetyFactor)
	case p.Instances < 1 || p.Instances > 10000:
		return nil, fmt.Errorf("instances must be between 1 and 10000, got %d", p.Instances)
	case bad(p.BurstRatio) || p.BurstRatio < 0 || p.BurstRatio > 10:
		return nil, fmt.Errorf("burst ratio must be between 0 and 10, got %v", p.BurstRatio)
	}
	stepIdx := map[string]int{}
	for i, s := range f.Steps {
		p.Steps = append(p.Steps, s.Name)
		stepIdx[s.Name] = i
	}

	// Visitors per channel per step.
	channels := f.ChannelNames()
	visitors := make(map[string][]float64, len(channels))
	for _, c := range channels {
		ch := f.Channels[c]
		v := make([]float64, len(f.Steps))
		x := ch.Exposures
		for i, s := range f.Steps {
			conv := s.Conversion
			if over, ok := ch.Conversion[s.Name]; ok {
				conv = over
			}
			x *= conv
			v[i] = x
		}
		visitors[c] = v
		p.Channels = append(p.Channels, ChannelPlan{Name: c, Exposures: ch.Exposures, Visitors: v})
	}

	// Routes: need by channel, planned.
	routeIdx := map[string]int{}
	for _, r := range f.RouteNames() {
		rt := f.Routes[r]
		rp := RoutePlan{Name: r, Step: rt.Step, Core: rt.Core, Backends: rt.BackendNames(), RequestsPerVisitor: rt.RequestsPerVisitor,
			TokenBucket: rt.emits(TokenBucket), PromoThrottle: rt.emits(PromoThrottle)}
		si := stepIdx[rt.Step]
		for ci, c := range channels {
			v := visitors[c][si]
			need := v * rt.RequestsPerVisitor
			rp.Visitors += v
			rp.Need += need
			rp.Tiers = append(rp.Tiers, TierPlan{Channel: c, Need: need})
			p.Channels[ci].Need += need
		}
		rp.Planned = rp.Need * p.SafetyFactor
		rp.Limit = rp.Planned
		routeIdx[r] = len(p.Routes)
		p.Routes = append(p.Routes, rp)
		p.Need += rp.Need
		p.Planned += rp.Planned
	}
	for i := range p.Channels {
		p.Channels[i].Planned = p.Channels[i].Need * p.SafetyFactor
	}

	// Backends: need vs capacity; cut the routes of a backend that cannot carry them.
	for _, b := range f.BackendNames() {
		bp := BackendPlan{Name: b, Capacity: f.Backends[b].Capacity}
		var idx []int
		for i := range p.Routes {
			for _, rb := range p.Routes[i].Backends {
				if rb == b {
					idx = append(idx, i)
					bp.Routes = append(bp.Routes, p.Routes[i].Name)
					bp.Need += p.Routes[i].Need
					if !p.Routes[i].Core {
						bp.Abandonable = append(bp.Abandonable, p.Routes[i].Name)
					}
				}
			}
		}
		bp.Planned = bp.Need * p.SafetyFactor
		switch {
		case bp.Capacity+eps*math.Max(1, bp.Planned) >= bp.Planned:
			bp.Status = OK
		case bp.Capacity+eps*math.Max(1, bp.Need) >= bp.Need:
			bp.Status = ShortOfMargin
		default:
			bp.Status = ShortOfEstimate
		}
		if !o.NoCap {
			cutToCapacity(p, b, bp.Capacity, idx)
		}
		for _, i := range idx {
			bp.Admitted += p.Routes[i].Limit
		}
		p.Backends = append(p.Backends, bp)
	}

	// Per-instance figures and tiers.
	for i := range p.Routes {
		rp := &p.Routes[i]
		if rp.Planned <= eps {
			rp.NoEstimate, rp.Limit = true, 0
			continue
		}
		rp.PerInstance = ceilInt(rp.Limit / float64(p.Instances))
		if rp.PerInstance == 0 {
			rp.Abandoned = true
			rp.Limit = 0
		} else {
			rp.Burst = max(1, ceilInt(p.BurstRatio*float64(rp.PerInstance)))
		}
		for j := range rp.Tiers {
			t := &rp.Tiers[j]
			if rp.Need > 0 {
				t.Limit = rp.Limit * t.Need / rp.Need
			}
			t.PerInstance = ceilInt(t.Limit / float64(p.Instances))
		}
	}
	computeCapacity(p, f)
	return p, nil
}

// cutToCapacity lowers the limits of the routes idx of backend b so that they add up to
// at most capacity: core routes keep theirs first, non-core routes share what is left in
// proportion to their limits.
func cutToCapacity(p *Plan, b string, capacity float64, idx []int) {
	var core, other float64
	for _, i := range idx {
		if p.Routes[i].Core {
			core += p.Routes[i].Limit
		} else {
			other += p.Routes[i].Limit
		}
	}
	if core+other <= capacity+eps*math.Max(1, capacity) {
		return
	}
	coreF, otherF := 1.0, 0.0
	if core > capacity {
		coreF = capacity / core
	} else if other > 0 {
		otherF = (capacity - core) / other
	}
	for _, i := range idx {
		rp := &p.Routes[i]
		f := otherF
		if rp.Core {
			f = coreF
		}
		if f < 1 {
			rp.Limit *= f
			rp.CutBy = b
		}
	}
}

// Warnings lists the links that cannot support the plan and what the plan does about it.
func (p *Plan) Warnings() []string {
	var w []string
	for _, b := range p.Backends {
		if b.Status == OK {
			continue
		}
		msg := fmt.Sprintf("backend %s cannot support %s: needs %s/s (%s/s x %s), capacity %s/s",
			b.Name, map[Status]string{ShortOfMargin: "the " + num(p.SafetyFactor) + "x margin", ShortOfEstimate: "even the estimate"}[b.Status],
			num(b.Planned), num(b.Need), num(p.SafetyFactor), num(b.Capacity))
		msg += fmt.Sprintf("; scale it out by %s/s", num(b.Planned-b.Capacity))
		if len(b.Abandonable) > 0 {
			msg += "; non-core routes that can be abandoned: " + strings.Join(b.Abandonable, ", ")
		}
		if p.Capped {
			msg += "; limits cut to its capacity (core routes first)"
		} else {
			msg += "; limits NOT cut (-cap=false): the gateway will admit more than it carries"
		}
		w = append(w, msg)
	}
	w = append(w, p.capacityWarnings()...)
	for _, r := range p.Routes {
		if r.Abandoned {
			if r.Core {
				w = append(w, fmt.Sprintf("core route %s has no capacity left on %s: the plan turns it off", r.Name, r.CutBy))
			} else {
				w = append(w, fmt.Sprintf("non-core route %s has no capacity left on %s: the plan turns it off (fallback answers)", r.Name, r.CutBy))
			}
		}
	}
	return w
}

// num prints a rate with at most two decimals and no trailing zeros.
func num(x float64) string {
	s := fmt.Sprintf("%.2f", math.Round(x*100)/100)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		return "0"
	}
	return s
}
