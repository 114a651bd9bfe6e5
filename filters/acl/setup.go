package acl

import (
	"strings"

	"github.com/floodgate/floodgate/filters"
)

func init() {
	filters.Register(filters.Definition{Name: "acl", New: func() filters.Config { return &Config{Status: 403} }})
}

// Config is the acl filter's configuration. Every list is optional; an empty acl admits
// everything.
type Config struct {
	// AllowMethods, if set, admits only these methods (others: acl/method_not_allowed, 405).
	AllowMethods []string `yaml:"allow_methods" json:"allow_methods"`
	// AllowNetworks, if set, admits only clients in these networks.
	AllowNetworks []string `yaml:"allow_networks" json:"allow_networks"`
	// DenyNetworks rejects clients in these networks (checked after AllowNetworks).
	DenyNetworks []string `yaml:"deny_networks" json:"deny_networks"`
	// DenyPaths rejects these path prefixes (segment boundary, like route paths).
	DenyPaths []string `yaml:"deny_paths" json:"deny_paths"`
	// RequireHeaders rejects requests missing any of these headers (or with them empty).
	RequireHeaders []string `yaml:"require_headers" json:"require_headers"`
	// DenyUserAgents rejects User-Agents containing any of these substrings.
	DenyUserAgents []string `yaml:"deny_user_agents" json:"deny_user_agents"`
	// StripHeaders are removed from requests before they go upstream, every line of
	// them: method-override headers (X-HTTP-Method-Override, X-HTTP-Method,
	// X-Method-Override) let a client turn an allowed GET into a DELETE at an upstream
	// that honours them, behind allow_methods.
	StripHeaders []string `yaml:"strip_headers" json:"strip_headers"`
	// DenyQueryParams rejects requests carrying any of these query parameters (acl/denied),
	// e.g. _method. The gateway forwards the query the filters judged, unchanged, so a
	// parameter is refused rather than removed.
	DenyQueryParams []string `yaml:"deny_query_params" json:"deny_query_params"`
	// Status of acl/denied answers (default 403; 0 also means 403).
	Status int `yaml:"status" json:"status"`
}

var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "PATCH": true, "OPTIONS": true, "CONNECT": true, "TRACE": true}

// Validate implements filters.Config.
func (c *Config) Validate() error {
	var errs filters.Errors
	for i, m := range c.AllowMethods {
		if !knownMethods[m] {
			errs.Add(filters.Errorf(field("allow_methods", i), m, "not an HTTP method (write it in capitals, e.g. GET)"))
		}
	}
	for i, n := range c.AllowNetworks {
		if _, err := filters.ParsePrefix(n); err != nil {
			errs.Add(filters.Errorf(field("allow_networks", i), n, "not an address or network (e.g. 10.0.0.0/8)"))
		}
	}
	for i, n := range c.DenyNetworks {
		if _, err := filters.ParsePrefix(n); err != nil {
			errs.Add(filters.Errorf(field("deny_networks", i), n, "not an address or network (e.g. 10.0.0.0/8)"))
		}
	}
	for i, p := range c.DenyPaths {
		if err := filters.CheckPathPrefix(p); err != nil {
			errs.Add(filters.Errorf(field("deny_paths", i), nil, "%v", err))
		}
	}
	for i, h := range c.RequireHeaders {
		if !filters.ValidHeaderName(h) {
			errs.Add(filters.Errorf(field("require_headers", i), h, "not a header name"))
		}
	}
	for i, h := range c.StripHeaders {
		if !filters.ValidHeaderName(h) {
			errs.Add(filters.Errorf(field("strip_headers", i), h, "not a header name"))
		}
	}
	for i, q := range c.DenyQueryParams {
		if q == "" || strings.ContainsAny(q, "&=# \r\n") {
			errs.Add(filters.Errorf(field("deny_query_params", i), q, "not a query parameter name"))
		}
	}
	for i, s := range c.DenyUserAgents {
		if s == "" {
			errs.Add(filters.Errorf(field("deny_user_agents", i), s, "must not be empty (it would match every client)"))
		}
	}
	errs.Add(filters.CheckStatus("status", c.Status, "403"))
	return errs.Err()
}

// Build implements filters.Config. The acl keeps no state, so prev is not needed.
func (c *Config) Build(bc *filters.BuildContext, _ filters.Filter) (filters.Filter, error) {
	status := c.Status
	if status == 0 {
		status = 403
	}
	a := &ACL{
		denied:    bc.Reason("denied", status),
		badMethod: bc.Reason("method_not_allowed", 405),
	}
	for _, m := range c.AllowMethods {
		a.methods = append(a.methods, []byte(m))
	}
	for _, n := range c.AllowNetworks {
		p, _ := filters.ParsePrefix(n)
		a.allowNets = append(a.allowNets, p)
	}
	for _, n := range c.DenyNetworks {
		p, _ := filters.ParsePrefix(n)
		a.denyNets = append(a.denyNets, p)
	}
	for _, p := range c.DenyPaths {
		a.denyPaths = append(a.denyPaths, []byte(strings.TrimSuffix(p, "/")))
	}
	for _, h := range c.RequireHeaders {
		a.required = append(a.required, []byte(h))
	}
	for _, s := range c.DenyUserAgents {
		a.badAgents = append(a.badAgents, []byte(s))
	}
	for _, h := range c.StripHeaders {
		a.strip = append(a.strip, []byte(h))
	}
	for _, q := range c.DenyQueryParams {
		a.denyQuery = append(a.denyQuery, []byte(q))
	}
	return a, nil
}

func field(name string, i int) string { return name + "." + itoa(i) }

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

var _ filters.Config = (*Config)(nil)
