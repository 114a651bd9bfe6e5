package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/decode"
	"github.com/floodgate/floodgate/internal/yamlpath"
	"github.com/floodgate/floodgate/internal/yamlsafe"
)

var reflectTypeOfRoute = reflect.TypeOf(Route{})

// Load composes the file document with override layers (applied in order, later wins:
// pass per-key overrides before the active plan), decodes strictly and validates the
// whole. It returns the Config, or Errors listing every problem; it never returns a
// partly valid Config.
func Load(doc *Document, layers ...[]Override) (*Config, error) {
	t := newTree(doc)
	var errs Errors
	for _, layer := range layers {
		for _, o := range layer {
			if e := t.set(o); e != nil {
				errs = append(errs, e)
			}
		}
	}
	cfg := defaultConfig()
	d := &decoder{doc: t}
	d.decode(t.root, reflect.ValueOf(cfg).Elem(), nil)
	errs = append(errs, d.errs...)
	// Validate even when decoding found problems, so that one run reports everything;
	// leave out what follows from a value that did not decode.
	v := &validator{tree: t, cfg: cfg}
	v.validate()
	for _, e := range v.errs {
		if !underAny(e.Path, d.errs) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	cfg.Sources = t.leaves()
	return cfg, nil
}

func underAny(path string, errs Errors) bool {
	for _, e := range errs {
		if path == e.Path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(e.Path, path+".") {
			return true
		}
	}
	return false
}

type validator struct {
	tree *tree
	cfg  *Config
	errs Errors
}

// at finds the node at path (yaml keys) for error locations; nil if not set.
func (v *validator) at(path ...string) *yaml.Node {
	n := v.tree.root
	for _, s := range path {
		if n == nil {
			return nil
		}
		n = yamlpath.Child(n, s)
	}
	return n
}

func (v *validator) errorf(path []string, format string, args ...any) {
	e := &Error{Path: strings.Join(path, "."), Msg: fmt.Sprintf(format, args...)}
	// point at the deepest node that exists
	for i := len(path); i >= 0; i-- {
		if n := v.at(path[:i]...); n != nil {
			e.Where, e.line = v.tree.where(n), n.Line
			break
		}
	}
	v.errs = append(v.errs, e)
}

func (v *validator) validate() {
	v.validateGlobal()
	v.validateRoutes()
}

// validateGlobal validates everything but the routes (which depend on it: pools, the
// server's body limit).
func (v *validator) validateGlobal() {
	c := v.cfg
	s := &c.Server
	if err := filters.CheckHostPort(s.Listen); err != nil {
		v.errorf([]string{"server", "listen"}, "%v", err)
	}
	if s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 {
		v.errorf([]string{"server"}, "read_timeout, write_timeout and idle_timeout must be > 0")
	}
	if s.ReadBufferSize < 1024 || s.ReadBufferSize > 1<<20 {
		v.errorf([]string{"server", "read_buffer_size"}, "must be between 1KiB and 1MiB (got %d)", s.ReadBufferSize)
	}
	if s.MaxRequestBody <= 0 {
		v.errorf([]string{"server", "max_request_body"}, "must be > 0 (got %d)", s.MaxRequestBody)
	}
	if s.Concurrency <= 0 {
		v.errorf([]string{"server", "concurrency"}, "must be > 0 (got %d)", s.Concurrency)
	}
	if s.MaxConnsPerIP < 0 || s.MaxConnsPerIP > s.Concurrency {
		v.errorf([]string{"server", "max_conns_per_ip"}, "want 0 (no cap) to concurrency (%d), got %d", s.Concurrency, s.MaxConnsPerIP)
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		v.errorf([]string{"log", "level"}, "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "console", "json":
	default:
		v.errorf([]string{"log", "format"}, "%q: want console or json", c.Log.Format)
	}
	if s.DrainDelay < 0 || s.DrainDelay.D() > 10*time.Minute {
		v.errorf([]string{"server", "drain_delay"}, "must be between 0 and 10m (got %s)", s.DrainDelay.D())
	}
	for i, p := range s.TrustedProxies {
		if _, err := filters.ParsePrefix(p); err != nil {
			v.errorf([]string{"server", "trusted_proxies", strconv.Itoa(i)}, "%v", err)
		}
	}
	v.validateAdmin()
	if al := c.AccessLog; al.Enabled && strings.TrimSpace(al.Path) == "" {
		v.errorf([]string{"access_log", "path"}, "a file path or stderr is needed when the access log is enabled")
	}
	if b := c.AccessLog.Buffer; b < 1024 || b > 1<<24 {
		v.errorf([]string{"access_log", "buffer"}, "must be between 1024 and 16777216 records (got %d)", b)
	}

	v.validateQueue()
	if len(c.Pools) == 0 {
		v.errorf([]string{"pools"}, "at least one pool is needed")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		v.validatePool(name, c.Pools[name])
	}
}

// validateRoutes validates every route and what routes must not share (host + path).
func (v *validator) validateRoutes() {
	c := v.cfg
	if len(c.Routes) == 0 {
		v.errorf([]string{"routes"}, "at least one route is needed")
	}
	seen := make(map[string]string, len(c.Routes))
	for _, name := range slices.Sorted(maps.Keys(c.Routes)) {
		r := c.Routes[name]
		v.validateRoute(name, r)
		v.uniquePath(seen, name, r)
	}
}

// uniquePath reports a route that serves the host and path of a route seen before.
func (v *validator) uniquePath(seen map[string]string, name string, r *Route) {
	v.uniqueKey(seen, name, pathKey(r), r)
}

// pathKey is what two routes may not share: the host (any case) and the path (without
// a trailing slash).
func pathKey(r *Route) string { return strings.ToLower(r.Host) + " " + strings.TrimSuffix(r.Path, "/") }

// uniqueKey is uniquePath with the route's pathKey.
func (v *validator) uniqueKey(seen map[string]string, name, key string, r *Route) {
	if other, dup := seen[key]; dup && r.Path != "" {
		v.errorf([]string{"routes", name, "path"}, "route %q already serves host %q path %q", other, r.Host, r.Path)
	}
	seen[key] = name
}

func (v *validator) validateAdmin() {
	a := &v.cfg.Admin
	if err := filters.CheckHostPort(a.Listen); err != nil {
		v.errorf([]string{"admin", "listen"}, "%v", err)
		return
	}
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			v.errorf([]string{"admin", "token_file"}, "cannot read: %v", err)
		} else {
			a.Token = strings.TrimSpace(string(b))
		}
	}
	host, _, _ := net.SplitHostPort(a.Listen)
	if !IsLoopback(host) && a.Token == "" {
		v.errorf([]string{"admin", "listen"}, "%q is not a loopback address: set admin.token or admin.token_file, or bind to 127.0.0.1", a.Listen)
	}
}

