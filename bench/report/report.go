// Package report turns a loadgen.Result into what people and scripts read: a text table
// per route and verdict, a JSON summary, an offline HTML report with charts over time,
// and the one-line live progress of `floodgate bench`.
package report

import (
	"encoding/json"
	"fmt"
	"github.com/floodgate/floodgate/internal/texttable"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/floodgate/floodgate/bench/loadgen"
)

// Summary is the JSON form of a result (`floodgate bench -json`). Latencies are in
// microseconds from the intended send time.
type Summary struct {
	Profile          string           `json:"profile"`
	Description      string           `json:"description,omitempty"`
	Target           string           `json:"target"`
	Started          time.Time        `json:"started"`
	ElapsedS         float64          `json:"elapsed_s"`
	ScheduleS        float64          `json:"schedule_s"`
	PlanRate         float64          `json:"plan_rate"`
	PeakRate         float64          `json:"peak_rate"`
	StopReason       string           `json:"stop_reason"`
	Planned          int64            `json:"planned"`
	Sent             int64            `json:"sent"`
	Unsent           int64            `json:"unsent"`
	Completed        int64            `json:"completed"`
	Late             int64            `json:"late"`
	LatePct          float64          `json:"late_pct"`
	LateThresholdUS  int64            `json:"late_threshold_us"`
	Stalled          int64            `json:"stalled"`
	GeneratorLimited bool             `json:"generator_limited"`
	GeneratorLagUS   Percentiles      `json:"generator_lag_us"`
	Workers          int              `json:"workers"`
	Conns            int              `json:"conns"`
	TimeoutMS        int64            `json:"timeout_ms"`
	Seed             int64            `json:"seed"`
	Totals           map[string]int64 `json:"totals"` // by class
	Admitted         Percentiles      `json:"admitted_us"`
	Shed             Percentiles      `json:"shed_us"`
	Routes           []RouteSummary   `json:"routes"`
	Warnings         []string         `json:"warnings"`
	// Classes names the entries of the timeline's "done" arrays, in order.
	Classes  []string         `json:"classes"`
	Timeline []loadgen.Second `json:"timeline"`
}

// RouteSummary is one route of a Summary.
type RouteSummary struct {
	Name   string  `json:"name"`
	Method string  `json:"method"`
	Path   string  `json:"path"`
	Weight float64 `json:"weight"`
	Sent   int64   `json:"sent"`
	// RequestBytes and ResponseBytes are the mean size of an answered request and of its
	// answer on the client->gateway link, headers included: what `floodgate plan -drill`
	// reads for the funnel's request_bytes and response_bytes.
	RequestBytes  float64          `json:"request_bytes"`
	ResponseBytes float64          `json:"response_bytes"`
	Totals        map[string]int64 `json:"totals"`
	Verdicts      []VerdictSummary `json:"verdicts"`
}

// VerdictSummary is one (route, verdict) row.
type VerdictSummary struct {
	Verdict  string           `json:"verdict"`
	Class    string           `json:"class"`
	Count    int64            `json:"count"`
	Rate     float64          `json:"rate"`
	Statuses map[string]int64 `json:"statuses"`
	Latency  Percentiles      `json:"latency_us"`
}

// Percentiles of a histogram, in microseconds.
type Percentiles struct {
	Count int64 `json:"count"`
	P50   int64 `json:"p50"`
	P90   int64 `json:"p90"`
	P99   int64 `json:"p99"`
	P999  int64 `json:"p99_9"`
	Max   int64 `json:"max"`
}

func percentilesOf(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{Count: h.TotalCount(), P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90),
		P99: h.ValueAtQuantile(99), P999: h.ValueAtQuantile(99.9), Max: h.Max()}
}

// activeSeconds is the time over which load was offered: the rate column divides by it.
func activeSeconds(r *loadgen.Result) float64 {
	d := r.ScheduleLength
	if r.Elapsed < d || d <= 0 {
		d = r.Elapsed
	}
	if d <= 0 {
		return 1
	}
	return d.Seconds()
}

