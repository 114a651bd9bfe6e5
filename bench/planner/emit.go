package planner

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Override is one Consul-relative path and its value, as `floodgate ctl plan put` takes
// them (the key layout of PRODUCT.md: routes/<route>/<filter>/<param>).
type Override struct {
	Path  string
	Value any // int64 or bool
}

// Overrides lists the plan's limits as path -> value, route by route in the funnel's
// order: token_bucket rate and burst (per instance), promo_throttle tier rates (per
// instance), and enabled=false for a route with no capacity left.
func (p *Plan) Overrides() []Override {
	var out []Override
	for _, r := range p.Routes {
		base := "routes/" + r.Name + "/"
		switch {
		case r.NoEstimate:
			continue
		case r.Abandoned:
			out = append(out, Override{base + "enabled", false})
			continue
		}
		if r.TokenBucket {
			out = append(out, Override{base + TokenBucket + "/rate", r.PerInstance}, Override{base + TokenBucket + "/burst", r.Burst})
		}
		if r.PromoThrottle {
			for _, t := range r.Tiers {
				if t.PerInstance > 0 {
					out = append(out, Override{base + PromoThrottle + "/tiers/" + t.Channel + "/rate", t.PerInstance})
				}
			}
		}
	}
	return out
}

func (p *Plan) header(w io.Writer, what string) {
	name := p.Name
	if name == "" {
		name = "funnel"
	}
	fmt.Fprintf(w, "# floodgate plan: %s from the %s funnel: estimate x %s, %d gateway instance(s),\n", what, name, num(p.SafetyFactor), p.Instances)
	fmt.Fprintf(w, "# rates per instance (requests/s), burst %s%% of the rate.", num(100*p.BurstRatio))
	if p.Capped {
		fmt.Fprintf(w, " Limits cut to what each backend carries.")
	}
	fmt.Fprintln(w)
	x := "x" + num(p.SafetyFactor)
	for _, l := range p.Links {
		_, planned := l.Peak()
		if l.Capacity > 0 {
			fmt.Fprintf(w, "# link %s: %s at %s of %s: %s\n", l.Name, bitrate(planned), x, bitrate(l.Capacity), l.Status)
		}
	}
	for _, s := range p.Storage {
		fmt.Fprintf(w, "# storage %s: %s at %s of %s disk: %s\n", s.Backend, bytesize(max(s.Campaign, s.Backlog)), x, bytesize(s.Disk), s.Status)
	}
	for _, m := range p.Warnings() {
		fmt.Fprintf(w, "# WARNING: %s\n", m)
	}
}

func scalar(v any) string {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}

// WritePlan writes the overrides as a flat YAML map of path: value (a plan document for
// `floodgate ctl plan put`).
func (p *Plan) WritePlan(w io.Writer) error {
	ew := &errWriter{w: w}
	p.header(ew, "Consul plan")
	ov := p.Overrides()
	if len(ov) == 0 {
		fmt.Fprintln(ew, "{}")
	}
	for _, o := range ov {
		fmt.Fprintf(ew, "%s: %s\n", o.Path, scalar(o.Value))
	}
	return ew.err
}

// WriteConfig writes the same limits as a nested fragment of the gateway configuration:
//
//	routes:
//	  lottery:
//	    filters:
//	      token_bucket: {rate: 360, burst: 72}
//	      promo_throttle: {tiers: {wechat: {rate: 180}}}
func (p *Plan) WriteConfig(w io.Writer) error {
	ew := &errWriter{w: w}
	p.header(ew, "config fragment")
	fmt.Fprintln(ew, "routes:")
	wrote := false
	for _, r := range p.Routes {
		if r.NoEstimate || (!r.Abandoned && !r.TokenBucket && !r.PromoThrottle) {
			continue
		}
		wrote = true
		fmt.Fprintf(ew, "  %s:\n", r.Name)
		if r.Abandoned {
			fmt.Fprintf(ew, "    enabled: false\n")
			continue
		}
		fmt.Fprintf(ew, "    filters:\n")
		if r.TokenBucket {
			fmt.Fprintf(ew, "      %s: {rate: %d, burst: %d}\n", TokenBucket, r.PerInstance, r.Burst)
		}
		if r.PromoThrottle {
			var tiers []string
			for _, t := range r.Tiers {
				if t.PerInstance > 0 {
					tiers = append(tiers, fmt.Sprintf("%s: {rate: %d}", t.Channel, t.PerInstance))
				}
			}
			if len(tiers) > 0 {
				fmt.Fprintf(ew, "      %s: {tiers: {%s}}\n", PromoThrottle, strings.Join(tiers, ", "))
			}
		}
	}
	if !wrote {
		fmt.Fprintln(ew, "  {}")
	}
	return ew.err
}

// WriteJSON writes the plan, its overrides and its warnings as one JSON document.
func (p *Plan) WriteJSON(w io.Writer) error {
	ov := map[string]any{}
	for _, o := range p.Overrides() {
		ov[o.Path] = o.Value
	}
	warnings := p.Warnings()
	if warnings == nil {
		warnings = []string{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Plan
		Overrides map[string]any `json:"overrides"`
		Warnings  []string       `json:"warnings"`
	}{p, ov, warnings})
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}
