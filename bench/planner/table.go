package planner

import (
	"fmt"
	"github.com/floodgate/floodgate/internal/texttable"
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
	t := &texttable.Table{Left: 1, Indent: "  "}
	head := []string{"CHANNEL", "EXPOSURES"}
	for _, s := range p.Steps {
		head = append(head, strings.ToUpper(s))
	}
	head = append(head, "REQUESTS", "x"+num(p.SafetyFactor))
	t.Add(head...)
	totals := make([]float64, len(p.Steps))
	var exp, need, planned float64
	for _, c := range p.Channels {
		row := []string{c.Name, num(c.Exposures)}
		for i, v := range c.Visitors {
			row = append(row, num(v))
			totals[i] += v
		}
		row = append(row, num(c.Need), num(c.Planned))
		t.Add(row...)
		exp += c.Exposures
		need += c.Need
		planned += c.Planned
	}
	if len(p.Channels) > 1 {
		row := []string{"TOTAL", num(exp)}
		for _, v := range totals {
			row = append(row, num(v))
		}
		t.Add(append(row, num(need), num(planned))...)
	}
	t.Write(ew)

	fmt.Fprintf(ew, "\nRoutes (need = visitors x requests per visitor; limit = need x %s, cut to what the backends carry):\n", num(p.SafetyFactor))
	t = &texttable.Table{Left: 3, Indent: "  "}
	t.Add("ROUTE", "STEP", "BACKENDS", "VISITORS", "REQ/VISITOR", "NEED", "x"+num(p.SafetyFactor), "LIMIT", "PER INSTANCE", "BURST", "TIERS PER INSTANCE")
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
		t.Add(name, r.Step, strings.Join(r.Backends, ","), num(r.Visitors), num(r.RequestsPerVisitor), num(r.Need), num(r.Planned),
			limit, per, burst, note)
	}
	t.Add("TOTAL", "", "", "", "", num(p.Need), num(p.Planned), "", "", "", "")
	t.Write(ew)

	fmt.Fprintln(ew, "\nBackends:")
	t = &texttable.Table{Left: 2, Indent: "  "}
	t.Add("BACKEND", "ROUTES", "NEED", "x"+num(p.SafetyFactor), "CAPACITY", "ADMITTED", "STATUS")
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
		t.Add(b.Name, routes, num(b.Need), num(b.Planned), num(b.Capacity), num(b.Admitted), status)
	}
	t.Write(ew)
	p.writeCapacity(ew)
	if ws := p.Warnings(); len(ws) > 0 {
		fmt.Fprintln(ew)
		for _, m := range ws {
			fmt.Fprintf(ew, "!!! %s\n", m)
		}
	}
	return ew.err
}

// writeCapacity prints the bandwidth of every link and the storage of every backend
// (the seed's other two dimensions), or says how to plan them.
func (p *Plan) writeCapacity(w io.Writer) {
	x := "x" + num(p.SafetyFactor)
	if len(p.Links) == 0 {
		fmt.Fprintf(w, "\nLinks: not planned (give routes request_bytes/response_bytes and the links' capacities: gateway_link, backends' link, store)\n")
	} else {
		fmt.Fprintf(w, "\nLinks (bandwidth per direction: OUT = requests from->to, IN = responses; at the estimate and %s, against the link's capacity):\n", x)
		t := &texttable.Table{Left: 1, Indent: "  "}
		t.Add("LINK", "CALLS/s "+x, "OUT", "IN", "OUT "+x, "IN "+x, "CAPACITY", "STATUS")
		for _, l := range p.Links {
			need, planned := l.Peak()
			capacity, status := "-", "no capacity given"
			if l.Capacity > 0 {
				capacity = bitrate(l.Capacity)
				switch l.Status {
				case OK:
					status = fmt.Sprintf("ok (%s%% used at %s)", num(100*planned/l.Capacity), x)
				case ShortOfMargin:
					status = fmt.Sprintf("CANNOT SUPPORT: %s at %s > %s", bitrate(planned), x, bitrate(l.Capacity))
				case ShortOfEstimate:
					status = fmt.Sprintf("CANNOT SUPPORT even the estimate: %s > %s", bitrate(need), bitrate(l.Capacity))
				}
			}
			if len(l.Unsized) > 0 {
				status += "; no sizes: " + strings.Join(l.Unsized, ",")
			}
			t.Add(l.Name, num(l.Planned), bitrate(l.OutNeed), bitrate(l.InNeed), bitrate(l.Out), bitrate(l.In), capacity, status)
		}
		t.Write(w)
	}
	if len(p.Storage) == 0 {
		return
	}
	fmt.Fprintf(w, "\nStorage (bytes each request leaves on the backend's disk, at %s):\n", x)
	t := &texttable.Table{Left: 1, Indent: "  "}
	t.Add("BACKEND", "PER REQUEST", "REQ/s "+x, "GROWTH/h", "CAMPAIGN", "BACKLOG", "DISK", "STATUS")
	for _, s := range p.Storage {
		per := bytesize(s.BytesPerRequest)
		if s.DefaultBytes {
			per += " (default)"
		}
		campaign, backlog := "-", "-"
		if s.DurationS > 0 {
			campaign = bytesize(s.Campaign) + " in " + hours(s.DurationS)
		}
		if s.BacklogS > 0 {
			backlog = bytesize(s.Backlog) + " in " + hours(s.BacklogS)
		}
		status := ""
		switch s.Status {
		case OK:
			status = fmt.Sprintf("ok (%s%% of the disk)", num(100*max(s.Campaign, s.Backlog)/s.Disk))
		case ShortOfMargin:
			status = fmt.Sprintf("CANNOT SUPPORT: %s at %s > %s", bytesize(max(s.Campaign, s.Backlog)), x, bytesize(s.Disk))
		case ShortOfEstimate:
			status = fmt.Sprintf("CANNOT SUPPORT even the estimate: %s > %s", bytesize(max(s.CampaignNeed, s.BacklogNeed)), bytesize(s.Disk))
		}
		t.Add(s.Backend, per, num(s.Planned), bytesize(s.PerHour), campaign, backlog, bytesize(s.Disk), status)
	}
	t.Write(w)
}