// NewSummary builds the JSON summary of a result.
func NewSummary(r *loadgen.Result) *Summary {
	s := &Summary{Profile: r.Profile, Description: r.Description, Target: r.Target, Started: r.Started,
		ElapsedS: r.Elapsed.Seconds(), ScheduleS: r.ScheduleLength.Seconds(), PlanRate: r.PlanRate, PeakRate: r.PeakRate,
		StopReason: r.StopReason, Planned: r.Planned, Sent: r.Sent, Unsent: r.Unsent, Completed: r.Completed,
		Late: r.Late, LatePct: round2(100 * r.LateFraction()), LateThresholdUS: r.LateThreshold.Microseconds(),
		Stalled: r.Stalled, GeneratorLimited: r.GeneratorLimited(), GeneratorLagUS: percentilesOf(r.Lag),
		Workers: r.Workers, Conns: r.Conns, TimeoutMS: r.Timeout.Milliseconds(), Seed: r.Seed,
		Totals: map[string]int64{}, Admitted: percentilesOf(r.Latency(loadgen.ClassAdmitted)),
		Shed: percentilesOf(r.Latency(loadgen.ClassShed)), Warnings: r.Warnings(), Timeline: r.Timeline}
	if s.Warnings == nil {
		s.Warnings = []string{}
	}
	if s.Timeline == nil {
		s.Timeline = []loadgen.Second{}
	}
	for c := loadgen.Class(0); c < loadgen.NumClasses; c++ {
		s.Totals[c.String()] = r.ClassCount("", c)
		s.Classes = append(s.Classes, c.String())
	}
	secs := activeSeconds(r)
	for _, rr := range r.Routes {
		rs := RouteSummary{Name: rr.Name, Method: rr.Method, Path: rr.Path, Weight: rr.Weight, Sent: rr.Sent,
			RequestBytes: round2(rr.RequestBytes), ResponseBytes: round2(rr.ResponseBytes),
			Totals: map[string]int64{}, Verdicts: []VerdictSummary{}}
		for c := loadgen.Class(0); c < loadgen.NumClasses; c++ {
			rs.Totals[c.String()] = rr.ClassCount(c)
		}
		for _, v := range rr.Verdicts {
			vs := VerdictSummary{Verdict: v.Verdict, Class: v.Class.String(), Count: v.Count,
				Rate: round2(float64(v.Count) / secs), Statuses: map[string]int64{}, Latency: percentilesOf(v.Latency)}
			for st, n := range v.Statuses {
				k := strconv.Itoa(st)
				if st == 0 {
					k = "none"
				}
				vs.Statuses[k] = n
			}
			rs.Verdicts = append(rs.Verdicts, vs)
		}
		s.Routes = append(s.Routes, rs)
	}
	return s
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// WriteJSON writes the summary as indented JSON.
func WriteJSON(w io.Writer, r *loadgen.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewSummary(r))
}

// FormatUS prints microseconds for people: 850µs, 3.21ms, 1.20s.
func FormatUS(us int64) string {
	switch {
	case us <= 0:
		return "-"
	case us < 1000:
		return strconv.FormatInt(us, 10) + "µs"
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) + "ms"
	default:
		return strconv.FormatFloat(float64(us)/1e6, 'f', 2, 64) + "s"
	}
}