func (v *validator) validatePool(name string, p *Pool) {
	path := []string{"pools", name}
	if len(p.Addrs) == 0 && v.tree.created["pools."+name] {
		v.errorf(path, "no pool named %q (pools: %s): a key or plan entry can change a pool of the configuration file, not create one", name, strings.Join(v.defined("pools"), ", "))
		return
	}
	if len(p.Addrs) == 0 {
		v.errorf(append(path, "addrs"), "at least one upstream address (host:port) is needed")
	}
	for i, a := range p.Addrs {
		if err := filters.CheckHostPort(a); err != nil {
			v.errorf(append(path, "addrs", strconv.Itoa(i)), "%v", err)
		}
	}
	if p.MaxConns < len(p.Addrs) || p.MaxConns <= 0 {
		v.errorf(append(path, "max_conns"), "must be at least the number of addrs (%d), got %d", len(p.Addrs), p.MaxConns)
	}
	for _, f := range []struct {
		name string
		d    filters.Duration
	}{{"connect_timeout", p.ConnectTimeout}, {"read_timeout", p.ReadTimeout}, {"write_timeout", p.WriteTimeout}, {"idle_timeout", p.IdleTimeout}} {
		if f.d <= 0 {
			v.errorf(append(path, f.name), "must be > 0")
		}
	}
	if p.MaxResponseBody <= 0 {
		v.errorf(append(path, "max_response_body"), "must be > 0 (got %d)", p.MaxResponseBody)
	}
	if p.Eject.Failures < 0 {
		v.errorf(append(path, "eject", "failures"), "must be >= 0 (0 never ejects), got %d", p.Eject.Failures)
	}
	if p.Eject.Failures > 0 && p.Eject.Duration <= 0 {
		v.errorf(append(path, "eject", "duration"), "must be > 0 when eject.failures is set")
	}
	if strings.ContainsAny(p.HostHeader, "\r\n /") {
		v.errorf(append(path, "host_header"), "not a valid host: %q", p.HostHeader)
	}
	v.validateHealthCheck(name, p)
	v.validateAdaptive(name, p)
	if p.Pipeline.Enabled && (p.Pipeline.Conns < 1 || p.MaxConns > 0 && len(p.Addrs) > 0 && p.Pipeline.Conns > p.MaxConns/max(1, len(p.Addrs))) {
		v.errorf(append(path, "pipeline", "conns"), "must be between 1 and the server's share of max_conns (%d), got %d", max(1, p.MaxConns/max(1, len(p.Addrs))), p.Pipeline.Conns)
	}
	if p.Pipeline.Enabled && p.Pipeline.Stall <= 0 {
		v.errorf(append(path, "pipeline", "stall"), "must be > 0")
	}
}

