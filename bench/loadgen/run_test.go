package loadgen

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/bench/profile"
)

// serve starts a fasthttp server on 127.0.0.1:0 and returns its address.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, CloseOnShutdown: true, ReadTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
}

func adhoc(target string, rate float64, d time.Duration, routes ...profile.Route) *profile.Profile {
	return &profile.Profile{Name: "test", Target: target, Routes: routes,
		Stages: []profile.Stage{{Hold: &profile.Hold{Rate: profile.Abs(rate), Duration: d}}}}
}

// Against a server that takes 50 ms per answer, the offered load stays at the target:
// the generator does not wait for answers before sending the next request.
func TestOpenLoopAgainstSlowServer(t *testing.T) {
	var inflight, peak atomic.Int64
	addr := serve(t, func(c *fasthttp.RequestCtx) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		inflight.Add(-1)
	})
	p := adhoc(addr, 200, time.Second, profile.Route{Name: "slow", Path: "/slow"})
	start := time.Now()
	res, err := Run(context.Background(), p, Options{Conns: 64})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 200 || res.Planned != 200 || res.Unsent != 0 {
		t.Fatalf("sent %d of %d planned (unsent %d), want all 200", res.Sent, res.Planned, res.Unsent)
	}
	if got := res.Count("slow", VerdictAdmitted); got != 200 {
		t.Fatalf("admitted %d, want 200; verdicts %+v", got, res.Route("slow").Verdicts)
	}
	// A closed loop with one client would have sent 20 in that second; open loop keeps ~10 in flight.
	if pk := peak.Load(); pk < 8 {
		t.Fatalf("peak concurrency at the server %d, want about 10 (200/s x 50 ms)", pk)
	}
	h := res.Route("slow").Latency(ClassAdmitted)
	if p50 := h.ValueAtQuantile(50); p50 < 50_000 || p50 > 1_000_000 {
		t.Fatalf("p50 latency %d µs, want the server's 50 ms plus a little", p50)
	}
	// (Whether the generator kept its schedule depends on how busy the machine is; the
	// warning path is tested below with a pool that is too small by construction.)
	if el := time.Since(start); el > 30*time.Second { // a 1 s schedule; loose for a loaded machine
		t.Fatalf("run took %v", el)
	}
}