func statusList(m map[int]int64) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		if k == 0 {
			continue // transport failures have no status
		}
		parts = append(parts, fmt.Sprintf("%d:%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// WriteText writes the human summary: the run, the table per route and verdict, totals,
// and the warnings, framed so they cannot be missed.
func WriteText(w io.Writer, r *loadgen.Result) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "\nfloodgate bench: profile %s -> %s\n", r.Profile, r.Target)
	fmt.Fprintf(ew, "  offered: plan %s/s, peak %s/s, schedule %v; ran %v (%s)\n",
		fmtRate(r.PlanRate), fmtRate(r.PeakRate), r.ScheduleLength.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), r.StopReason)
	fmt.Fprintf(ew, "  sent %d of %d planned, completed %d; workers %d, conns %d, timeout %v\n",
		r.Sent, r.Planned, r.Completed, r.Workers, r.Conns, r.Timeout)
	fmt.Fprintf(ew, "  generator lag p50 %s p99 %s max %s; late %.2f%% (started > %v after the intended time)\n\n",
		FormatUS(r.Lag.ValueAtQuantile(50)), FormatUS(r.Lag.ValueAtQuantile(99)), FormatUS(r.Lag.Max()),
		100*r.LateFraction(), r.LateThreshold)

	secs := activeSeconds(r)
	t := &texttable.Table{Left: 3}
	t.Add("ROUTE", "VERDICT", "CLASS", "COUNT", "SHARE", "RATE/s", "P50", "P90", "P99", "P99.9", "MAX", "STATUS")
	row := func(route, verdict, class string, count, of int64, p Percentiles, status string) {
		share := "-"
		if of > 0 {
			share = formatPct(100 * float64(count) / float64(of))
		}
		t.Add(route, verdict, class, strconv.FormatInt(count, 10), share, strconv.FormatFloat(float64(count)/secs, 'f', 1, 64),
			FormatUS(p.P50), FormatUS(p.P90), FormatUS(p.P99), FormatUS(p.P999), FormatUS(p.Max), status)
	}
	for _, rr := range r.Routes {
		var done int64
		for _, v := range rr.Verdicts {
			done += v.Count
		}
		for i, v := range rr.Verdicts {
			name := rr.Name
			if i > 0 {
				name = ""
			}
			verdict := v.Verdict
			if v.Class == loadgen.ClassError || v.Class == loadgen.ClassClient {
				verdict = "!! " + verdict
			}
			row(name, verdict, v.Class.String(), v.Count, done, percentilesOf(v.Latency), statusList(v.Statuses))
		}
		if len(rr.Verdicts) == 0 {
			row(rr.Name, "(no answers)", "-", 0, 0, Percentiles{}, "-")
		}
	}
	t.Add()
	for c := loadgen.Class(0); c < loadgen.NumClasses; c++ {
		n := r.ClassCount("", c)
		if n == 0 && c != loadgen.ClassAdmitted && c != loadgen.ClassShed {
			continue
		}
		label := ""
		if c == 0 {
			label = "ALL ROUTES"
		}
		row(label, "", c.String(), n, r.Completed, percentilesOf(r.Latency(c)), "")
	}
	t.Write(ew)
	if ws := r.Warnings(); len(ws) > 0 {
		fmt.Fprintln(ew)
		for _, m := range ws {
			fmt.Fprintf(ew, "!!! %s\n", m)
		}
	}
	fmt.Fprintln(ew)
	return ew.err
}

func fmtRate(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// ProgressLine is the live line `floodgate bench` prints once a second.
func ProgressLine(p loadgen.Progress) string {
	var b strings.Builder
	if p.Final {
		fmt.Fprintf(&b, "[%5.1fs] done: sent %d/%d  admitted %d", p.Elapsed.Seconds(), p.Sent, p.Planned, p.Done[loadgen.ClassAdmitted])
	} else {
		fmt.Fprintf(&b, "[%5.1fs] sent %d/%d (%.0f/s)  admitted %d", p.Elapsed.Seconds(), p.Sent, p.Planned, p.Rate,
			p.Done[loadgen.ClassAdmitted])
	}
	if len(p.Shed) > 0 {
		b.WriteString("  shed")
		for i, v := range p.Shed {
			if i == 4 {
				fmt.Fprintf(&b, " +%d more", len(p.Shed)-i)
				break
			}
			fmt.Fprintf(&b, " %s=%d", v.Verdict, v.Count)
		}
	}
	if len(p.Failed) > 0 {
		b.WriteString("  !! FAILED")
		for i, v := range p.Failed {
			if i == 4 {
				fmt.Fprintf(&b, " +%d more", len(p.Failed)-i)
				break
			}
			fmt.Fprintf(&b, " %s=%d", v.Verdict, v.Count)
		}
	}
	if !p.Final {
		fmt.Fprintf(&b, "  p99 admitted %s shed %s", FormatUS(p.P99Admitted.Microseconds()), FormatUS(p.P99Shed.Microseconds()))
	}
	fmt.Fprintf(&b, "  late %.1f%%", 100*p.LateFraction)
	if p.LateFraction > loadgen.LateWarnFraction {
		b.WriteString(" (GENERATOR BEHIND)")
	}
	return b.String()
}

func formatPct(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) + "%" }

func statusesText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if k == "none" {
			continue
		}
		parts = append(parts, k+":"+strconv.FormatInt(m[k], 10))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