func (v *validator) validateRoute(name string, r *Route) {
	path := []string{"routes", name}
	if !filters.ValidName(name) {
		v.errorf(path, "route names use letters, digits, '-' and '_' (they appear in Consul keys and metrics): %q", name)
	}
	switch {
	case r.Path == "" && v.tree.created["routes."+name]:
		v.errorf(path, "no route named %q (routes: %s): a key or plan entry can change a route of the configuration file, not create one", name, strings.Join(v.defined("routes"), ", "))
		return
	case r.Path == "":
		v.errorf(append(path, "path"), "a path prefix is needed, e.g. /lottery")
	default:
		if err := filters.CheckPathPrefix(r.Path); err != nil {
			v.errorf(append(path, "path"), "%v", err)
		}
	}
	if strings.ContainsAny(r.Host, ":/ ") {
		v.errorf(append(path, "host"), "a host name without port or scheme, e.g. act.example.com or *.example.com: %q", r.Host)
	}
	r.Host = strings.ToLower(r.Host)
	if r.Pool == "" {
		v.errorf(append(path, "pool"), "the name of a pool is needed (one of: %s)", strings.Join(slices.Sorted(maps.Keys(v.cfg.Pools)), ", "))
	} else if _, ok := v.cfg.Pools[r.Pool]; !ok {
		v.errorf(append(path, "pool"), "no pool named %q (pools: %s)", r.Pool, strings.Join(slices.Sorted(maps.Keys(v.cfg.Pools)), ", "))
	}
	if r.Timeout == 0 {
		if r.Core {
			r.Timeout = filters.Duration(3 * time.Second)
		} else {
			r.Timeout = filters.Duration(500 * time.Millisecond)
		}
	}
	if r.MaxRequestBody == 0 {
		r.MaxRequestBody = v.cfg.Server.MaxRequestBody
	} else if r.MaxRequestBody > v.cfg.Server.MaxRequestBody {
		v.errorf(append(path, "max_request_body"), "%d is above server.max_request_body (%d)", r.MaxRequestBody, v.cfg.Server.MaxRequestBody)
	}
	if r.Upstream5xx != "pass" && r.Upstream5xx != "fallback" {
		v.errorf(append(path, "upstream_5xx"), "want pass or fallback, got %q", r.Upstream5xx)
	}
	fb := &r.Fallback
	if !filters.ValidStatus(fb.Status, 200) {
		v.errorf(append(path, "fallback", "status"), "want an HTTP status 200-599, got %d", fb.Status)
	}
	// Every fallback answer writes its headers: thousands of them made each answer take
	// seconds. The bounds are far above what a fallback needs.
	size := 0
	for k, val := range fb.Headers {
		size += len(k) + len(val) + 4
	}
	if len(fb.Headers) > MaxFallbackHeaders || size > MaxFallbackHeaderBytes {
		v.errorf(append(path, "fallback", "headers"), "%d headers of %d bytes: at most %d headers and %d bytes (each fallback answer writes them all)", len(fb.Headers), size, MaxFallbackHeaders, MaxFallbackHeaderBytes)
	}
	for _, k := range slices.Sorted(maps.Keys(fb.Headers)) {
		val := fb.Headers[k]
		if !filters.ValidHeaderName(k) {
			v.errorf(append(path, "fallback", "headers", k), "not a valid header name: %q", k)
		} else if filters.IsHopByHop(k) || strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "X-Floodgate-Verdict") {
			v.errorf(append(path, "fallback", "headers", k), "%s is set by the gateway itself", k)
		}
		if strings.ContainsAny(val, "\r\n") {
			v.errorf(append(path, "fallback", "headers", k), "header values must not contain line breaks")
		}
	}
	if strings.ContainsAny(fb.ContentType, "\r\n") {
		v.errorf(append(path, "fallback", "content_type"), "must not contain line breaks")
	}
	v.validateVerdictFallbacks(path, r)
	if r.Async != nil {
		v.validateAsync(name, r)
	}
	v.validatePriority(name, r)
	v.validateFilters(name, r)
}

