// Package profile describes a drill for `floodgate bench`: the target, the routes and
// their weights, the user population, the promotion tags and the stages of offered load.
//
// A profile is YAML, decoded strictly: an unknown field, a duplicate key or a bad value
// is an error that names the field and its line. Rates in stages are total requests per
// second across all routes (split by route weight); a rate written as "1.6x" (or "160%")
// is relative to the profile's plan rate (`rate:`, overridable with `floodgate bench -rate`).
//
//	name: seed-night
//	rate: 4000                # the plan rate: what "1x" means
//	users: {size: 1000000, distribution: zipf, param: {query: uin}}
//	tags:  {param: {query: adtag}, shares: {wechat: 0.5, qzone: 0.3, banner: 0.2}}
//	routes:
//	  - {name: lottery, path: /lottery, weight: 40}
//	  - {name: grant, method: POST, path: /grant, weight: 10, body: '{"prize":1}'}
//	stages:
//	  - ramp:  {from: 0.1x, to: 1x, duration: 10s}
//	  - hold:  {rate: 1x, duration: 20s}
//	  - spike: {rate: 1.6x, rise: 2s, duration: 15s}
package profile

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/floodgate/floodgate/internal/yamlpath"
	"github.com/floodgate/floodgate/internal/yamlsafe"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits that keep a drill bounded whatever a profile says.
const (
	MaxRate        = 2_000_000 // requests/s in any stage
	MaxDuration    = time.Hour // total of all stages
	MaxRoutes      = 64
	MaxPopulation  = 1 << 40
	DefaultZipfS   = 1.1
	DefaultFirstID = 1
)

// Profile is one drill. The zero values of optional fields mean "the default".
type Profile struct {
	// Name identifies the profile in reports; defaults to the file name.
	Name        string `yaml:"name,omitempty"`
	Description string `yaml:"description,omitempty"`
	// Target is host:port (or http://host:port, https://host:port); empty: the tool's default.
	Target string `yaml:"target,omitempty"`
	// Rate is the plan rate in requests/s: what a relative stage rate ("1x") means.
	Rate float64 `yaml:"rate,omitempty"`
	// Timeout bounds each request; zero: the tool's default.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	Users   *Users        `yaml:"users,omitempty"`
	Tags    *Tags         `yaml:"tags,omitempty"`
	Routes  []Route       `yaml:"routes"`
	Stages  []Stage       `yaml:"stages"`
}

// Param names where a generated value goes in the request: exactly one of the three.
type Param struct {
	Query  string `yaml:"query,omitempty"`
	Header string `yaml:"header,omitempty"`
	Cookie string `yaml:"cookie,omitempty"`
}

// Where is the kind of place a Param names.
type Where int

// The places a generated value can go.
const (
	InQuery Where = iota
	InHeader
	InCookie
)

// Place returns where the value goes and under which name. It assumes a validated Param.
func (p Param) Place() (Where, string) {
	switch {
	case p.Header != "":
		return InHeader, p.Header
	case p.Cookie != "":
		return InCookie, p.Cookie
	default:
		return InQuery, p.Query
	}
}

func (p Param) String() string {
	w, n := p.Place()
	return [...]string{"query", "header", "cookie"}[w] + " " + n
}

// Users is the population requests are drawn from; each request carries one user number.
type Users struct {
	// Size is the number of distinct users N.
	Size int64 `yaml:"size"`
	// First is the first user number (the population is First..First+Size-1). Default 1.
	First int64 `yaml:"first,omitempty"`
	// Distribution is "uniform" (default) or "zipf" (user First is the most frequent).
	Distribution string `yaml:"distribution,omitempty"`
	// ZipfS is the zipf exponent s (> 1), default 1.1.
	ZipfS float64 `yaml:"zipf_s,omitempty"`
	Param Param   `yaml:"param"`
}

// Tags are promotion sources (the `adtag` of a campaign) attached by share; the share not
// given to any tag is sent without one (the gateway's default tier).
type Tags struct {
	Param  Param              `yaml:"param"`
	Shares map[string]float64 `yaml:"shares"`
}

// Share is one tag and its share of requests.
type Share struct {
	Tag   string
	Share float64
}

