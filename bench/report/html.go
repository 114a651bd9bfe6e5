package report

import (
	"html/template"
	"io"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/internal/uplot"
)

// uPlot (MIT, see internal/uplot), inlined into each report so that it opens without
// network access.
var (
	uplotJS      = uplot.JS
	uplotCSS     = uplot.CSS
	uplotLicense = uplot.License
)

type htmlRow struct {
	Route, Verdict, Class, Share, Status string
	Count                                int64
	Rate                                 float64
	P                                    Percentiles
	Bad                                  bool
}

type htmlPage struct {
	S       *Summary
	Rows    []htmlRow
	JS      template.JS
	CSS     template.CSS
	License string
}

// WriteHTML writes a self-contained HTML report: the summary, the table per route and
// verdict, and charts per second (requests sent/admitted/shed/failed for all routes and
// for each route, and latency percentiles). Everything, the chart library included, is
// inside the file.
func WriteHTML(w io.Writer, r *loadgen.Result) error {
	s := NewSummary(r)
	page := htmlPage{S: s, JS: template.JS(uplotJS), CSS: template.CSS(uplotCSS), License: uplotLicense}
	for _, rs := range s.Routes {
		var done int64
		for _, v := range rs.Verdicts {
			done += v.Count
		}
		for i, v := range rs.Verdicts {
			row := htmlRow{Verdict: v.Verdict, Class: v.Class, Count: v.Count, Rate: v.Rate, P: v.Latency,
				Bad: v.Class == "error" || v.Class == "client"}
			if i == 0 {
				row.Route = rs.Name
			}
			if done > 0 {
				row.Share = pct(v.Count, done)
			}
			row.Status = statusesText(v.Statuses)
			page.Rows = append(page.Rows, row)
		}
	}
	return htmlTmpl.Execute(w, page)
}

