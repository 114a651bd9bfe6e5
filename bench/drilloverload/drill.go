// Command drilloverload is `make drill-overload`: the backend-slowdown drill of issue 9,
// run twice in one go - with static limits only, then with adaptive overload protection -
// against real processes: a query backend with a fixed pool of workers, a floodgate
// gateway, and `floodgate bench` as the open-loop load.
//
// Each mode offers the same load in three phases, one `floodgate bench` run each: healthy
// (the backend answers in -latency), slow (SIGUSR1: the backend's latency is raised
// tenfold to -slow-latency), recovered (SIGUSR2: back to -latency). The offered rate is
// twice what the slowed backend can carry. It prints one line per mode and the ratio:
//
//	overload: static core_success=<pct> core_p99_ms=<x> noncore_admitted=<pct> recovery_s=<x>
//	overload: adaptive ...
//	ratio core-success adaptive/static = <x.xx>
//
// core_success: the share of the core route's requests during the slow phase that the
// backend answered (2xx through the gateway); core_p99_ms: the p99 latency of those
// answers, from the intended send time; noncore_admitted: the share of the non-core
// routes' requests during the slow phase that reached the backend; recovery_s: seconds
// from the latency switching back until the first second from which every second has
// non-core and core admitted >= 90% of what was sent in that second ("inf": not within the
// recovered phase).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options of one drill.
type options struct {
	bin                  string        // the floodgate binary
	healthy, slow, after time.Duration // phase lengths
	rate                 float64       // offered requests/s
	workers              int           // backend workers
	latency, slowLatency time.Duration
	maxConns             int // the pool's static connection budget
	dir                  string
	log                  io.Writer // progress and process output on failure
}

func defaultOptions() options {
	return options{healthy: 8 * time.Second, slow: 20 * time.Second, after: 12 * time.Second, rate: 800, workers: 40,
		latency: 10 * time.Millisecond, slowLatency: 100 * time.Millisecond, maxConns: 128, log: os.Stderr}
}

// modeResult is one mode's figures.
type modeResult struct {
	mode            string
	coreSuccess     float64 // share, slow phase
	coreP99ms       float64
	noncoreAdmitted float64 // share, slow phase
	recoveryS       float64 // -1: did not recover within the phase
	coreShedSlow    int64   // core requests shed (overload/shed) in the slow phase
	verdicts        map[string]int64
}

func (m modeResult) line() string {
	rec := fmt.Sprintf("%.1f", m.recoveryS)
	if m.recoveryS < 0 {
		rec = "inf" // not recovered within the recovered phase (a float to any parser)
	}
	return fmt.Sprintf("overload: %s core_success=%.1f%% core_p99_ms=%.0f noncore_admitted=%.1f%% recovery_s=%s",
		m.mode, 100*m.coreSuccess, m.coreP99ms, 100*m.noncoreAdmitted, rec)
}

// ratioLine is the drill's last line.
func ratioLine(static, adaptive modeResult) string {
	return fmt.Sprintf("ratio core-success adaptive/static = %.2f", adaptive.coreSuccess/static.coreSuccess)
}

const gatewayConfig = `
server: {listen: "%s"}
admin: {listen: "%s"}
pools:
  query:
    addrs: ["%s"]
    max_conns: %d
    eject: {failures: 0}   # one server: ejecting it would be a full outage in both modes
    adaptive: {enabled: %v, min_limit: 4, user_key: "query:uin", user_window: 10s}
routes:
  lottery: {path: /lottery, pool: query, core: true, timeout: 2s}
  info:    {path: /info, pool: query, timeout: 500ms, fallback: {status: 200, body: '{"ok":true,"info":"basic","degraded":true}'}}
  report:  {path: /report, pool: query, priority: 1, timeout: 500ms, fallback: {status: 204, body: ""}}
`

// profile: a quarter core (lottery), three quarters non-core, uniform users.
const profileYAML = `
name: drill-overload
rate: %g
timeout: 3s
users: {size: 100000, first: 10001, distribution: uniform, param: {query: uin}}
routes:
  - {name: lottery, path: /lottery, weight: 25}
  - {name: info, path: /info, weight: 50}
  - {name: report, path: /report, weight: 25}
stages:
  - hold: {rate: 1x, duration: %s}
`

var coreRoutes = map[string]bool{"lottery": true}