func (v *validator) validateQueue() {
	q := &v.cfg.Queue
	path := []string{"queue"}
	if strings.TrimSpace(q.URL) == "" {
		v.errorf(append(path, "url"), "the NATS server URLs are needed, e.g. nats://127.0.0.1:4222")
	}
	for _, u := range strings.Split(q.URL, ",") {
		if err := CheckNATSURL(strings.TrimSpace(u)); err != nil && strings.TrimSpace(q.URL) != "" {
			v.errorf(append(path, "url"), "%v", err)
		}
	}
	if !validStreamName(q.Stream) {
		v.errorf(append(path, "stream"), "a stream name uses letters, digits, '-' and '_': %q", q.Stream)
	}
	if q.Replicas != 1 && q.Replicas != 3 && q.Replicas != 5 {
		v.errorf(append(path, "replicas"), "want 1, 3 or 5, got %d", q.Replicas)
	}
	if q.MaxAge < filters.Duration(time.Minute) {
		v.errorf(append(path, "max_age"), "must be at least 1m (the queue is the log reconciliation reads), got %s", q.MaxAge)
	}
	if q.MaxBytes < 1<<20 {
		v.errorf(append(path, "max_bytes"), "must be at least 1MiB, got %d", q.MaxBytes)
	}
	if q.PublishTimeout <= 0 || q.PublishTimeout > filters.Duration(time.Minute) {
		v.errorf(append(path, "publish_timeout"), "must be > 0 and at most 1m, got %s", q.PublishTimeout)
	}
	if q.MaxBatch < 1 || q.MaxBatch > 1000 {
		v.errorf(append(path, "max_batch"), "must be between 1 and 1000 (JetStream's atomic batch limit), got %d", q.MaxBatch)
	}
	if q.Journal.MaxBytes < 1<<20 {
		v.errorf(append(path, "journal", "max_bytes"), "must be at least 1MiB, got %d", q.Journal.MaxBytes)
	}
	if q.Journal.SegmentBytes < 1<<20 || q.Journal.SegmentBytes > 1<<30 {
		v.errorf(append(path, "journal", "segment_bytes"), "must be between 1MiB and 1GiB, got %d", q.Journal.SegmentBytes)
	}
}

