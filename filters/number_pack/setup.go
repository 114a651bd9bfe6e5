package numberpack

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
)

// Name is the filter's name under a route's `filters:` and in Consul paths.
const Name = "number_pack"

func init() {
	filters.Register(filters.Definition{Name: Name, New: func() filters.Config { return NewConfig() }})
}

// Defaults of Config.
const (
	DefaultKey         = "query:uin"
	DefaultHeader      = "X-Floodgate-Packs"
	DefaultStatus      = 403
	DefaultReloadEvery = 10 * time.Second
	DefaultTimeout     = 100 * time.Millisecond
	DefaultTTL         = 60 * time.Second
	DefaultNegativeTTL = 10 * time.Second
	DefaultStaleTTL    = 5 * time.Minute
	DefaultCacheSize   = 64 << 20
	DefaultMaxInflight = 64
	// MaxPacks is how many packs one route may name: a number's packs are one bitmask.
	MaxPacks = 64
)

// Config is the number_pack filter's configuration for one route.
type Config struct {
	// Source is where membership comes from: "file" (packs loaded whole from files into
	// bigcache, default) or "service" (read through from the packs backend).
	Source string `yaml:"source" json:"source"`
	// Mode: "require" rejects users in none of the packs (number_pack/not_eligible);
	// "annotate" passes every request on with Header naming the user's packs.
	Mode string `yaml:"mode" json:"mode"`
	// Key is where the user number is: header:NAME, cookie:NAME or query:NAME (default
	// query:uin). A missing or non-numeric key is "not a member".
	Key filters.KeySpec `yaml:"key" json:"key"`
	// Packs maps a pack's name to where it is. With source file, every pack needs a
	// file; with source service, the names are the backend's pack names.
	Packs map[string]Pack `yaml:"packs" json:"packs"`
	// OnUnknown is the policy when membership cannot be known (a pack not loaded yet,
	// the packs backend down or slow): "open" admits, "closed" rejects with
	// number_pack/unknown. Default: closed in require mode, open in annotate mode.
	OnUnknown string `yaml:"on_unknown" json:"on_unknown"`
	// Status of number_pack/not_eligible answers (default 403).
	Status int `yaml:"status" json:"status"`
	// UnknownStatus of number_pack/unknown answers; 0 (default) is the route's fallback.
	UnknownStatus int `yaml:"unknown_status" json:"unknown_status"`
	// Header names the user's packs toward the upstream in annotate mode ("vip,new_users").
	// Any copy the client sent is removed first, in both modes.
	Header string `yaml:"header" json:"header"`
	// ReloadEvery is how often pack files are checked for a new version (size, mtime,
	// then content hash). Default 10s.
	ReloadEvery filters.Duration `yaml:"reload_every" json:"reload_every"`
	// Service is the packs backend: the source with source service, and the fallback
	// for packs not loaded (yet) with source file when Addr is set.
	Service Service `yaml:"service" json:"service"`
}

// Pack is one eligibility pack of a route.
type Pack struct {
	// File is the pack file (one number per line, '#' comments, gzip by magic bytes).
	// A relative path is taken from the gateway's working directory.
	File string `yaml:"file" json:"file"`
	// Keys is what the file lists: "numeric" (default: user numbers, held in a
	// packfile.Set) or "string" (any key of 1-256 printable bytes without spaces - an
	// openid, an account - held in a bigcache; source file only).
	Keys string `yaml:"keys" json:"keys"`
}

// Service configures read-through lookups against the packs backend
// (GET /v1/membership?user=N).
type Service struct {
	// Addr is the backend's host:port (fixed; never taken from a request).
	Addr string `yaml:"addr" json:"addr"`
	// Timeout bounds one lookup, connect included (default 100ms). A request whose
	// user is not cached waits for the lookup at most this long.
	Timeout filters.Duration `yaml:"timeout" json:"timeout"`
	// TTL is how long a member's answer is cached (default 60s).
	TTL filters.Duration `yaml:"ttl" json:"ttl"`
	// NegativeTTL is how long "in none of the packs" is cached (default 10s).
	NegativeTTL filters.Duration `yaml:"negative_ttl" json:"negative_ttl"`
	// StaleTTL is how long past its TTL a cached answer may still be used when the
	// backend fails (default 5m; 0 never uses an expired answer).
	StaleTTL filters.Duration `yaml:"stale_ttl" json:"stale_ttl"`
	// CacheSize bounds the lookup cache's memory (default 64MiB; least recently
	// added answers go first).
	CacheSize filters.Size `yaml:"cache_size" json:"cache_size"`
	// MaxInflight caps concurrent lookups per route (default 64); beyond it a request's
	// membership is unknown rather than queued behind a slow backend.
	MaxInflight int `yaml:"max_inflight" json:"max_inflight"`
}