// run runs both modes and returns their results.
func run(ctx context.Context, o options) ([]modeResult, error) {
	var out []modeResult
	for _, adaptive := range []bool{false, true} {
		mode := "static"
		if adaptive {
			mode = "adaptive"
		}
		fmt.Fprintf(o.log, "drill-overload: %s: healthy %s, slow %s (latency %s -> %s, %d workers), recovered %s, %g req/s\n",
			mode, o.healthy, o.slow, o.latency, o.slowLatency, o.workers, o.after, o.rate)
		r, err := runMode(ctx, o, mode, adaptive)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		fmt.Fprintf(o.log, "drill-overload: %s: slow-phase verdicts %v\n", mode, r.verdicts)
		out = append(out, r)
	}
	return out, nil
}

func runMode(ctx context.Context, o options, mode string, adaptive bool) (modeResult, error) {
	res := modeResult{mode: mode}
	dir := filepath.Join(o.dir, mode)
	os.RemoveAll(dir) // the last run's logs and summaries
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	backendAddr, gwAddr, adminAddr := freeAddr(), freeAddr(), freeAddr()
	backend, err := start(ctx, o.bin, filepath.Join(dir, "backend.log"), "backend", "-kind", "query", "-listen", backendAddr,
		"-latency", o.latency.String(), "-slow-latency", o.slowLatency.String(), "-workers", fmt.Sprint(o.workers), "-log-level", "warn")
	if err != nil {
		return res, err
	}
	defer backend.stop()
	if err := waitHTTP(ctx, "http://"+backendAddr+"/healthz", backend); err != nil {
		return res, err
	}
	cfgPath := filepath.Join(dir, "gateway.yaml")
	cfg := fmt.Sprintf(gatewayConfig, gwAddr, adminAddr, backendAddr, o.maxConns, adaptive)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return res, err
	}
	gw, err := start(ctx, o.bin, filepath.Join(dir, "gateway.log"), "gateway", "-config", cfgPath, "-log-format", "json", "-log-level", "warn")
	if err != nil {
		return res, err
	}
	defer gw.stop()
	if err := waitHTTP(ctx, "http://"+adminAddr+"/readyz", gw); err != nil {
		return res, err
	}

	// the gateway's view, every 500 ms, to overload.log
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watch(adminAddr, filepath.Join(dir, "overload.log"), stopWatch)
	}()
	defer func() { close(stopWatch); <-watched }()
	mark := func(what string) {
		appendLine(filepath.Join(dir, "overload.log"), time.Now().Format("15:04:05.0")+" --- "+what)
	}

	phase := func(name string, d time.Duration) (*summary, error) {
		mark(name + " phase starts")
		prof := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(prof, []byte(fmt.Sprintf(profileYAML, o.rate, d)), 0o644); err != nil {
			return nil, err
		}
		out := filepath.Join(dir, name+".json")
		b, err := exec.CommandContext(ctx, o.bin, "bench", "-profile", prof, "-target", gwAddr, "-json", out, "-quiet",
			"-seed", "9", "-conns", "512").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("floodgate bench (%s phase): %v\n%s", name, err, b)
		}
		return readSummary(out)
	}
	if _, err := phase("healthy", o.healthy); err != nil {
		return res, err
	}
	if err := backend.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return res, err
	}
	slow, err := phase("slow", o.slow)
	if err != nil {
		return res, err
	}
	if err := backend.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return res, err
	}
	after, err := phase("recovered", o.after)
	if err != nil {
		return res, err
	}
	if b, err := httpGet("http://" + adminAddr + "/overload"); err == nil {
		os.WriteFile(filepath.Join(dir, "overload.json"), b, 0o644)
	}

	var coreSent, coreOK, ncSent, ncOK int64
	res.verdicts = map[string]int64{}
	for _, r := range slow.Routes {
		ok := r.Totals["admitted"]
		for _, v := range r.Verdicts {
			res.verdicts[r.Name+" "+v.Verdict] += v.Count
			if coreRoutes[r.Name] && v.Verdict == "overload/shed" {
				res.coreShedSlow += v.Count
			}
		}
		if coreRoutes[r.Name] {
			coreSent += r.Sent
			coreOK += ok
			for _, v := range r.Verdicts {
				if v.Class == "admitted" {
					res.coreP99ms = max(res.coreP99ms, float64(v.Latency.P99)/1000)
				}
			}
		} else {
			ncSent += r.Sent
			ncOK += ok
		}
	}
	res.coreSuccess = ratio(coreOK, coreSent)
	res.noncoreAdmitted = ratio(ncOK, ncSent)
	res.recoveryS = recovery(after)
	return res, nil
}