// CheckNATSURL checks one NATS server URL (nats://host:port).
func CheckNATSURL(u string) error {
	rest, ok := strings.CutPrefix(u, "nats://")
	if !ok {
		return fmt.Errorf("want nats://host:port, got %q", u)
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return filters.CheckHostPort(rest)
}

// validStreamName: a JetStream stream name is a filters.ValidName of at most 64 bytes.
func validStreamName(s string) bool { return len(s) <= 64 && filters.ValidName(s) }

// ParseAsyncKey parses async.idempotency_key: header:NAME, query:NAME or form:NAME.
func ParseAsyncKey(s string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || name == "" || (kind != "header" && kind != "query" && kind != "form") {
		return "", "", fmt.Errorf("want header:NAME, query:NAME or form:NAME, got %q", s)
	}
	if kind == "header" && !filters.ValidHeaderName(name) {
		return "", "", fmt.Errorf("not a valid header name: %q", name)
	}
	return kind, name, nil
}

func (v *validator) validateAsync(name string, r *Route) {
	a := r.Async
	path := []string{"routes", name, "async"}
	if _, _, err := ParseAsyncKey(a.IdempotencyKey); err != nil {
		v.errorf(append(path, "idempotency_key"), "%v", err)
	}
	for i, f := range a.Required {
		if strings.TrimSpace(f) == "" || strings.ContainsAny(f, "&=#? ") {
			v.errorf(append(path, "required", strconv.Itoa(i)), "not a form field name: %q", f)
		}
	}
	for i, h := range a.KeepHeaders {
		switch {
		case !filters.ValidHeaderName(h):
			v.errorf(append(path, "keep_headers", strconv.Itoa(i)), "not a valid header name: %q", h)
		case filters.IsHopByHop(h) || strings.EqualFold(h, "Content-Length") || strings.EqualFold(h, "Host"):
			v.errorf(append(path, "keep_headers", strconv.Itoa(i)), "%s is not kept (framing and hop-by-hop headers are the gateway's)", h)
		case strings.EqualFold(h, "Content-Type"):
			v.errorf(append(path, "keep_headers", strconv.Itoa(i)), "Content-Type is always kept; leave it out")
		}
	}
	if len(a.KeepHeaders) > 32 {
		v.errorf(append(path, "keep_headers"), "at most 32 headers, got %d", len(a.KeepHeaders))
	}
	d := &a.Deliver
	dp := append(path, "deliver")
	if d.Path != "" && (!strings.HasPrefix(d.Path, "/") || strings.ContainsAny(d.Path, "?# \t")) {
		v.errorf(append(dp, "path"), "a plain path starting with '/' (no query), got %q", d.Path)
	}
	if !(d.Rate > 0) || d.Rate > 1e6 {
		v.errorf(append(dp, "rate"), "grants per second across all deliverers: want > 0 and <= 1000000, got %v", d.Rate)
	}
	if d.Concurrency < 1 || d.Concurrency > 4096 {
		v.errorf(append(dp, "concurrency"), "want 1-4096, got %d", d.Concurrency)
	}
	if d.Timeout == 0 {
		d.Timeout = r.Timeout
	}
	if d.MaxAttempts < 1 || d.MaxAttempts > 1000 {
		v.errorf(append(dp, "max_attempts"), "want 1-1000, got %d", d.MaxAttempts)
	}
	if len(d.Backoff) == 0 {
		v.errorf(append(dp, "backoff"), "at least one wait is needed, e.g. [1s, 5s, 30s]")
	}
	for i, b := range d.Backoff {
		if b <= 0 || b > filters.Duration(24*time.Hour) {
			v.errorf(append(dp, "backoff", strconv.Itoa(i)), "want > 0 and <= 24h, got %s", b)
		}
	}
	if d.AckWait <= d.Timeout {
		v.errorf(append(dp, "ack_wait"), "must be above the delivery timeout (%s), got %s: the queue would hand a grant to a second deliverer while the first still waits", d.Timeout, d.AckWait)
	}
	if !filters.ValidHeaderName(d.IDHeader) {
		v.errorf(append(dp, "id_header"), "not a valid header name: %q", d.IDHeader)
	}
}

func (v *validator) validateFilters(route string, r *Route) {
	names := make([]string, 0, len(r.RawFilters))
	for n := range r.RawFilters {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return filters.Position(names[i]) < filters.Position(names[j]) })
	r.Chain = nil
	for _, fname := range names {
		node := r.RawFilters[fname]
		path := []string{"routes", route, "filters", fname}
		def, ok := filters.Lookup(fname)
		if !ok {
			v.errorf(path, "unknown filter %q (known: %s)", fname, strings.Join(filters.Names(), ", "))
			continue
		}
		spec := &FilterSpec{Name: fname, Enabled: true}
		body := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: node.Line, Column: node.Column}
		switch {
		case node.Kind == yaml.ScalarNode && node.Tag == "!!null":
		case node.Kind != yaml.MappingNode:
			v.errorf(path, "want a mapping of parameters, got a %s", yamlsafe.KindName(node))
			continue
		default:
			common := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for i := 0; i+1 < len(node.Content); i += 2 {
				if commonFilterFields[node.Content[i].Value] {
					common.Content = append(common.Content, node.Content[i], node.Content[i+1])
				} else {
					body.Content = append(body.Content, node.Content[i], node.Content[i+1])
				}
			}
			var cf struct {
				Enabled *bool `yaml:"enabled"`
				Shadow  bool  `yaml:"shadow"`
			}
			dc := &decoder{doc: v.tree}
			dc.decode(common, reflect.ValueOf(&cf).Elem(), path)
			v.errs = append(v.errs, dc.errs...)
			if cf.Enabled != nil {
				spec.Enabled = *cf.Enabled
			}
			spec.Shadow = cf.Shadow
		}
		// The filter's parameters: decoded, validated and defaulted by filters/decode,
		// the same code the filters' own tests go through.
		cfg, problems := decode.Config(def, body, path)
		if len(problems) > 0 {
			for _, p := range problems {
				if p.Node != nil {
					v.errs = append(v.errs, &Error{Where: v.tree.where(p.Node), Path: strings.Join(p.Path, "."), Msg: p.Msg, line: p.Node.Line})
				} else {
					v.errorf(p.Path, "%s", p.Msg)
				}
			}
			continue
		}
		spec.Config = cfg
		r.Chain = append(r.Chain, spec)
	}
}