// Sorted returns the shares in name order (YAML maps have no order; a seeded run must be
// reproducible).
func (t *Tags) Sorted() []Share {
	out := make([]Share, 0, len(t.Shares))
	for k, v := range t.Shares {
		out = append(out, Share{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
	return out
}

// Route is one kind of request in the mix.
type Route struct {
	Name   string `yaml:"name"`
	Method string `yaml:"method,omitempty"` // default GET
	Path   string `yaml:"path"`             // may carry a query string
	// Weight is the route's share of the total rate relative to the other routes. Default 1.
	Weight  float64           `yaml:"weight,omitempty"`
	Body    string            `yaml:"body,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty"`
	// ExtraUserParam also puts the user number here on this route, besides users.param
	// (e.g. a backend that reads user= while the gateway keys on uin=).
	ExtraUserParam *Param `yaml:"extra_user_param,omitempty"`
	// IDParam puts a request id unique to this run and request here (an idempotency key
	// such as a grant id).
	IDParam *Param `yaml:"id_param,omitempty"`
}

// Stage is exactly one of Ramp, Hold or Spike.
type Stage struct {
	Ramp  *Ramp  `yaml:"ramp,omitempty"`
	Hold  *Hold  `yaml:"hold,omitempty"`
	Spike *Spike `yaml:"spike,omitempty"`
}

// Ramp changes the rate linearly from From to To over Duration.
type Ramp struct {
	From     Rate          `yaml:"from"`
	To       Rate          `yaml:"to"`
	Duration time.Duration `yaml:"duration"`
}

// Hold keeps Rate for Duration.
type Hold struct {
	Rate     Rate          `yaml:"rate"`
	Duration time.Duration `yaml:"duration"`
}

// Spike jumps from the rate the previous stage ended at to Rate, linearly within Rise
// (0: at once), and holds it for the rest of Duration (Rise is part of Duration).
type Spike struct {
	Rate     Rate          `yaml:"rate"`
	Rise     time.Duration `yaml:"rise,omitempty"`
	Duration time.Duration `yaml:"duration"`
}

// Duration is the length of the stage.
func (s Stage) Duration() time.Duration {
	switch {
	case s.Ramp != nil:
		return s.Ramp.Duration
	case s.Hold != nil:
		return s.Hold.Duration
	case s.Spike != nil:
		return s.Spike.Duration
	}
	return 0
}

// Rate is a rate in requests/s, absolute or relative to the plan rate.
type Rate struct {
	Value    float64
	Relative bool // Value is a multiple of the plan rate
}

// Abs is an absolute rate.
func Abs(v float64) Rate { return Rate{Value: v} }

// Rel is a rate relative to the plan rate (1 = the plan rate).
func Rel(v float64) Rate { return Rate{Value: v, Relative: true} }

// PerSecond resolves the rate against the plan rate.
func (r Rate) PerSecond(plan float64) float64 {
	if r.Relative {
		return r.Value * plan
	}
	return r.Value
}

func (r Rate) String() string {
	s := strconv.FormatFloat(r.Value, 'f', -1, 64)
	if r.Relative {
		return s + "x"
	}
	return s
}

// ParseRate reads "4000", "1.6x" or "160%".
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	rel, div := false, 1.0
	switch {
	case strings.HasSuffix(t, "x"), strings.HasSuffix(t, "X"):
		rel, t = true, t[:len(t)-1]
	case strings.HasSuffix(t, "%"):
		rel, div, t = true, 100, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return Rate{}, fmt.Errorf("bad rate %q: want requests/s (4000), a multiple of the plan rate (1.6x) or a percentage of it (160%%)", s)
	}
	return Rate{Value: v / div, Relative: rel}, nil
}

// UnmarshalYAML accepts a number or a string for ParseRate.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: rate must be a scalar (4000, 1.6x, 160%%)", n.Line)
	}
	v, err := ParseRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*r = v
	return nil
}

// MarshalYAML writes the rate back in the form ParseRate reads.
func (r Rate) MarshalYAML() (any, error) {
	if r.Relative {
		return r.String(), nil
	}
	return r.Value, nil
}

// TotalDuration is the sum of the stage durations.
func (p *Profile) TotalDuration() time.Duration {
	var d time.Duration
	for _, s := range p.Stages {
		d += s.Duration()
	}
	return d
}