// recovery is the time (s) from the start of the recovered phase to the first second
// from which every second has non-core admitted >= 90% and core admitted >= 90%, or -1.
// (Per second, answers are counted in the second they complete and requests in the second
// they are sent, so a healthy second reads 97-103%: 90% is the bar that this jitter
// never fails.)
func recovery(s *summary) float64 {
	admitted := -1
	for i, c := range s.Classes {
		if c == "admitted" {
			admitted = i
		}
	}
	if admitted < 0 {
		return -1
	}
	rec := -1.0
	prev := 0.0
	for _, sec := range s.Timeline {
		var cs, ca, ns, na int64
		for i, r := range sec.Routes {
			if i >= len(s.Routes) {
				break
			}
			if coreRoutes[s.Routes[i].Name] {
				cs, ca = cs+r.Sent, ca+r.Done[admitted]
			} else {
				ns, na = ns+r.Sent, na+r.Done[admitted]
			}
		}
		good := ratio(ca, cs) >= 0.90 && ratio(na, ns) >= 0.90
		switch {
		case !good:
			rec = -1
		case rec < 0:
			rec = prev
		}
		prev = sec.At
	}
	return rec
}

// watch appends the gateway's overload view of the pool to path every 500 ms until stop.
func watch(adminAddr, path string, stop <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		b, err := httpGet("http://" + adminAddr + "/overload")
		if err != nil {
			continue
		}
		var v struct {
			Pools []struct {
				Pool       string  `json:"pool"`
				Enabled    bool    `json:"enabled"`
				Limit      int64   `json:"limit"`
				InFlight   int64   `json:"in_flight"`
				Peak       int64   `json:"peak_in_flight_last_window"`
				Level      int     `json:"level"`
				Parts      [3]int  `json:"level_parts"`
				BaselineMs float64 `json:"baseline_ms"`
				LatencyMs  float64 `json:"latency_ms"`
				ShedLevel  uint64  `json:"shed_level"`
				ShedLimit  uint64  `json:"shed_limit"`
			} `json:"pools"`
		}
		if json.Unmarshal(b, &v) != nil {
			continue
		}
		for _, p := range v.Pools {
			appendLine(path, fmt.Sprintf("%s pool=%s on=%v limit=%d in_flight=%d peak=%d level=%d (priority %d tier %d user %d) baseline_ms=%.1f latency_ms=%.1f shed_level=%d shed_limit=%d",
				time.Now().Format("15:04:05.0"), p.Pool, p.Enabled, p.Limit, p.InFlight, p.Peak, p.Level, p.Parts[0], p.Parts[1], p.Parts[2],
				p.BaselineMs, p.LatencyMs, p.ShedLevel, p.ShedLimit))
		}
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintln(f, line)
	f.Close()
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// summary is the part of `floodgate bench -json` the drill reads.
type summary struct {
	Routes []struct {
		Name     string           `json:"name"`
		Sent     int64            `json:"sent"`
		Totals   map[string]int64 `json:"totals"`
		Verdicts []struct {
			Verdict string `json:"verdict"`
			Class   string `json:"class"`
			Count   int64  `json:"count"`
			Latency struct {
				P99 int64 `json:"p99"`
			} `json:"latency_us"`
		} `json:"verdicts"`
	} `json:"routes"`
	Warnings []string `json:"warnings"`
	Classes  []string `json:"classes"`
	Timeline []struct {
		At     float64 `json:"t"`
		Routes []struct {
			Sent int64   `json:"sent"`
			Done []int64 `json:"done"`
		} `json:"routes"`
	} `json:"timeline"`
}

func readSummary(path string) (*summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// proc is a process the drill started; stop ends it (SIGTERM, then SIGKILL).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func start(ctx context.Context, bin, logPath string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func waitHTTP(ctx context.Context, url string, p *proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			b, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s exited:\n%s", strings.Join(p.cmd.Args, " "), b)
		}
		if _, err := httpGet(url); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer within 30s", url)
}

func httpGet(url string) ([]byte, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b, err
}

func freeAddr() string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func main() {
	o := defaultOptions()
	flag.StringVar(&o.bin, "bin", "bin/floodgate", "the floodgate binary")
	flag.StringVar(&o.dir, "dir", "bin/drill-overload", "where to keep configurations, logs and bench summaries")
	flag.DurationVar(&o.healthy, "healthy", o.healthy, "healthy phase")
	flag.DurationVar(&o.slow, "slow", o.slow, "slow phase (backend latency x10)")
	flag.DurationVar(&o.after, "recovered", o.after, "recovered phase")
	flag.Float64Var(&o.rate, "rate", o.rate, "offered requests/s (2x the slowed backend's capacity by default)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rs, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drill-overload:", err)
		os.Exit(1)
	}
	for _, r := range rs {
		fmt.Println(r.line())
	}
	if rs[0].coreSuccess == 0 {
		fmt.Fprintln(os.Stderr, "drill-overload: static mode admitted no core request; no ratio")
		os.Exit(1)
	}
	fmt.Println(ratioLine(rs[0], rs[1]))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		os.Exit(1)
	}
}
