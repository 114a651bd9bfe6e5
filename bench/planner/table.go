package planner

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteTable prints the plan for people: the funnel per channel, the limits per route and
// tier, and each backend's need against its capacity, flagging the links that cannot
// support it.
func (p *Plan) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	name := p.Name
	if name == "" {
		name = "funnel"
	}
	fmt.Fprintf(ew, "floodgate plan: %s - estimate x %s (safety factor), %d gateway instance(s), burst %s%% of the per-instance rate\n\n",
		name, num(p.SafetyFactor), p.Instances, num(100*p.BurstRatio))

	fmt.Fprintln(ew, "Funnel (per second):")
	t := &table{left: 1}
	head := []string{"CHANNEL", "EXPOSURES"}
	for _, s := range p.Steps {
		head = append(head, strings.ToUpper(s))
	}
	head = append(head, "REQUESTS", "x"+num(p.SafetyFactor))
	t.add(head...)
	totals := make([]float64, len(p.Steps))
	var exp, need, planned float64
	for _, c := range p.Channels {
		row := []string{c.Name, num(c.Exposures)}
		for i, v := range c.Visitors {
			row = append(row, num(v))
			totals[i] += v
		}
		row = append(row, num(c.Need), num(c.Planned))
		t.add(row...)
		exp += c.Exposures
		need += c.Need
		planned += c.Planned
	}
	if len(p.Channels) > 1 {
		row := []string{"TOTAL", num(exp)}
		for _, v := range totals {
			row = append(row, num(v))
		}
		t.add(append(row, num(need), num(planned))...)
	}
	t.write(ew)

	fmt.Fprintf(ew, "\nRoutes (need = visitors x requests per visitor; limit = need x %s, cut to what the backends carry):\n", num(p.SafetyFactor))
	t = &table{left: 3}
	t.add("ROUTE", "STEP", "BACKENDS", "VISITORS", "REQ/VISITOR", "NEED", "x"+num(p.SafetyFactor), "LIMIT", "PER INSTANCE", "BURST", "TIERS PER INSTANCE")
	for _, r := range p.Routes {
		name := r.Name
		if r.Core {
			name += " (core)"
		}
		limit, per, burst := num(r.Limit), strconv.FormatInt(r.PerInstance, 10), strconv.FormatInt(r.Burst, 10)
		var tiers []string
		for _, tr := range r.Tiers {
			if tr.PerInstance > 0 {
				tiers = append(tiers, fmt.Sprintf("%s %d", tr.Channel, tr.PerInstance))
			}
		}
		note := strings.Join(tiers, ", ")
		switch {
		case r.NoEstimate:
			limit, per, burst, note = "-", "-", "-", "no estimate: left alone"
		case r.Abandoned:
			limit, per, burst, note = "0", "0", "-", "OFF: no capacity left on "+r.CutBy
		case r.CutBy != "":
			limit += " (cut)"
		}
		if !r.PromoThrottle && !r.Abandoned && !r.NoEstimate {
			note = "(no promo_throttle)"
		}
		t.add(name, r.Step, strings.Join(r.Backends, ","), num(r.Visitors), num(r.RequestsPerVisitor), num(r.Need), num(r.Planned),
			limit, per, burst, note)
	}
	t.add("TOTAL", "", "", "", "", num(p.Need), num(p.Planned), "", "", "", "")
	t.write(ew)

	fmt.Fprintln(ew, "\nBackends:")
	t = &table{left: 2}
	t.add("BACKEND", "ROUTES", "NEED", "x"+num(p.SafetyFactor), "CAPACITY", "ADMITTED", "STATUS")
	for _, b := range p.Backends {
		status := "ok"
		switch b.Status {
		case OK:
			if b.Planned > 0 {
				status = fmt.Sprintf("ok (%sx the need)", num(b.Capacity/b.Need))
			}
		case ShortOfMargin:
			status = fmt.Sprintf("CANNOT SUPPORT x%s: short %s/s", num(p.SafetyFactor), num(b.Planned-b.Capacity))
		case ShortOfEstimate:
			status = fmt.Sprintf("CANNOT SUPPORT even the estimate: short %s/s", num(b.Need-b.Capacity))
		}
		if b.Status != OK && len(b.Abandonable) > 0 {
			status += "; can be abandoned: " + strings.Join(b.Abandonable, ", ")
		}
		routes := strings.Join(b.Routes, ",")
		if routes == "" {
			routes = "-"
		}
		t.add(b.Name, routes, num(b.Need), num(b.Planned), num(b.Capacity), num(b.Admitted), status)
	}
	t.write(ew)
	if ws := p.Warnings(); len(ws) > 0 {
		fmt.Fprintln(ew)
		for _, m := range ws {
			fmt.Fprintf(ew, "!!! %s\n", m)
		}
	}
	return ew.err
}

// table aligns columns: the first left ones and the last to the left, the rest to the right.
type table struct {
	left int
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	var width []int
	for _, r := range t.rows {
		for i, c := range r {
			for len(width) <= i {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < t.left || i == len(width)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