// ScaleTo returns a copy whose stage durations are scaled so that they add up to total
// (a night compressed to a few seconds keeps its shape).
func (p *Profile) ScaleTo(total time.Duration) *Profile {
	q := p.Clone()
	cur := p.TotalDuration()
	if cur <= 0 || total <= 0 {
		return q
	}
	f := float64(total) / float64(cur)
	sc := func(d time.Duration) time.Duration { return time.Duration(math.Round(float64(d) * f)) }
	for i := range q.Stages {
		s := &q.Stages[i]
		switch {
		case s.Ramp != nil:
			s.Ramp.Duration = sc(s.Ramp.Duration)
		case s.Hold != nil:
			s.Hold.Duration = sc(s.Hold.Duration)
		case s.Spike != nil:
			s.Spike.Duration = sc(s.Spike.Duration)
			s.Spike.Rise = sc(s.Spike.Rise)
		}
	}
	return q
}

// Clone returns a deep copy.
func (p *Profile) Clone() *Profile {
	q := *p
	if p.Users != nil {
		u := *p.Users
		q.Users = &u
	}
	if p.Tags != nil {
		t := *p.Tags
		t.Shares = make(map[string]float64, len(p.Tags.Shares))
		for k, v := range p.Tags.Shares {
			t.Shares[k] = v
		}
		q.Tags = &t
	}
	q.Routes = make([]Route, len(p.Routes))
	for i, r := range p.Routes {
		if r.ExtraUserParam != nil {
			x := *r.ExtraUserParam
			r.ExtraUserParam = &x
		}
		if r.IDParam != nil {
			x := *r.IDParam
			r.IDParam = &x
		}
		if r.Headers != nil {
			h := make(map[string]string, len(r.Headers))
			for k, v := range r.Headers {
				h[k] = v
			}
			r.Headers = h
		}
		q.Routes[i] = r
	}
	q.Stages = make([]Stage, len(p.Stages))
	for i, s := range p.Stages {
		if s.Ramp != nil {
			r := *s.Ramp
			s.Ramp = &r
		}
		if s.Hold != nil {
			h := *s.Hold
			s.Hold = &h
		}
		if s.Spike != nil {
			k := *s.Spike
			s.Spike = &k
		}
		q.Stages[i] = s
	}
	return &q
}

// Marshal writes the profile as YAML (what Parse reads back).
func (p *Profile) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// LoadFile reads and validates a profile file.
func LoadFile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(filepath.Base(path), data)
	if err != nil {
		return nil, err
	}
	if p.Name == "" {
		p.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".yml")
	}
	return p, nil
}