func pct(n, of int64) string { return formatPct(100 * float64(n) / float64(of)) }

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{"us": FormatUS}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>floodgate bench: {{.S.Profile}}</title>
<style>{{.CSS}}</style>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #444; margin: .2em 0; }
.warn { background: #fee; border: 2px solid #c00; color: #900; font-weight: bold; padding: .5em 1em; margin: .5em 0; }
.ok { background: #efe; border: 1px solid #6a6; color: #262; padding: .4em 1em; margin: .5em 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #e5e5e5; white-space: nowrap; }
th { background: #f4f4f4; }
td.l, th.l { text-align: left; }
tr.bad td { background: #fdd; font-weight: bold; }
.chart { margin: 1em 0 2em 0; }
footer { margin-top: 3em; color: #888; font-size: 11px; }
</style>
</head>
<body>
<h1>floodgate bench: {{.S.Profile}}</h1>
{{with .S.Description}}<p class="meta">{{.}}</p>{{end}}
<p class="meta">target <b>{{.S.Target}}</b> &middot; started {{.S.Started.Format "2006-01-02 15:04:05 MST"}} &middot;
plan rate {{.S.PlanRate}}/s, peak {{.S.PeakRate}}/s &middot; schedule {{printf "%.1f" .S.ScheduleS}} s, ran {{printf "%.1f" .S.ElapsedS}} s ({{.S.StopReason}})</p>
<p class="meta">sent {{.S.Sent}} of {{.S.Planned}} planned, completed {{.S.Completed}} &middot;
admitted {{index .S.Totals "admitted"}}, shed {{index .S.Totals "shed"}}, error {{index .S.Totals "error"}}, client {{index .S.Totals "client"}}, other {{index .S.Totals "other"}} &middot;
workers {{.S.Workers}}, conns {{.S.Conns}}, timeout {{.S.TimeoutMS}} ms</p>
<p class="meta">generator lag p50 {{us .S.GeneratorLagUS.P50}}, p99 {{us .S.GeneratorLagUS.P99}}, max {{us .S.GeneratorLagUS.Max}} &middot;
late {{.S.LatePct}}% (started more than {{us .S.LateThresholdUS}} after the intended time) &middot; latencies are measured from the intended send time</p>
{{range .S.Warnings}}<div class="warn">!!! {{.}}</div>
{{else}}<div class="ok">no unexplained errors; the generator kept its schedule</div>
{{end}}
<h2>Per route and verdict</h2>
<table>
<tr><th class="l">route</th><th class="l">verdict</th><th class="l">class</th><th>count</th><th>share</th><th>rate/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th class="l">status</th></tr>
{{range .Rows}}<tr{{if .Bad}} class="bad"{{end}}><td class="l">{{.Route}}</td><td class="l">{{.Verdict}}</td><td class="l">{{.Class}}</td><td>{{.Count}}</td><td>{{.Share}}</td><td>{{printf "%.1f" .Rate}}</td><td>{{us .P.P50}}</td><td>{{us .P.P90}}</td><td>{{us .P.P99}}</td><td>{{us .P.P999}}</td><td>{{us .P.Max}}</td><td class="l">{{.Status}}</td></tr>
{{end}}</table>
<h2>Over time</h2>
<div id="charts"></div>
<noscript><p>The charts need JavaScript; the data is in the table above and in <code>floodgate bench -json</code>.</p></noscript>
<script>{{.JS}}</script>
<script>
const DATA = {{.S}};
(function () {
  const tl = DATA.timeline || [];
  const root = document.getElementById("charts");
  if (tl.length === 0) { root.textContent = "no timeline: the run was shorter than a second of activity"; return; }
  const xs = tl.map(s => s.t);
  const dt = tl.map((s, i) => Math.max(s.t - (i > 0 ? tl[i - 1].t : 0), 0.001));
  const perSec = f => tl.map((s, i) => f(s) / dt[i]);
  const width = () => Math.max(480, Math.min(1200, document.body.clientWidth - 40));
  const charts = [];
  function chart(title, yLabel, series, data, log, msAxis) {
    const el = document.createElement("div");
    el.className = "chart";
    root.appendChild(el);
    const opts = {
      title: title, width: width(), height: 260,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [{ label: "seconds from start" }, { label: yLabel, size: 70 }].concat(
        msAxis ? [{ scale: "ms", side: 1, label: "p99 ms", size: 60, grid: { show: false } }] : []),
      series: [{ label: "t (s)" }].concat(series),
    };
    charts.push(new uPlot(opts, data, el));
  }
  const C = { sent: "#555", admitted: "#2a9d4b", shed: "#e69500", failed: "#d62728", late: "#8e44ad" };
  const line = (label, stroke, extra) => Object.assign({ label: label, stroke: stroke, width: 1.5 }, extra || {});
  const failed = d => d[2] + d[3] + d[4];
  chart("All routes: requests per second", "req/s",
    [line("sent", C.sent), line("admitted", C.admitted), line("shed", C.shed), line("failed (error, client, other)", C.failed), line("late sends", C.late, { dash: [4, 4] })],
    [xs, perSec(s => s.sent), perSec(s => s.done[0]), perSec(s => s.done[1]), perSec(s => failed(s.done)), perSec(s => s.late)]);
  const ms = v => (v > 0 ? v / 1000 : null);
  chart("Latency from the intended send time (ms, log scale)", "ms",
    [line("admitted p50", "#7fbf7f"), line("admitted p90", "#2a9d4b"), line("admitted p99", "#145a2a"),
     line("admitted max", "#999", { dash: [3, 3] }), line("shed p99", C.shed)],
    [xs, tl.map(s => ms(s.admitted_us.p50)), tl.map(s => ms(s.admitted_us.p90)), tl.map(s => ms(s.admitted_us.p99)),
     tl.map(s => ms(s.admitted_us.max)), tl.map(s => ms(s.shed_us.p99))], true);
  (DATA.routes || []).forEach((r, i) => {
    chart("Route " + r.name + " (" + r.method + " " + r.path + "): requests per second", "req/s",
      [line("sent", C.sent), line("admitted", C.admitted), line("shed", C.shed), line("failed", C.failed),
       line("admitted p99 (ms)", "#145a2a", { scale: "ms", dash: [2, 3] })],
      [xs, perSec(s => s.routes[i].sent), perSec(s => s.routes[i].done[0]), perSec(s => s.routes[i].done[1]),
       perSec(s => failed(s.routes[i].done)), tl.map(s => ms(s.routes[i].admitted_us.p99))], false, true);
  });
  window.addEventListener("resize", () => charts.forEach(c => c.setSize({ width: width(), height: 260 })));
})();
</script>
<footer>Charts drawn with uPlot (MIT licence, inlined):<pre>{{.License}}</pre></footer>
</body>
</html>
`))
