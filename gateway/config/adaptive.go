package config

// Validation of the adaptive overload protection settings (pools.<pool>.adaptive and
// routes.<route>.priority).

// Admission levels: 8 business priorities x 8 tier ranks x 32 user priorities
// (internal/adaptive).
const (
	maxPriority = 7
	numLevels   = 2048
	// DefaultCorePriority and DefaultPriority are the business priorities of routes that
	// do not set one.
	DefaultCorePriority = 6
	DefaultPriority     = 2
)

func (v *validator) validateAdaptive(name string, p *Pool) {
	a := &p.Adaptive
	path := []string{"pools", name, "adaptive"}
	if a.MinLimit < 1 {
		v.errorf(append(path, "min_limit"), "must be at least 1 (got %d)", a.MinLimit)
	}
	if a.MaxLimit == 0 {
		a.MaxLimit = max(p.MaxConns, a.MinLimit)
	}
	if a.MaxLimit < a.MinLimit {
		v.errorf(append(path, "max_limit"), "must be at least min_limit (%d), got %d", a.MinLimit, a.MaxLimit)
	}
	if a.PinnedLevel < -1 || a.PinnedLevel > numLevels {
		v.errorf(append(path, "pinned_level"), "want -1 (automatic) or a level 0-%d, got %d", numLevels, a.PinnedLevel)
	}
	if a.UserWindow <= 0 {
		v.errorf(append(path, "user_window"), "must be > 0")
	}
}

func (v *validator) validatePriority(name string, r *Route) {
	switch {
	case r.Priority == -1 && r.Core:
		r.Priority = DefaultCorePriority
	case r.Priority == -1:
		r.Priority = DefaultPriority
	case r.Priority < 0 || r.Priority > maxPriority:
		v.errorf([]string{"routes", name, "priority"}, "want a business priority 0-%d (higher is shed later), got %d", maxPriority, r.Priority)
	}
}