// Load returns the built-in profile of that name, or else reads the file at that path.
// A name with a path separator or a .yaml/.yml suffix is always a file.
func Load(nameOrPath string) (*Profile, error) {
	isFile := strings.ContainsAny(nameOrPath, `/\`) || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml")
	if !isFile {
		if p, err := Builtin(nameOrPath); err == nil {
			return p, nil
		}
		if _, err := os.Stat(nameOrPath); err != nil {
			return nil, fmt.Errorf("no built-in profile %q (built-in: %s) and no such file", nameOrPath, strings.Join(BuiltinNames(), ", "))
		}
	}
	return LoadFile(nameOrPath)
}

// Parse decodes and validates a profile. name prefixes error messages (a file name).
func Parse(name string, data []byte) (*Profile, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil { // a node tree: nothing is expanded
		return nil, fmt.Errorf("%s: %v", name, yamlpath.CleanError(err))
	}
	if err := yamlsafe.CheckNode(name, &root); err != nil {
		return nil, err // anchors, aliases, a key given twice: before the decoder below expands them
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty profile", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %v", name, yamlpath.CleanError(err))
	}
	// A second document is almost certainly a mistake (a stray "---").
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s: line %d: more than one YAML document", name, extra.Line)
	}
	if err := p.validate(func(path ...any) int { return yamlpath.Line(&root, path...) }); err != nil {
		return nil, prefixErr(name, err)
	}
	return &p, nil
}

// Validate checks a profile built in code (Parse validates what it reads).
func (p *Profile) Validate() error {
	return p.validate(func(...any) int { return 0 })
}

func prefixErr(name string, err error) error {
	var b strings.Builder
	for i, line := range strings.Split(err.Error(), "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(name + ": " + line)
	}
	return errors.New(b.String())
}

var (
	routeName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	tokenRe   = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

func (pr *Profile) validate(line func(path ...any) int) error {
	e := &yamlpath.Problems{Line: line}
	if pr.Rate < 0 || math.IsNaN(pr.Rate) || pr.Rate > MaxRate {
		e.Add(yamlpath.At("rate"), "plan rate must be between 0 and %d requests/s, got %v", MaxRate, pr.Rate)
	}
	if pr.Timeout < 0 {
		e.Add(yamlpath.At("timeout"), "must not be negative, got %v", pr.Timeout)
	}
	if pr.Target != "" {
		if err := CheckTarget(pr.Target); err != nil {
			e.Add(yamlpath.At("target"), "%v", err)
		}
	}
	if u := pr.Users; u != nil {
		if u.Size <= 0 || u.Size > MaxPopulation {
			e.Add(yamlpath.At("users", "size"), "must be between 1 and %d, got %d", int64(MaxPopulation), u.Size)
		}
		if u.First < 0 {
			e.Add(yamlpath.At("users", "first"), "must not be negative, got %d", u.First)
		}
		switch u.Distribution {
		case "", "uniform", "zipf":
		default:
			e.Add(yamlpath.At("users", "distribution"), "must be uniform or zipf, got %q", u.Distribution)
		}
		if u.ZipfS != 0 && (u.ZipfS <= 1 || math.IsNaN(u.ZipfS) || u.ZipfS > 10) {
			e.Add(yamlpath.At("users", "zipf_s"), "must be greater than 1 (and at most 10), got %v", u.ZipfS)
		}
		if u.ZipfS != 0 && u.Distribution != "zipf" {
			e.Add(yamlpath.At("users", "zipf_s"), "is only used with distribution: zipf")
		}
		checkParam(e, yamlpath.At("users", "param"), u.Param)
	}
	if t := pr.Tags; t != nil {
		checkParam(e, yamlpath.At("tags", "param"), t.Param)
		if len(t.Shares) == 0 {
			e.Add(yamlpath.At("tags", "shares"), "must name at least one tag")
		}
		sum := 0.0
		for _, s := range t.Sorted() {
			if s.Tag == "" {
				e.Add(yamlpath.At("tags", "shares"), "tag name must not be empty")
			}
			if !(s.Share > 0 && s.Share <= 1) {
				e.Add(yamlpath.At("tags", "shares", s.Tag), "share must be in (0, 1], got %v", s.Share)
			}
			sum += s.Share
		}
		if sum > 1+1e-9 {
			e.Add(yamlpath.At("tags", "shares"), "shares add up to %.4g, more than 1", sum)
		}
	}
	if len(pr.Routes) == 0 {
		e.Add(yamlpath.At("routes"), "at least one route is needed")
	}
	if len(pr.Routes) > MaxRoutes {
		e.Add(yamlpath.At("routes"), "at most %d routes, got %d", MaxRoutes, len(pr.Routes))
	}
	seen := map[string]int{}
	for i, r := range pr.Routes {
		if !routeName.MatchString(r.Name) {
			e.Add(yamlpath.At("routes", i, "name"), "must be 1-64 letters, digits, '_', '-' or '.', got %q", r.Name)
		} else if j, dup := seen[r.Name]; dup {
			e.Add(yamlpath.At("routes", i, "name"), "%q is already the name of routes[%d]", r.Name, j)
		} else {
			seen[r.Name] = i
		}
		if r.Method != "" && !tokenRe.MatchString(r.Method) {
			e.Add(yamlpath.At("routes", i, "method"), "not an HTTP method: %q", r.Method)
		}
		if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, " \t\r\n#") {
			e.Add(yamlpath.At("routes", i, "path"), "must start with / and have no spaces or fragment, got %q", r.Path)
		}
		if r.Weight < 0 || math.IsNaN(r.Weight) || math.IsInf(r.Weight, 0) {
			e.Add(yamlpath.At("routes", i, "weight"), "must be positive, got %v", r.Weight)
		}
		if r.ExtraUserParam != nil {
			if pr.Users == nil {
				e.Add(yamlpath.At("routes", i, "extra_user_param"), "needs users: (a population to draw the user from)")
			}
			checkParam(e, yamlpath.At("routes", i, "extra_user_param"), *r.ExtraUserParam)
		}
		if r.IDParam != nil {
			checkParam(e, yamlpath.At("routes", i, "id_param"), *r.IDParam)
		}
		for k, v := range r.Headers {
			if !tokenRe.MatchString(k) {
				e.Add(yamlpath.At("routes", i, "headers", k), "not a header name: %q", k)
			}
			if strings.ContainsAny(v, "\r\n") {
				e.Add(yamlpath.At("routes", i, "headers", k), "header value must not contain CR or LF")
			}
		}
	}
	if len(pr.Stages) == 0 {
		e.Add(yamlpath.At("stages"), "at least one stage is needed")
	}
	needPlan := false
	rate := func(path []any, r Rate) {
		if r.Relative {
			needPlan = true
		}
		if r.Value < 0 {
			e.Add(path, "must not be negative, got %v", r)
		} else if r.PerSecond(pr.Rate) > MaxRate {
			e.Add(path, "%v is more than %d requests/s", r, MaxRate)
		}
	}
	dur := func(path []any, d time.Duration) {
		if d <= 0 {
			e.Add(path, "must be positive, got %v", d)
		}
	}
	for i, s := range pr.Stages {
		n := 0
		if s.Ramp != nil {
			n++
			rate(yamlpath.At("stages", i, "ramp", "from"), s.Ramp.From)
			rate(yamlpath.At("stages", i, "ramp", "to"), s.Ramp.To)
			dur(yamlpath.At("stages", i, "ramp", "duration"), s.Ramp.Duration)
		}
		if s.Hold != nil {
			n++
			rate(yamlpath.At("stages", i, "hold", "rate"), s.Hold.Rate)
			dur(yamlpath.At("stages", i, "hold", "duration"), s.Hold.Duration)
		}
		if s.Spike != nil {
			n++
			rate(yamlpath.At("stages", i, "spike", "rate"), s.Spike.Rate)
			dur(yamlpath.At("stages", i, "spike", "duration"), s.Spike.Duration)
			if s.Spike.Rise < 0 || (s.Spike.Duration > 0 && s.Spike.Rise >= s.Spike.Duration) {
				e.Add(yamlpath.At("stages", i, "spike", "rise"), "must be at least 0 and shorter than the duration (%v), got %v", s.Spike.Duration, s.Spike.Rise)
			}
		}
		if n != 1 {
			e.Add(yamlpath.At("stages", i), "a stage is exactly one of ramp, hold or spike (got %d)", n)
		}
	}
	if needPlan && pr.Rate <= 0 {
		e.Add(yamlpath.At("rate"), "relative stage rates (1x, 160%%) need a plan rate: set rate: or -rate")
	}
	if d := pr.TotalDuration(); d > MaxDuration {
		e.Add(yamlpath.At("stages"), "stages last %v in all, more than %v", d, MaxDuration)
	}
	if err := e.Err(); err != nil {
		return err
	}
	return nil
}

func checkParam(e *yamlpath.Problems, path []any, pa Param) {
	n := 0
	for _, s := range []string{pa.Query, pa.Header, pa.Cookie} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		e.Add(path, "name exactly one of query, header or cookie")
		return
	}
	w, name := pa.Place()
	if (w == InHeader && !tokenRe.MatchString(name)) || (w != InHeader && strings.ContainsAny(name, "=&;, \t\r\n?#")) {
		e.Add(path, "bad parameter name %q", name)
	}
}

// CheckTarget accepts host:port, http://host:port and https://host:port.
func CheckTarget(t string) error {
	_, _, err := SplitTarget(t)
	return err
}

// SplitTarget returns the host:port of a target and whether it uses TLS.
func SplitTarget(t string) (addr string, tls bool, err error) {
	s := t
	switch {
	case strings.HasPrefix(s, "http://"):
		s = s[len("http://"):]
	case strings.HasPrefix(s, "https://"):
		s, tls = s[len("https://"):], true
	case strings.Contains(s, "://"):
		return "", false, fmt.Errorf("target %q: only http:// and https:// are supported", t)
	}
	s = strings.TrimSuffix(s, "/")
	if s == "" || strings.ContainsAny(s, "/?# ") {
		return "", false, fmt.Errorf("target %q: want host:port (no path)", t)
	}
	if !strings.Contains(s, ":") || strings.HasSuffix(s, "]") {
		if tls {
			s += ":443"
		} else {
			s += ":80"
		}
	}
	return s, tls, nil
}

// Adhoc is a profile that holds one total rate for d, split evenly over the routes
// (weights left at 1): what `floodgate bench -route NAME=PATH -rate N -duration D` runs,
// and a short way to write a drill in a test.
func Adhoc(target string, rate float64, d time.Duration, routes ...Route) *Profile {
	return &Profile{Name: "adhoc", Description: "constant rate over the given routes", Target: target, Rate: rate,
		Routes: routes, Stages: []Stage{{Hold: &Hold{Rate: Rel(1), Duration: d}}}}
}
