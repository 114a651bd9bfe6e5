package sample

import (
	"fmt"
	"math"
	"time"

	"github.com/floodgate/floodgate/filters"
)

// Name is the filter's name under a route's `filters:` and in Consul paths.
const Name = "sample"

func init() {
	filters.Register(filters.Definition{Name: Name, New: func() filters.Config { return NewConfig() }})
}

// Defaults of Config.
const (
	DefaultRatio  = 1.0
	DefaultWindow = 60 * time.Second
)

// DefaultKey is the key a sample filter draws on unless configured: the campaign's user
// number.
const DefaultKey = "query:uin"

// Config is the sample filter's configuration for one (non-core) route.
type Config struct {
	// Ratio is the share of users admitted, 0..1 (0 drops everyone, 1 keeps everyone).
	// Default 1, so that a route can carry the filter and have it turned down live
	// (routes/<route>/sample/ratio) when it is needed.
	Ratio float64 `yaml:"ratio" json:"ratio"`
	// Key names the user: header:NAME, cookie:NAME, query:NAME or ip. A request without
	// the key is drawn on its own (per request, so retrying may get it through); "none"
	// draws every request on its own (fine for fire-and-forget reporting). Default
	// query:uin.
	Key filters.KeySpec `yaml:"key" json:"key"`
	// Window is how long a user's draw holds; every window, all users draw again.
	// Default 60s.
	Window filters.Duration `yaml:"window" json:"window"`
}

// NewConfig returns a Config holding the defaults.
func NewConfig() *Config {
	k, _ := filters.ParseKeySpec(DefaultKey)
	return &Config{Ratio: DefaultRatio, Key: k, Window: filters.Duration(DefaultWindow)}
}

// Validate implements filters.Config.
func (c *Config) Validate() error {
	var errs filters.Errors
	if math.IsNaN(c.Ratio) || c.Ratio < 0 || c.Ratio > 1 {
		errs.Add(filters.Errorf("ratio", c.Ratio, "want a share between 0 and 1 (e.g. 0.3 keeps 30%% of users)"))
	}
	if c.Window <= 0 {
		errs.Add(filters.Errorf("window", c.Window.String(), "must be > 0 (e.g. 60s)"))
	}
	return errs.Err()
}

// Build implements filters.Config. It refuses a core route: sampling sheds a share of the
// route's users, and core routes (lottery, grant) are the ones the campaign must never
// shed that way. Refusing (rather than logging) rejects the whole configuration update,
// so the previous configuration keeps serving and the operator sees why.
//
// The sampler keeps no state worth carrying over, so prev is not used: a user's draw
// depends only on the key, the window and the ratio, and is the same on every instance.
func (c *Config) Build(bc *filters.BuildContext, _ filters.Filter) (filters.Filter, error) {
	if bc.Route.Core {
		return nil, fmt.Errorf("route %q is core: sample would drop a share of its users; remove sample from this route or mark the route core: false", bc.Route.Name)
	}
	s := &Sampler{
		key:     c.Key,
		window:  int64(c.Window.D()),
		dropped: bc.Reason("dropped", 0),
		badKey:  bc.Reason("bad_key", 400),
	}
	switch {
	case c.Ratio >= 1:
		s.all = true
	case c.Ratio <= 0:
		s.none = true
	default:
		s.threshold = uint64(c.Ratio * (1 << 64))
	}
	s.jitter = s.window / 8
	if s.jitter > int64(maxJitter) {
		s.jitter = int64(maxJitter)
	}
	route := bc.Route.Name
	s.keptUser = decisions.WithLabelValues(route, "kept", "user")
	s.keptNone = decisions.WithLabelValues(route, "kept", "none")
	s.droppedUser = decisions.WithLabelValues(route, "dropped", "user")
	s.droppedNone = decisions.WithLabelValues(route, "dropped", "none")
	return s, nil
}

var _ filters.Config = (*Config)(nil)

// Limits implements filters.Limited: the share of users kept.
func (c *Config) Limits() []filters.Limit {
	return []filters.Limit{{Name: "ratio", Value: c.Ratio, Unit: "ratio", Max: 1}}
}
