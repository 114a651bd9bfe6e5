package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/bench/profile"
	"github.com/floodgate/floodgate/bench/report"
)

func init() {
	register(command{name: "bench", summary: "open-loop load and drill tool (profiles, live progress, HTML report)", run: runBench})
}

const benchExamples = `  # the seed's night compressed to 60 s against the local gateway, with an HTML report
  floodgate bench -profile seed-night -report night.html

  # the same night at 20,000/s plan rate (32,000/s surge) in 20 s, summary as JSON
  floodgate bench -profile seed-night -rate 20000 -duration 20s -json night.json

  # a profile file against another gateway
  floodgate bench -profile configs/profiles/overload-ladder.yaml -rate 2000 -target 127.0.0.1:9080

  # quick ad-hoc run: 5,000/s for 30 s split evenly over two routes
  floodgate bench -route lottery=/lottery -route info=/info -rate 5000 -duration 30s

  # how fast can this machine's generator go? (against an in-process server)
  floodgate bench -self-test

  # list the built-in profiles, or show one resolved with its flags
  floodgate bench -list
  floodgate bench -profile seed-night -rate 8000 -print-profile`

type routeFlags []profile.Route

func (r *routeFlags) String() string {
	var parts []string
	for _, x := range *r {
		parts = append(parts, x.Name+"="+x.Path)
	}
	return strings.Join(parts, ",")
}

func (r *routeFlags) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || !strings.HasPrefix(path, "/") {
		return fmt.Errorf("want NAME=PATH with PATH starting with /, got %q", v)
	}
	*r = append(*r, profile.Route{Name: name, Path: path, Weight: 1})
	return nil
}

