package numberpack

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/backend"
	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// startPacks runs the real packs backend over /testdata/packs (vip, new_users) on a
// fresh 127.0.0.1 port and returns it with its address. stop shuts it down (also at
// the end of the test).
func startPacks(t *testing.T, faults backend.Faults) (p *backend.Packs, addr string, stop func()) {
	t.Helper()
	p, err := backend.NewPacks(backend.PacksConfig{Dir: filepath.Join("..", "..", "testdata", "packs"), Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			p.Shutdown()
			<-done
		})
	}
	t.Cleanup(stop)
	return p, ln.Addr().String(), stop
}

func serviceYAML(addr, extra string) string {
	base := ", timeout: 200ms, ttl: 60s, negative_ttl: 10s, stale_ttl: 5m"
	// extra replaces a default (a YAML mapping takes each key once)
	for _, kv := range strings.Split(strings.TrimPrefix(extra, ", "), ", ") {
		if k, _, ok := strings.Cut(kv, ":"); ok {
			if i := strings.Index(base, ", "+k+":"); i >= 0 {
				j := strings.Index(base[i+2:], ", ")
				if j < 0 {
					base = base[:i]
				} else {
					base = base[:i] + base[i+2+j:]
				}
			}
		}
	}
	return "source: service\nservice: {addr: " + addr + base + extra + "}\npacks: {vip: {}, new_users: {}}\n"
}

const sec = int64(time.Second)

func TestServiceReadThrough(t *testing.T) {
	p, addr, _ := startPacks(t, backend.Faults{})
	f := build(t, serviceYAML(addr, "")+"mode: annotate", nil)
	header := func(want string) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, _ filters.Result, r *filters.Request) {
			if got := string(r.Ctx.Request.Header.Peek(DefaultHeader)); got != want {
				t.Errorf("%s = %q, want %q", DefaultHeader, got, want)
			}
		}
	}
	served := func(want uint64) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, _ filters.Result, _ *filters.Request) {
			if got := p.Served(); got != want {
				t.Errorf("backend served %d lookups, want %d", got, want)
			}
		}
	}
	both := func(checks ...func(*testing.T, filters.Result, *filters.Request)) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, res filters.Result, r *filters.Request) {
			for _, c := range checks {
				c(t, res, r)
			}
		}
	}
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "member: looked up", Req: filtertest.Req{URI: "/?uin=10003", Now: 10 * sec}, Check: both(header("new_users,vip"), served(1))},
		{Desc: "member again: cached", Req: filtertest.Req{URI: "/?uin=10003", Now: 20 * sec}, Check: both(header("new_users,vip"), served(1))},
		{Desc: "non-member: looked up", Req: filtertest.Req{URI: "/?uin=42", Now: 20 * sec}, Check: both(header(""), served(2))},
		{Desc: "non-member again: negative cache", Req: filtertest.Req{URI: "/?uin=42", Now: 25 * sec}, Check: served(2)},
		{Desc: "non-member after negative_ttl: looked up again", Req: filtertest.Req{URI: "/?uin=42", Now: 31 * sec}, Check: served(3)},
		{Desc: "member within ttl: cached", Req: filtertest.Req{URI: "/?uin=10003", Now: 69 * sec}, Check: served(3)},
		{Desc: "member after ttl: looked up again", Req: filtertest.Req{URI: "/?uin=10003", Now: 71 * sec}, Check: both(header("new_users,vip"), served(4))},
		{Desc: "leading zeros share the cache entry", Req: filtertest.Req{URI: "/?uin=00010003", Now: 72 * sec}, Check: served(4)},
	})
	if got := value(f.m.svcFetched); got != 4 {
		t.Errorf("fetched %v, want 4", got)
	}
	if got := value(f.m.svcNegHit); got != 1 {
		t.Errorf("negative hits %v, want 1", got)
	}

	req := filtertest.NewRequest(t, filtertest.Req{URI: "/?uin=10001", Now: 100 * sec})
	f.Decide(req)
	// A configuration reload with the same service keeps the cached answers.
	g := build(t, serviceYAML(addr, "")+"mode: require", f)
	if g.svc != f.svc {
		t.Error("same service configuration: cache not reused")
	}
	before := p.Served()
	filtertest.Run(t, g, []filtertest.Case{{Desc: "cached across the reload", Req: filtertest.Req{URI: "/?uin=10001", Now: 101 * sec}}})
	if p.Served() != before {
		t.Error("the reloaded filter asked the backend again")
	}
	if h := build(t, serviceYAML(addr, ", max_inflight: 3"), f); h.svc == f.svc {
		t.Error("changed service configuration: cache reused")
	}
}