// NewConfig returns a Config holding the defaults.
func NewConfig() *Config {
	k, _ := filters.ParseKeySpec(DefaultKey)
	return &Config{
		Source:      "file",
		Mode:        "require",
		Key:         k,
		Status:      DefaultStatus,
		Header:      DefaultHeader,
		ReloadEvery: filters.Duration(DefaultReloadEvery),
		Service: Service{
			Timeout:     filters.Duration(DefaultTimeout),
			TTL:         filters.Duration(DefaultTTL),
			NegativeTTL: filters.Duration(DefaultNegativeTTL),
			StaleTTL:    filters.Duration(DefaultStaleTTL),
			CacheSize:   DefaultCacheSize,
			MaxInflight: DefaultMaxInflight,
		},
	}
}

// Defaults implements filters.Defaulter: on_unknown follows from mode (closed in require
// mode, open in annotate mode), so that /config shows the policy in force.
func (c *Config) Defaults() {
	if c.OnUnknown == "" {
		c.OnUnknown = "closed"
		if c.Mode == "annotate" {
			c.OnUnknown = "open"
		}
	}
}

// Validate implements filters.Config.
func (c *Config) Validate() error {
	var errs filters.Errors
	if c.Source != "file" && c.Source != "service" {
		errs.Add(filters.Errorf("source", c.Source, "want file or service"))
	}
	if c.Mode != "require" && c.Mode != "annotate" {
		errs.Add(filters.Errorf("mode", c.Mode, "want require or annotate"))
	}
	switch c.Key.Source {
	case filters.KeyHeader, filters.KeyCookie, filters.KeyQuery:
	default:
		errs.Add(filters.Errorf("key", c.Key.String(), "want where the user number is: header:NAME, cookie:NAME or query:NAME"))
	}
	if c.OnUnknown != "" && c.OnUnknown != "open" && c.OnUnknown != "closed" {
		errs.Add(filters.Errorf("on_unknown", c.OnUnknown, "want open (admit) or closed (reject)"))
	}
	errs.Add(filters.CheckStatus("status", c.Status, ""))
	errs.Add(filters.CheckStatus("unknown_status", c.UnknownStatus, "the route's fallback"))
	if !validHeader(c.Header) {
		errs.Add(filters.Errorf("header", c.Header, "want a header name such as X-Floodgate-Packs (not a hop-by-hop or standard request header)"))
	}
	if c.ReloadEvery < filters.Duration(100*time.Millisecond) {
		errs.Add(filters.Errorf("reload_every", c.ReloadEvery.String(), "want at least 100ms (e.g. 10s)"))
	}
	switch {
	case len(c.Packs) == 0:
		errs.Add(filters.Errorf("packs", nil, "name at least one pack, e.g. packs: {vip: {file: packs/vip.txt}}"))
	case len(c.Packs) > MaxPacks:
		errs.Add(filters.Errorf("packs", len(c.Packs), "at most %d packs per route", MaxPacks))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Packs)) {
		p := c.Packs[name]
		if !validPackName(name) {
			errs.Add(filters.Errorf("packs."+name, name, "a pack name is letters, digits, '_', '-' and '.' (at most 64)"))
		}
		if c.Source == "file" && strings.TrimSpace(p.File) == "" {
			errs.Add(filters.Errorf("packs."+name+".file", nil, "source file needs the pack's file"))
		}
		switch p.Keys {
		case "", "numeric":
		case "string":
			if c.Source != "file" {
				errs.Add(filters.Errorf("packs."+name+".keys", p.Keys, "string packs are loaded from files (source file); the packs backend answers for user numbers only"))
			}
		default:
			errs.Add(filters.Errorf("packs."+name+".keys", p.Keys, "want numeric (user numbers, the default) or string"))
		}
	}
	s := c.Service
	if c.Source == "service" && s.Addr == "" {
		errs.Add(filters.Errorf("service.addr", nil, "source service needs the packs backend's host:port"))
	}
	if s.Addr != "" {
		if err := filters.CheckDialAddr(s.Addr); err != nil {
			errs.Add(filters.Errorf("service.addr", nil, "%v", err))
		}
	}
	if s.Timeout <= 0 {
		errs.Add(filters.Errorf("service.timeout", s.Timeout.String(), "must be > 0 (e.g. 100ms)"))
	}
	if s.TTL <= 0 {
		errs.Add(filters.Errorf("service.ttl", s.TTL.String(), "must be > 0 (e.g. 60s)"))
	}
	if s.NegativeTTL <= 0 {
		errs.Add(filters.Errorf("service.negative_ttl", s.NegativeTTL.String(), "must be > 0 (e.g. 10s)"))
	}
	if s.CacheSize < 1<<20 {
		errs.Add(filters.Errorf("service.cache_size", int64(s.CacheSize), "want at least 1MiB"))
	}
	if s.MaxInflight < 1 {
		errs.Add(filters.Errorf("service.max_inflight", s.MaxInflight, "must be >= 1"))
	}
	return errs.Err()
}