func runBench(args []string) error {
	fs := newFlagSet("bench", "[-profile NAME|FILE | -route NAME=PATH ...] [flags]", benchExamples)
	var routes routeFlags
	prof := fs.String("profile", "", "built-in profile ("+strings.Join(profile.BuiltinNames(), ", ")+") or a profile YAML file")
	fs.Var(&routes, "route", "ad-hoc route `NAME=PATH` (GET; repeat for several, equal weights); use instead of -profile")
	rate := fs.Float64("rate", 0, "with -profile: the plan rate in requests/s, what 1x means (default: the profile's);\nwith -route: the constant total rate (default 1000);\nwith -self-test: the first rate tried (default 2000)")
	duration := fs.Duration("duration", 0, "with -profile: stretch or compress the stages to this total length (default: as written);\nwith -route: how long to run (default 10s); with -self-test: length of each step (default 2s)")
	target := fs.String("target", "", "gateway address host:port or http(s)://host:port (default: the profile's, else "+loadgen.DefaultTarget+")")
	conns := fs.Int("conns", loadgen.DefaultConns, "connection budget: most connections open to the target at once")
	workers := fs.Int("workers", 0, "worker goroutines sending requests (default: -conns)")
	timeout := fs.Duration("timeout", 0, "per-request timeout (default: the profile's, else "+loadgen.DefaultTimeout.String()+")")
	lateAfter := fs.Duration("late-threshold", loadgen.DefaultLateThreshold, "a send starting later than this after its intended time counts as late")
	maxReq := fs.Int64("max-requests", 0, "stop after this many requests (default: as many as the schedule makes)")
	maxTime := fs.Duration("max-time", 0, "hard stop for the whole run (default: schedule + 2 x timeout + 5s)")
	seed := fs.Int64("seed", 0, "seed for the user and tag draws (default: from the clock; printed in -json)")
	htmlOut := fs.String("report", "", "write an HTML report with charts over time to this `FILE.html` (opens offline)")
	jsonOut := fs.String("json", "", "write the summary as JSON to this `FILE` (- for stdout)")
	quiet := fs.Bool("quiet", false, "no live progress on stderr")
	maxErrors := fs.Float64("max-errors", -1, "exit 1 when more than this share (0..1) of the requests sent got no answer or an unexplained 5xx (default: no limit)")
	maxLate := fs.Float64("max-late", -1, "exit 1 when more than this share (0..1) of the sends started late (the generator fell behind; default: no limit)")
	selfTest := fs.Bool("self-test", false, "measure this generator's own ceiling against an in-process server on 127.0.0.1:0 and exit")
	list := fs.Bool("list", false, "list the built-in profiles and exit")
	printProf := fs.Bool("print-profile", false, "print the profile as it would run (after -rate, -duration, -target) and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error { return exitError{code: 2, msg: fmt.Sprintf(format, a...)} }
	if err := refuseExplicitZero(fs, "rate", "duration", "workers", "timeout", "max-requests", "max-time", "seed"); err != nil {
		return err
	}
	if *rate < 0 || *duration < 0 || *timeout < 0 || *lateAfter <= 0 || *maxReq < 0 || *maxTime < 0 || *conns < 1 || *workers < 0 {
		return usageErr("-rate, -duration, -timeout, -max-requests, -max-time and -workers must not be negative; -conns and -late-threshold must be positive")
	}

	if *list {
		for _, n := range profile.BuiltinNames() {
			p, err := profile.Builtin(n)
			if err != nil {
				return err
			}
			fmt.Printf("%-16s %s (plan rate %v/s, %v)\n", n, p.Description, p.Rate, p.TotalDuration())
		}
		return nil
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *selfTest {
		if *prof != "" || len(routes) > 0 {
			return usageErr("-self-test runs its own server and profile; drop -profile/-route")
		}
		return benchSelfTest(ctx, *rate, *duration, *conns)
	}

	var p *profile.Profile
	switch {
	case *prof != "" && len(routes) > 0:
		return usageErr("use either -profile or -route, not both")
	case *prof != "":
		var err error
		if p, err = profile.Load(*prof); err != nil {
			return err
		}
		if *duration > 0 {
			p = p.ScaleTo(*duration)
		}
		if *rate > 0 {
			p.Rate = *rate
		}
	case len(routes) > 0:
		r := *rate
		if r == 0 {
			r = 1000
		}
		d := *duration
		if d == 0 {
			d = 10 * time.Second
		}
		p = profile.Adhoc("", r, d, routes...)
	default:
		return usageErr("say what to send: -profile NAME|FILE (built-in: %s) or -route NAME=PATH (see -h)", strings.Join(profile.BuiltinNames(), ", "))
	}
	if *target != "" {
		p.Target = *target
	}
	if p.Target == "" {
		p.Target = loadgen.DefaultTarget
	}
	if *timeout > 0 {
		p.Timeout = *timeout
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("profile %s:\n%v", p.Name, err)
	}
	if *printProf {
		out, err := p.Marshal()
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	}
	// Refuse unwritable outputs before spending a minute on the run.
	for _, f := range []string{*htmlOut, *jsonOut} {
		if f != "" && f != "-" {
			if err := checkWritable(f); err != nil {
				return err
			}
		}
	}

	sched := loadgen.NewSchedule(p.Stages, p.Rate)
	fmt.Fprintf(os.Stderr, "floodgate bench: %s -> %s: %d requests over %v (plan %v/s, peak %.0f/s), %d conns\n",
		p.Name, p.Target, sched.Count(), sched.Duration(), p.Rate, sched.PeakRate(), *conns)
	opts := loadgen.Options{Conns: *conns, Workers: *workers, LateThreshold: *lateAfter,
		MaxRequests: *maxReq, MaxTime: *maxTime, Seed: *seed}
	if !*quiet {
		opts.Progress = progressPrinter(os.Stderr)
	}
	res, err := loadgen.Run(ctx, p, opts)
	if err != nil {
		return err
	}

	var table io.Writer = os.Stdout
	if *jsonOut == "-" {
		table = os.Stderr
	}
	if err := report.WriteText(table, res); err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := writeOut(*jsonOut, func(w io.Writer) error { return report.WriteJSON(w, res) }); err != nil {
			return err
		}
		if *jsonOut != "-" {
			fmt.Fprintf(os.Stderr, "summary written to %s\n", *jsonOut)
		}
	}
	if *htmlOut != "" {
		if err := writeOut(*htmlOut, func(w io.Writer) error { return report.WriteHTML(w, res) }); err != nil {
			return err
		}
		abs, _ := filepath.Abs(*htmlOut)
		fmt.Fprintf(os.Stderr, "report written to %s\n", abs)
	}
	if res.StopReason == loadgen.StopCancelled {
		return exitError{code: 130, msg: "interrupted; the summary above covers what was sent"}
	}
	return benchThresholds(report.NewSummary(res), *maxErrors, *maxLate)
}

// benchThresholds turns -max-errors and -max-late into the exit status, for scripts.
func benchThresholds(s *report.Summary, maxErrors, maxLate float64) error {
	var msgs []string
	if s.Sent > 0 && maxErrors >= 0 {
		bad := s.Totals[loadgen.ClassError.String()] + s.Totals[loadgen.ClassClient.String()]
		if share := float64(bad) / float64(s.Sent); share > maxErrors {
			msgs = append(msgs, fmt.Sprintf("%d of %d requests (%.2f%%) got no answer or an unexplained 5xx, more than -max-errors %.2f%%", bad, s.Sent, 100*share, 100*maxErrors))
		}
	}
	if s.Sent > 0 && maxLate >= 0 {
		if share := float64(s.Late) / float64(s.Sent); share > maxLate {
			msgs = append(msgs, fmt.Sprintf("%d of %d sends (%.2f%%) started late, more than -max-late %.2f%%", s.Late, s.Sent, 100*share, 100*maxLate))
		}
	}
	if len(msgs) > 0 {
		return exitError{code: 1, msg: strings.Join(msgs, "; ")}
	}
	return nil
}

func benchSelfTest(ctx context.Context, start float64, step time.Duration, conns int) error {
	fmt.Fprintf(os.Stderr, "self-test: doubling the rate against an in-process fasthttp server on 127.0.0.1 until the generator falls behind\n")
	res, err := loadgen.SelfTest(ctx, loadgen.SelfTestOptions{StartRate: start, Step: step, Conns: conns,
		Progress: func(s loadgen.SelfTestStep) {
			verdict := "ok"
			if !s.OK {
				verdict = "BEHIND"
			}
			fmt.Fprintf(os.Stderr, "  %9.0f/s offered  %9.0f/s answered  late %5.1f%%  lag p99 %-8s latency p99 %-8s failed %d  %s\n",
				s.Rate, s.Achieved, 100*s.Late, report.FormatUS(s.LagP99.Microseconds()), report.FormatUS(s.P99.Microseconds()), s.Failed, verdict)
		}})
	if err != nil {
		return err
	}
	fmt.Printf("generator ceiling: %.0f requests/s on %d CPUs (server in the same process; a remote target leaves the generator more CPU)\n",
		res.MaxRate, res.CPUs)
	return nil
}

// checkWritable fails early if the file's directory does not exist.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("cannot write %s: %s is not a directory", path, dir)
	}
	return nil
}

// writeOut writes a file through a temporary name so a failed write leaves no half file;
// "-" is stdout.
func writeOut(path string, write func(io.Writer) error) error {
	if path == "-" {
		return write(os.Stdout)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

var _ flag.Value = (*routeFlags)(nil)

// progressPrinter returns bench's progress callback: on a terminal one line rewritten in
// place (carriage return, clear to the end of the line), the final line kept; else (a
// pipe, a log file) one line per report.
func progressPrinter(f *os.File) func(loadgen.Progress) {
	st, err := f.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
	return func(pr loadgen.Progress) {
		line := report.ProgressLine(pr)
		switch {
		case !tty:
			fmt.Fprintln(f, line)
		case pr.Final:
			fmt.Fprintf(f, "\r\x1b[K%s\n", line)
		default:
			fmt.Fprintf(f, "\r\x1b[K%s", line)
		}
	}
}