func TestServiceDown(t *testing.T) {
	_, addr, stop := startPacks(t, backend.Faults{})
	closed := build(t, serviceYAML(addr, ""), nil)
	open := build(t, serviceYAML(addr, "")+"on_unknown: open", nil)
	filtertest.Run(t, closed, []filtertest.Case{
		{Desc: "member cached while up", Req: filtertest.Req{URI: "/?uin=10001", Now: 10 * sec}},
		{Desc: "non-member cached while up", Req: filtertest.Req{URI: "/?uin=7", Now: 10 * sec}, Want: "number_pack/not_eligible"},
	})
	stop()
	start := time.Now()
	filtertest.Run(t, closed, []filtertest.Case{
		{Desc: "cached member still passes", Req: filtertest.Req{URI: "/?uin=10001", Now: 20 * sec}},
		{Desc: "unknown user, backend down, closed", Req: filtertest.Req{URI: "/?uin=10002", Now: 20 * sec}, Want: "number_pack/unknown"},
		{Desc: "expired member within stale_ttl: stale answer used", Req: filtertest.Req{URI: "/?uin=10001", Now: 200 * sec}},
		{Desc: "expired non-member within stale_ttl: still not eligible", Req: filtertest.Req{URI: "/?uin=7", Now: 200 * sec}, Want: "number_pack/not_eligible"},
		{Desc: "expired beyond stale_ttl: unknown", Req: filtertest.Req{URI: "/?uin=10001", Now: 500 * sec}, Want: "number_pack/unknown"},
	})
	filtertest.Run(t, open, []filtertest.Case{
		{Desc: "unknown user, backend down, open", Req: filtertest.Req{URI: "/?uin=10002", Now: 20 * sec}},
	})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("lookups against a dead backend took %v", d)
	}
	if value(closed.m.svcStale) != 2 || value(closed.m.unknownError) != 2 || value(open.m.unknownError) != 1 {
		t.Errorf("stale %v, unknown{service_error} closed %v open %v; want 2, 2, 1",
			value(closed.m.svcStale), value(closed.m.unknownError), value(open.m.unknownError))
	}
}

func TestServiceTimeout(t *testing.T) {
	_, addr, _ := startPacks(t, backend.Faults{Latency: 3 * time.Second})
	f := build(t, "source: service\nservice: {addr: "+addr+", timeout: 50ms}\npacks: {vip: {}}", nil)
	start := time.Now()
	v, _ := decide(t, f, filtertest.Req{URI: "/?uin=10001"})
	took := time.Since(start)
	if v != "number_pack/unknown" {
		t.Errorf("slow backend: verdict %q, want number_pack/unknown", v)
	}
	if took > 2*time.Second { // well below the backend's 3 s, loose for a loaded machine

		t.Errorf("the request waited %v for a 50ms timeout", took)
	}
	if value(f.m.unknownTimeout) != 1 {
		t.Errorf("unknown{service_timeout} = %v, want 1", value(f.m.unknownTimeout))
	}
}

func TestServiceBusy(t *testing.T) {
	_, addr, _ := startPacks(t, backend.Faults{Latency: 300 * time.Millisecond})
	f := build(t, "source: service\nservice: {addr: "+addr+", timeout: 1s, max_inflight: 1}\npacks: {vip: {}}\non_unknown: closed", nil)
	var wg sync.WaitGroup
	verdicts := make([]string, 2)
	for i := range verdicts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 { // start when the first lookup is in flight
				waitFor(t, "the first lookup", func() bool { return f.svc.inflight.Load() == 1 })
			}
			verdicts[i], _ = decide(t, f, filtertest.Req{URI: "/?uin=1000" + string(rune('1'+i))})
		}()
	}
	wg.Wait()
	if verdicts[0] != "" || verdicts[1] != "number_pack/unknown" {
		t.Errorf("verdicts %q, want the first admitted and the second unknown (busy)", verdicts)
	}
	if value(f.m.unknownBusy) != 1 {
		t.Errorf("unknown{service_busy} = %v, want 1", value(f.m.unknownBusy))
	}
}

// TestFileFallsBackToService: with source file and a service, the service answers
// while the files are not loaded.
func TestFileFallsBackToService(t *testing.T) {
	p, addr, _ := startPacks(t, backend.Faults{})
	release := holdLoads(t)
	f := build(t, bothPacks+"\nservice: {addr: "+addr+"}", nil)
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "member answered by the service while loading", Req: filtertest.Req{URI: "/?uin=30001"}},
		{Desc: "non-member answered by the service while loading", Req: filtertest.Req{URI: "/?uin=30009"}, Want: "number_pack/not_eligible"},
	})
	if p.Served() != 2 {
		t.Errorf("backend served %d, want 2", p.Served())
	}
	release()
	waitLoaded(t, f)
	filtertest.Run(t, f, []filtertest.Case{{Desc: "loaded: answered from the file", Req: filtertest.Req{URI: "/?uin=20001"}}})
	if p.Served() != 2 {
		t.Errorf("backend asked after the load (served %d)", p.Served())
	}
}

func TestParseMembership(t *testing.T) {
	names := [][]byte{[]byte("new_users"), []byte("vip")}
	for _, tc := range []struct {
		body string
		mask uint64
		ok   bool
	}{
		{`{"user":"10003","packs":["new_users","vip"]}`, 3, true},
		{`{"user":"10003","packs":[]}` + "\n", 0, true},
		{` { "packs" : [ "vip" , "gold" ] , "user" : "10003" } `, 2, true},
		{`{"user":"10003","packs":["vi\"p"]}`, 0, true},
		{`{"user":"10003","extra":{"a":[1,"]"]},"n":12,"packs":["vip"]}`, 2, true},
		{`{"user":"10004","packs":["vip"]}`, 0, false}, // another user's answer
		{`{"user":"10003"}`, 0, false},
		{`{"packs":["vip"]}`, 0, false},
		{`{"user":"10003","packs":["vip"]`, 0, false},
		{`{"user":"10003" "packs":["vip"]}`, 0, false},
		{`{"error":"busy"}`, 0, false},
		{``, 0, false},
	} {
		mask, ok := parseMembership([]byte(tc.body), []byte("10003"), names)
		if mask != tc.mask || ok != tc.ok {
			t.Errorf("%s: %b, %v; want %b, %v", tc.body, mask, ok, tc.mask, tc.ok)
		}
	}
}
