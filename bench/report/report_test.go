package report

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/bench/profile"
)

// drill runs a short real drill against a fake gateway that sheds half of /info and
// answers /grant with an unexplained 503.
func drill(t *testing.T) *loadgen.Result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		switch string(c.Path()) {
		case "/info":
			if n.Add(1)%2 == 0 {
				c.Response.Header.Set(loadgen.VerdictHeader, "sample/dropped")
			}
		case "/grant":
			c.SetStatusCode(503)
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	p := &profile.Profile{Name: "report-test", Description: "a <test> & more", Target: ln.Addr().String(),
		Routes: []profile.Route{{Name: "info", Path: "/info", Weight: 3}, {Name: "grant", Method: "POST", Path: "/grant", Weight: 1}},
		Stages: []profile.Stage{{Hold: &profile.Hold{Rate: profile.Abs(400), Duration: 1500 * time.Millisecond}}}}
	res, err := loadgen.Run(context.Background(), p, loadgen.Options{Conns: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestReports(t *testing.T) {
	res := drill(t)
	if res.Sent != 600 {
		t.Fatalf("sent %d, want 600", res.Sent)
	}

	t.Run("text", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteText(&b, res); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, want := range []string{"profile report-test", "ROUTE", "VERDICT", "P99.9", "info", "sample/dropped",
			"!! error", "503:150", "!!! 150 unexplained errors", "ALL ROUTES"} {
			if !strings.Contains(out, want) {
				t.Errorf("text report lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteJSON(&b, res); err != nil {
			t.Fatal(err)
		}
		var s Summary
		if err := json.Unmarshal(b.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		if s.Sent != 600 || s.Totals["error"] != 150 || len(s.Routes) != 2 || s.Routes[1].Name != "grant" {
			t.Fatalf("summary %+v", s)
		}
		var shed, admitted int64
		for _, v := range s.Routes[0].Verdicts {
			switch v.Verdict {
			case "sample/dropped":
				shed = v.Count
				if v.Class != "shed" || v.Statuses["200"] != v.Count || v.Latency.P99 <= 0 || v.Latency.Max < v.Latency.P99 {
					t.Errorf("shed row %+v", v)
				}
			case "admitted":
				admitted = v.Count
			}
		}
		if shed+admitted != 450 || shed < 200 || shed > 250 {
			t.Errorf("info: shed %d admitted %d, want about half of 450 shed", shed, admitted)
		}
		if len(s.Timeline) == 0 || len(s.Timeline[0].Routes) != 2 {
			t.Errorf("timeline %+v", s.Timeline)
		}
		if len(s.Warnings) == 0 {
			t.Error("no warnings for 150 unexplained errors")
		}
	})

	t.Run("html", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteHTML(&b, res); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(out), "</html>") {
			t.Fatal("not an HTML document")
		}
		// Offline: no script, stylesheet or image is fetched from anywhere.
		if m := regexp.MustCompile(`(?i)<(script|link|img|iframe)[^>]+(src|href)\s*=`).FindString(out); m != "" {
			t.Errorf("external resource: %s", m)
		}
		if regexp.MustCompile(`(?i)src\s*=\s*["']?(https?:)?//`).MatchString(out) {
			t.Error("report loads something over the network")
		}
		// The chart library is inlined.
		if !strings.Contains(out, "uPlot") || len(out) < len(uplotJS) {
			t.Error("uPlot not inlined")
		}
		// Balanced elements that matter for a browser.
		for _, tag := range []string{"script", "table", "div", "style", "body", "head", "html"} {
			open := len(regexp.MustCompile(`(?i)<`+tag+`[\s>]`).FindAllString(out, -1))
			closed := strings.Count(strings.ToLower(out), "</"+tag+">")
			if open != closed {
				t.Errorf("<%s>: %d opened, %d closed", tag, open, closed)
			}
		}
		// The data: the table rows and the timeline the charts draw.
		for _, want := range []string{"sample/dropped", "<td class=\"l\">grant</td>", "150 unexplained errors",
			`"timeline":[{"t":1`, `"name":"info"`, "a &lt;test&gt; &amp; more"} {
			if !strings.Contains(out, want) {
				t.Errorf("HTML lacks %q", want)
			}
		}
		// Text from the profile cannot break out of the data script.
		if strings.Contains(out, "a <test>") {
			t.Error("unescaped profile text")
		}
	})
}

func TestProgressLine(t *testing.T) {
	p := loadgen.Progress{Elapsed: 3 * time.Second, Planned: 1000, Sent: 300, Rate: 100,
		Shed:         []loadgen.VerdictCount{{Verdict: "token_bucket/limited", Count: 20}},
		Failed:       []loadgen.VerdictCount{{Verdict: "error", Count: 2}},
		P99Admitted:  3 * time.Millisecond,
		LateFraction: 0.05}
	p.Done[loadgen.ClassAdmitted] = 278
	line := ProgressLine(p)
	for _, want := range []string{"sent 300/1000 (100/s)", "admitted 278", "token_bucket/limited=20", "!! FAILED error=2", "p99 admitted 3.00ms", "late 5.0% (GENERATOR BEHIND)"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

func TestFormatUS(t *testing.T) {
	for us, want := range map[int64]string{0: "-", 850: "850µs", 3210: "3.21ms", 1_200_000: "1.20s"} {
		if got := FormatUS(us); got != want {
			t.Errorf("FormatUS(%d) = %q, want %q", us, got, want)
		}
	}
}