// Build implements filters.Config.
//
// With source file, Build stats the pack files (a missing file is an error, so that a
// typo rejects the update instead of failing every request) and starts the background
// loader. Loaded packs are carried over from prev: packs whose file is the same path
// answer at once from prev's cache, and when every pack is, nothing is re-read. Build
// never changes prev; prev's loader keeps running until the gateway closes prev.
func (c *Config) Build(bc *filters.BuildContext, prev filters.Filter) (filters.Filter, error) {
	names := slices.Sorted(maps.Keys(c.Packs))
	f := &Filter{
		key:      c.Key.WithFormat(filters.KeyNumber), // number packs: read as a number (string packs: below)
		annotate: c.Mode == "annotate",
		header:   []byte(c.Header),
		names:    names,
		full:     fullMask(len(names)),
	}
	f.headerCanon = fasthttp.AppendNormalizedHeaderKeyBytes(nil, f.header)
	f.headerAsIs = !bytes.Equal(f.headerCanon, f.header)
	f.open = c.OnUnknown == "open" || (c.OnUnknown == "" && f.annotate)
	f.notEligible = bc.Reason("not_eligible", c.Status)
	f.badKey = bc.Reason("bad_key", 400)
	f.unknown = bc.Reason("unknown", c.UnknownStatus)
	f.m = newFilterMetrics(bc.Route.Name, names, f.open)
	if f.annotate {
		f.values = newHeaderValues(names)
	}
	old, _ := prev.(*Filter)

	if c.Service.Addr != "" {
		spec := serviceSpec{
			addr:        c.Service.Addr,
			names:       strings.Join(names, ","),
			timeout:     c.Service.Timeout.D(),
			ttl:         c.Service.TTL.D(),
			negativeTTL: c.Service.NegativeTTL.D(),
			staleTTL:    c.Service.StaleTTL.D(),
			cacheMB:     int((int64(c.Service.CacheSize) + 1<<20 - 1) >> 20),
			maxInflight: c.Service.MaxInflight,
		}
		if old != nil && old.svc != nil && old.svc.spec == spec {
			f.svc = old.svc // same backend and packs: keep the cached answers
		} else {
			svc, err := newService(spec, names)
			if err != nil {
				return nil, err
			}
			f.svc = svc
		}
	}

	if c.Source == "file" {
		packs := make([]packSpec, len(names))
		for i, name := range names {
			path, err := filepath.Abs(c.Packs[name].File)
			if err != nil {
				return nil, fmt.Errorf("packs.%s.file: %v", name, err)
			}
			st, err := os.Stat(path)
			if err != nil {
				return nil, fmt.Errorf("packs.%s.file: %v", name, err)
			}
			if !st.Mode().IsRegular() {
				return nil, fmt.Errorf("packs.%s.file: %s is not a regular file", name, path)
			}
			packs[i] = packSpec{name: name, path: path, strings: c.Packs[name].Keys == "string"}
			f.strs = f.strs || packs[i].strings
		}
		if f.strs {
			f.key = c.Key // string packs: the key as configured (text unless "as number")
		}
		var seed *view
		if old != nil && old.files != nil {
			seed = old.files.current()
		}
		f.files = newLoader(packs, c.ReloadEvery.D(), bc.Logger, f.m, seed)
	}
	f.start()
	return f, nil
}

func fullMask(n int) uint64 {
	if n >= 64 {
		return math.MaxUint64
	}
	return 1<<uint(n) - 1
}

func validPackName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// reservedHeaders are request headers the filter must not overwrite, besides the
// hop-by-hop ones (filters.IsHopByHop).
var reservedHeaders = []string{"Host", "Content-Length", "Content-Type", "Cookie", "Authorization",
	"X-Forwarded-For", "X-Floodgate-Verdict"}

// validHeader reports whether s may name the header the filter sets toward the upstream.
func validHeader(s string) bool {
	if !filters.ValidHeaderName(s) || filters.IsHopByHop(s) {
		return false
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(r, s) {
			return false
		}
	}
	return true
}

var _ filters.Config = (*Config)(nil)