// IsLoopback reports whether host (a name or an address) is this machine's loopback.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// defined lists the names under section ("routes", "pools") that the configuration file
// defines (not those only an override named).
func (v *validator) defined(section string) []string {
	var names []string
	switch section {
	case "routes":
		for n := range v.cfg.Routes {
			if !v.tree.created["routes."+n] {
				names = append(names, n)
			}
		}
	case "pools":
		for n := range v.cfg.Pools {
			if !v.tree.created["pools."+n] {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// validateVerdictFallbacks checks routes.<name>.fallback.verdicts: each filter part names
// a filter of the route or a part of the gateway (a typo would never match), each reason
// is a reason name or "*".
func (v *validator) validateVerdictFallbacks(path []string, r *Route) {
	vs := r.Fallback.Verdicts
	n := 0
	for _, f := range slices.Sorted(maps.Keys(vs)) {
		fp := append(slices.Clone(path), "fallback", "verdicts", f)
		if _, ok := r.RawFilters[f]; !ok && !slices.Contains(GatewayVerdicts, f) {
			v.errorf(fp, "no filter %q on this route: want one of its filters (%s) or of the gateway's own verdicts (%s)",
				f, strings.Join(slices.Sorted(maps.Keys(r.RawFilters)), ", "), strings.Join(GatewayVerdicts, ", "))
			continue
		}
		for _, reason := range slices.Sorted(maps.Keys(vs[f])) {
			n++
			rp := append(slices.Clone(fp), reason)
			if reason != "*" && !filters.ValidName(reason) {
				v.errorf(rp, "want a reason name (the part after / in the verdict, e.g. not_eligible) or *: %q", reason)
			}
			if st := vs[f][reason].Status; st != 0 && !filters.ValidStatus(st, 200) {
				v.errorf(append(rp, "status"), "want an HTTP status 200-599 (or 0: the verdict's own), got %d", st)
			}
		}
	}
	if n > MaxVerdictFallbacks {
		v.errorf(append(slices.Clone(path), "fallback", "verdicts"), "%d answers: at most %d", n, MaxVerdictFallbacks)
	}
}

// MaxVerdictFallbacks bounds a route's fallback.verdicts entries.
const MaxVerdictFallbacks = 64

// Bounds of a route's fallback headers.
const (
	MaxFallbackHeaders     = 32
	MaxFallbackHeaderBytes = 8 << 10
)

// validateHealthCheck checks pools.<name>.health_check (also when disabled, so that
// enabling it later by one switch cannot fail on a value set long ago).
func (v *validator) validateHealthCheck(name string, p *Pool) {
	h := &p.HealthCheck
	path := []string{"pools", name, "health_check"}
	if h.Path != "" && (!strings.HasPrefix(h.Path, "/") || len(h.Path) > maxHealthPath || strings.IndexFunc(h.Path, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) >= 0) {
		v.errorf(append(path, "path"), "want an absolute path (with an optional ?query, at most %d bytes, no spaces, control characters or #), or empty for a TCP connect probe: %q", maxHealthPath, h.Path)
	}
	if h.Interval.D() < MinHealthInterval || h.Interval.D() > maxHealthInterval {
		v.errorf(append(path, "interval"), "must be between %v and %v (got %v)", MinHealthInterval, maxHealthInterval, h.Interval)
	}
	if h.Timeout == 0 {
		h.Timeout = filters.Duration(min(h.Interval.D(), defaultHealthTimeout))
	}
	if h.Timeout < 0 || h.Timeout > h.Interval {
		v.errorf(append(path, "timeout"), "must be at most the interval (%v), got %v (0: the interval, at most %v)", h.Interval, h.Timeout, defaultHealthTimeout)
	}
	if h.HealthyThreshold < 1 || h.HealthyThreshold > maxHealthyThreshold {
		v.errorf(append(path, "healthy_threshold"), "must be between 1 and %d (got %d)", maxHealthyThreshold, h.HealthyThreshold)
	}
}