// With only 2 workers against a 50 ms server (capacity 40/s), a 100/s schedule still
// sends all its requests; the time they waited counts in the latency (measured from the
// intended send time), and the result says loudly that the generator was the limit.
func TestLatencyIncludesQueueingFromIntendedTime(t *testing.T) {
	addr := serve(t, func(c *fasthttp.RequestCtx) { time.Sleep(50 * time.Millisecond) })
	p := adhoc(addr, 100, 500*time.Millisecond, profile.Route{Name: "slow", Path: "/"})
	res, err := Run(context.Background(), p, Options{Conns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 50 || res.Count("slow", VerdictAdmitted) != 50 {
		t.Fatalf("sent %d admitted %d, want 50 and 50", res.Sent, res.Count("slow", VerdictAdmitted))
	}
	// 50 requests through 2 workers take 25 x 50 ms = 1.25 s; the last was intended at
	// ~0.5 s, so it waited ~0.75 s before its 50 ms of service.
	mx := res.Route("slow").Latency(ClassAdmitted).Max()
	if mx < 600_000 {
		t.Fatalf("max latency %d µs: queueing behind busy workers was not counted (want >= 600 ms)", mx)
	}
	if !res.GeneratorLimited() || res.Stalled == 0 || res.Late == 0 {
		t.Fatalf("limited=%v stalled=%d late=%d, want the generator reported as the limit", res.GeneratorLimited(), res.Stalled, res.Late)
	}
	w := strings.Join(res.Warnings(), "\n")
	if !strings.Contains(w, "generator could not keep the target rate") || !strings.Contains(w, "% late") {
		t.Fatalf("warnings do not say it: %q", w)
	}
}

func TestVerdictsRoutesUsersAndTags(t *testing.T) {
	var mu sync.Mutex
	uins := map[string]int{}
	tags := map[string]int{}
	var cookies, posts atomic.Int64
	grantIDs := map[string]bool{}
	var badGrants atomic.Int64
	addr := serve(t, func(c *fasthttp.RequestCtx) {
		mu.Lock()
		uins[string(c.QueryArgs().Peek("uin"))]++
		tags[string(c.Request.Header.Peek("X-Adtag"))]++
		mu.Unlock()
		switch string(c.Path()) {
		case "/ok":
		case "/limited":
			c.Response.Header.Set(VerdictHeader, "token_bucket/limited")
			c.SetStatusCode(429)
		case "/fail":
			c.SetStatusCode(503)
		case "/grant":
			if string(c.Method()) == "POST" && string(c.PostBody()) == `{"x":1}` && string(c.Request.Header.Cookie("sess")) == "abc" {
				posts.Add(1)
			}
			id := string(c.Request.Header.Peek("X-Grant-Id"))
			mu.Lock()
			if id == "" || grantIDs[id] || string(c.QueryArgs().Peek("user")) != string(c.QueryArgs().Peek("uin")) {
				badGrants.Add(1)
			}
			grantIDs[id] = true
			mu.Unlock()
			if len(c.Request.Header.Cookie("sess")) > 0 {
				cookies.Add(1)
			}
		default:
			c.SetStatusCode(404)
		}
	})
	p := &profile.Profile{Name: "mix", Target: "http://" + addr,
		Users: &profile.Users{Size: 10, First: 1000, Param: profile.Param{Query: "uin"}},
		Tags:  &profile.Tags{Param: profile.Param{Header: "X-Adtag"}, Shares: map[string]float64{"wechat": 0.5, "qzone": 0.3}},
		Routes: []profile.Route{
			{Name: "ok", Path: "/ok", Weight: 4},
			{Name: "limited", Path: "/limited", Weight: 2},
			{Name: "fail", Path: "/fail", Weight: 1},
			{Name: "missing", Path: "/missing?x=1", Weight: 1},
			{Name: "grant", Method: "POST", Path: "/grant", Weight: 2, Body: `{"x":1}`, Headers: map[string]string{"Cookie": "sess=abc"},
				ExtraUserParam: &profile.Param{Query: "user"}, IDParam: &profile.Param{Header: "X-Grant-Id"}},
		},
		Stages: []profile.Stage{{Hold: &profile.Hold{Rate: profile.Abs(1000), Duration: time.Second}}}}
	var progress atomic.Int64
	res, err := Run(context.Background(), p, Options{Conns: 16, Seed: 1, Progress: func(Progress) { progress.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]int64{
		{"ok", "admitted"}: 400, {"limited", "token_bucket/limited"}: 200, {"fail", "error"}: 100,
		{"missing", "http/404"}: 100, {"grant", "admitted"}: 200,
	}
	for k, n := range want {
		if got := res.Count(k[0], k[1]); got != n {
			t.Errorf("%s %s: %d, want %d", k[0], k[1], got, n)
		}
	}
	if got := res.ClassCount("", ClassShed); got != 200 {
		t.Errorf("shed %d, want 200", got)
	}
	if v := res.Route("limited").Verdict("token_bucket/limited"); v == nil || v.Statuses[429] != 200 {
		t.Errorf("limited statuses: %+v", v)
	}
	if badGrants.Load() != 0 {
		t.Errorf("%d grants without a unique id or with user != uin", badGrants.Load())
	}
	if posts.Load() != 200 {
		t.Errorf("%d POST /grant with body and cookie, want 200", posts.Load())
	}
	if res.Completed != 1000 || res.Sent != 1000 {
		t.Errorf("completed %d sent %d, want 1000", res.Completed, res.Sent)
	}
	w := strings.Join(res.Warnings(), "\n")
	if !strings.Contains(w, "100 unexplained errors") || !strings.Contains(w, "fail: 100") {
		t.Errorf("5xx without a verdict must stand out; warnings: %q", w)
	}
	mu.Lock()
	defer mu.Unlock()
	for u := range uins {
		if u < "1000" || u > "1009" || len(u) != 4 {
			t.Errorf("user %q outside 1000..1009", u)
		}
	}
	if len(uins) != 10 {
		t.Errorf("%d distinct users, want all 10 of a uniform population", len(uins))
	}
	// wechat 0.5, qzone 0.3, no tag 0.2
	if tags["wechat"] < 420 || tags["wechat"] > 580 || tags["qzone"] < 230 || tags["qzone"] > 370 || tags[""] < 140 || tags[""] > 260 {
		t.Errorf("tag split %v, want about 500/300/200", tags)
	}
	if progress.Load() < 1 {
		t.Errorf("progress never reported")
	}
	// every send is in the timeline (how many fall in its first second depends on how
	// busy the machine is: not checked)
	inTimeline := int64(0)
	for _, s := range res.Timeline {
		inTimeline += s.Sent
	}
	if len(res.Timeline) < 1 || inTimeline != res.Sent {
		t.Errorf("timeline holds %d sends, the run sent %d: %+v", inTimeline, res.Sent, res.Timeline)
	}
}

func TestClientErrorsAndZipf(t *testing.T) {
	// A port nobody listens on: every request is client/refused, quickly.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := adhoc(addr, 200, 250*time.Millisecond, profile.Route{Name: "r", Path: "/"})
	p.Users = &profile.Users{Size: 1000, Distribution: "zipf", Param: profile.Param{Cookie: "uin"}}
	res, err := Run(context.Background(), p, Options{Conns: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Count("r", ClientRefused); got != 50 {
		t.Fatalf("refused %d, want 50; verdicts: %+v", got, res.Route("r").Verdicts)
	}
	if w := strings.Join(res.Warnings(), "\n"); !strings.Contains(w, "50 requests got no answer (client/refused: 50)") {
		t.Fatalf("warnings %q", w)
	}
}

func TestHardStopAndCancel(t *testing.T) {
	addr := serve(t, func(c *fasthttp.RequestCtx) { time.Sleep(200 * time.Millisecond) })
	p := adhoc(addr, 100, 10*time.Second, profile.Route{Name: "r", Path: "/"})
	start := time.Now()
	res, err := Run(context.Background(), p, Options{Conns: 1, MaxTime: 500 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second { // well below the 10 s schedule
		t.Fatalf("hard stop at 500 ms took %v", el)
	}
	if res.StopReason != StopMaxTime || res.Unsent == 0 || !res.GeneratorLimited() {
		t.Fatalf("stop %q unsent %d limited %v", res.StopReason, res.Unsent, res.GeneratorLimited())
	}
	if res.Sent != res.Completed {
		t.Fatalf("sent %d but completed %d", res.Sent, res.Completed)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err = Run(ctx, p, Options{Conns: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopCancelled {
		t.Fatalf("stop reason %q, want cancelled", res.StopReason)
	}

	res, err = Run(context.Background(), adhoc(addr, 1000, 10*time.Second, profile.Route{Name: "r", Path: "/"}), Options{Conns: 64, MaxRequests: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 20 || res.StopReason != StopMaxRequests {
		t.Fatalf("sent %d (%s), want 20 (max requests)", res.Sent, res.StopReason)
	}
}

func TestBadOptions(t *testing.T) {
	p := adhoc("127.0.0.1:1", 10, time.Second, profile.Route{Name: "r", Path: "/"})
	for _, o := range []Options{{Conns: -1}, {Workers: MaxConns + 1}, {Timeout: -time.Second}, {Rate: -1}, {Target: "ftp://x"}} {
		if _, err := Run(context.Background(), p, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	rel := &profile.Profile{Routes: p.Routes, Stages: []profile.Stage{{Hold: &profile.Hold{Rate: profile.Rel(1), Duration: time.Second}}}}
	if _, err := Run(context.Background(), rel, Options{}); err == nil || !strings.Contains(err.Error(), "plan rate") {
		t.Errorf("relative rate without a plan rate: %v", err)
	}
}

// The per-request work of a worker allocates nothing once warm.
func TestHotPathAllocations(t *testing.T) {
	p := &profile.Profile{Name: "a", Target: "127.0.0.1:1", Rate: 100,
		Users: &profile.Users{Size: 1000000, Distribution: "zipf", Param: profile.Param{Query: "uin"}},
		Tags:  &profile.Tags{Param: profile.Param{Query: "adtag"}, Shares: map[string]float64{"wechat": 0.5, "qzone": 0.5}},
		Routes: []profile.Route{{Name: "g", Method: "POST", Path: "/grant", Body: "{}", Headers: map[string]string{"Content-Type": "application/json"},
			ExtraUserParam: &profile.Param{Cookie: "user"}, IDParam: &profile.Param{Header: "X-Grant-Id"}}},
		Stages: []profile.Stage{{Hold: &profile.Hold{Rate: profile.Rel(1), Duration: time.Second}}}}
	g, err := newGenerator(p, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	g.idPrefix = []byte("fgtest-")
	w := g.newWorker(0)
	hdr := []byte("token_bucket/limited")
	for i := 0; i < 10; i++ {
		w.build(0, int64(i))
		wireSize(w.req, w.resp)
		w.sh.record(0, 10, 100, false, 429, hdr, nil, 100, 50)
		w.sh.record(0, 10, 100, false, 200, nil, nil, 100, 50)
	}
	seq := int64(10)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		w.build(0, seq)
		wireSize(w.req, w.resp)
		w.sh.record(0, 10, 100, false, 429, hdr, nil, 100, 50)
		w.sh.record(0, 10, 100, false, 200, nil, nil, 100, 50)
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per request", allocs)
	}
}

// Each route's mean request and answer size on the wire (head and body) is measured, for
// the planner's bandwidth rows (plan -drill).
func TestWireSizes(t *testing.T) {
	addr := serve(t, func(c *fasthttp.RequestCtx) {
		switch string(c.Path()) {
		case "/a":
			c.SetBody(make([]byte, 1000))
		case "/b":
			c.SetBody(make([]byte, 9000))
		}
	})
	small, large := strings.Repeat("x", 300), strings.Repeat("y", 700)
	p := adhoc(addr, 200, time.Second,
		profile.Route{Name: "small", Method: "POST", Path: "/a", Body: small},
		profile.Route{Name: "large", Method: "POST", Path: "/b", Body: large})
	res, err := Run(context.Background(), p, Options{Conns: 8})
	if err != nil {
		t.Fatal(err)
	}
	s, l := res.Route("small"), res.Route("large")
	// Same heads but for the bodies' lengths (same number of digits): the differences are
	// the bodies' exactly.
	if d := l.RequestBytes - s.RequestBytes; d != 400 {
		t.Errorf("request sizes %.1f and %.1f differ by %.1f, want the bodies' 400", s.RequestBytes, l.RequestBytes, d)
	}
	if d := l.ResponseBytes - s.ResponseBytes; d != 8000 {
		t.Errorf("answer sizes %.1f and %.1f differ by %.1f, want the bodies' 8000", s.ResponseBytes, l.ResponseBytes, d)
	}
	// A head is a few dozen bytes: "POST /a HTTP/1.1", Host, Content-Length, ...
	if s.RequestBytes < 300+40 || s.RequestBytes > 300+400 || s.ResponseBytes < 1000+40 || s.ResponseBytes > 1000+400 {
		t.Errorf("sizes %.1f / %.1f: want the body plus a head of 40-400 bytes", s.RequestBytes, s.ResponseBytes)
	}
}
