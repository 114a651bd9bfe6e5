package numberpack

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// The small packs of /testdata/packs: vip = 10001-10005, 20001; new_users (gzip) =
// 10003, 30001-30005.
var (
	vipFile      = filepath.Join("..", "..", "testdata", "packs", "vip.txt")
	newUsersFile = filepath.Join("..", "..", "testdata", "packs", "new_users.txt.gz")
	bothPacks    = `packs: {vip: {file: ` + yamlQuote(vipFile) + `}, new_users: {file: ` + yamlQuote(newUsersFile) + `}}`
)

func TestRequire(t *testing.T) {
	f := build(t, "mode: require\n"+bothPacks, nil)
	waitLoaded(t, f)
	noForgery := func(t *testing.T, _ filters.Result, r *filters.Request) {
		if v := r.Ctx.Request.Header.Peek(DefaultHeader); v != nil {
			t.Errorf("client-supplied %s survived: %q", DefaultHeader, v)
		}
	}
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "vip member passes", Req: filtertest.Req{URI: "/grant?uin=10001"}},
		{Desc: "member of a gzip pack passes", Req: filtertest.Req{URI: "/grant?uin=30005"}},
		{Desc: "member of both passes", Req: filtertest.Req{URI: "/grant?uin=10003"}},
		{Desc: "non-member is rejected with 403", Req: filtertest.Req{URI: "/grant?uin=10006"}, Want: "number_pack/not_eligible", WantStatus: 403},
		{Desc: "leading zeros name the same user", Req: filtertest.Req{URI: "/grant?uin=0010002"}},
		{Desc: "no user number is not a member", Req: filtertest.Req{URI: "/grant"}, Want: "number_pack/not_eligible"},
		{Desc: "non-numeric key is a bad key", Req: filtertest.Req{URI: "/grant?uin=10001x"}, Want: "number_pack/bad_key", WantStatus: 400},
		{Desc: "a plus sign names the same user (filters.KeyNumber)", Req: filtertest.Req{URI: "/grant?uin=%2B10001"}},
		{Desc: "the user number given twice is a bad key", Req: filtertest.Req{URI: "/grant?uin=10001&uin=99999"}, Want: "number_pack/bad_key", WantStatus: 400},
		{Desc: "number beyond uint64 is a bad key", Req: filtertest.Req{URI: "/grant?uin=184467440737095516150"}, Want: "number_pack/bad_key"},
		{Desc: "reserved MaxUint64 is not a member", Req: filtertest.Req{URI: "/grant?uin=18446744073709551615"}, Want: "number_pack/not_eligible"},
		{Desc: "forged header is stripped in require mode too", Req: filtertest.Req{URI: "/grant?uin=10001", Headers: map[string]string{DefaultHeader: "vip"}}, Check: noForgery},
		{Desc: "a forged header does not make a member", Req: filtertest.Req{URI: "/grant?uin=99", Headers: map[string]string{DefaultHeader: "vip"}}, Want: "number_pack/not_eligible", Check: noForgery},
	})
	if got := value(f.m.member); got < 4 {
		t.Errorf("member counter %v, want >= 4", got)
	}
}

func TestAnnotate(t *testing.T) {
	f := build(t, "mode: annotate\nkey: header:X-Uin\n"+bothPacks, nil)
	waitLoaded(t, f)
	header := func(want string) func(*testing.T, filters.Result, *filters.Request) {
		return func(t *testing.T, _ filters.Result, r *filters.Request) {
			got := r.Ctx.Request.Header.Peek(DefaultHeader)
			if want == "" && got != nil || string(got) != want {
				t.Errorf("%s = %q, want %q", DefaultHeader, got, want)
			}
		}
	}
	uin := func(n string, extra ...string) map[string]string {
		h := map[string]string{"X-Uin": n}
		if len(extra) == 2 {
			h[extra[0]] = extra[1]
		}
		return h
	}
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "vip member", Req: filtertest.Req{Headers: uin("10002")}, Check: header("vip")},
		{Desc: "member of both (packs in name order)", Req: filtertest.Req{Headers: uin("10003")}, Check: header("new_users,vip")},
		{Desc: "new user", Req: filtertest.Req{Headers: uin("30001")}, Check: header("new_users")},
		{Desc: "non-member passes without the header", Req: filtertest.Req{Headers: uin("77")}, Check: header("")},
		{Desc: "forged header of a non-member is removed", Req: filtertest.Req{Headers: uin("77", DefaultHeader, "vip")}, Check: header("")},
		{Desc: "forged header of a member is replaced", Req: filtertest.Req{Headers: uin("30002", "x-floodgate-packs", "vip,gold")}, Check: header("new_users")},
		{Desc: "no key passes without the header", Req: filtertest.Req{Headers: map[string]string{DefaultHeader: "vip"}}, Check: header("")},
	})
}

func TestAnnotateManyPacks(t *testing.T) {
	dir := t.TempDir()
	var packs []string
	for i := 0; i < 12; i++ { // more than the precomputed table holds
		name := "p" + string(rune('a'+i))
		writePack(t, dir, name, []uint64{uint64(1000 + i), 5000}, false)
		packs = append(packs, name+": {file: "+yamlQuote(filepath.Join(dir, name))+"}")
	}
	f := build(t, "mode: annotate\npacks: {"+strings.Join(packs, ", ")+"}", nil)
	waitLoaded(t, f)
	_, r := decide(t, f, filtertest.Req{URI: "/?uin=5000"})
	if got := string(r.Ctx.Request.Header.Peek(DefaultHeader)); got != "pa,pb,pc,pd,pe,pf,pg,ph,pi,pj,pk,pl" {
		t.Errorf("header %q", got)
	}
	_, r = decide(t, f, filtertest.Req{URI: "/?uin=1011"})
	if got := string(r.Ctx.Request.Header.Peek(DefaultHeader)); got != "pl" {
		t.Errorf("header %q, want pl", got)
	}
}

// holdLoads makes every load wait until the returned func is called.
func holdLoads(t *testing.T) (release func()) {
	ch := make(chan struct{})
	h := func() { <-ch }
	testHookLoad.Store(&h)
	var once bool
	release = func() {
		if !once {
			once = true
			testHookLoad.Store(nil)
			close(ch)
		}
	}
	t.Cleanup(release)
	return release
}

func TestUnknownPolicy(t *testing.T) {
	release := holdLoads(t)
	closed := build(t, "mode: require\n"+bothPacks, nil)
	open := build(t, "mode: require\non_unknown: open\n"+bothPacks, nil)
	annotate := build(t, "mode: annotate\n"+bothPacks, nil) // default: open
	filtertest.Run(t, closed, []filtertest.Case{
		{Desc: "closed: unknown while loading is rejected", Req: filtertest.Req{URI: "/?uin=10001"}, Want: "number_pack/unknown", Check: func(t *testing.T, res filters.Result, _ *filters.Request) {
			if res.Reason.Status != 0 {
				t.Errorf("status %d, want 0 (fallback)", res.Reason.Status)
			}
			if res.RetryAfter < 2*time.Second || res.RetryAfter >= 3*time.Second {
				t.Errorf("Retry-After %v, want 2-3s", res.RetryAfter)
			}
		}},
		{Desc: "closed: no key is still not_eligible, not unknown", Req: filtertest.Req{URI: "/"}, Want: "number_pack/not_eligible"},
	})
	filtertest.Run(t, open, []filtertest.Case{{Desc: "open: unknown is admitted", Req: filtertest.Req{URI: "/?uin=10001"}}})
	filtertest.Run(t, annotate, []filtertest.Case{{Desc: "annotate defaults to open", Req: filtertest.Req{URI: "/?uin=10001"}}})
	if got := value(closed.m.unknownNotLoaded); got != 1 {
		t.Errorf("unknown{cause=not_loaded,policy=closed} = %v, want 1", got)
	}
	if got := value(open.m.unknownNotLoaded); got < 1 {
		t.Errorf("unknown{cause=not_loaded,policy=open} = %v, want >= 1", got)
	}
	release()
	waitLoaded(t, closed)
	filtertest.Run(t, closed, []filtertest.Case{
		{Desc: "once loaded, a member passes", Req: filtertest.Req{URI: "/?uin=10001"}},
		{Desc: "once loaded, a non-member is not eligible", Req: filtertest.Req{URI: "/?uin=1"}, Want: "number_pack/not_eligible"},
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ desc, yaml, want string }{
		{"no packs", `mode: require`, `packs: name at least one pack`},
		{"file missing for source file", `packs: {vip: {}}`, `packs.vip.file: source file needs the pack's file`},
		{"bad mode", "mode: deny\npacks: {vip: {file: x}}", `mode: want require or annotate (got deny)`},
		{"bad source", "source: redis\npacks: {vip: {file: x}}", `source: want file or service (got redis)`},
		{"bad on_unknown", "on_unknown: maybe\npacks: {vip: {file: x}}", `on_unknown: want open (admit) or closed (reject) (got maybe)`},
		{"ip key", "key: ip\npacks: {vip: {file: x}}", `key: want where the user number is`},
		{"no key", "key: none\npacks: {vip: {file: x}}", `key: want where the user number is`},
		{"2xx status", "status: 200\npacks: {vip: {file: x}}", `status: want a 4xx or 5xx status (got 200)`},
		{"bad unknown status", "unknown_status: 302\npacks: {vip: {file: x}}", `unknown_status: want a 4xx or 5xx status, or 0`},
		{"hop-by-hop header", "header: Connection\npacks: {vip: {file: x}}", `header: want a header name`},
		{"header with a colon", "header: 'X-A:b'\npacks: {vip: {file: x}}", `header: want a header name`},
		{"bad pack name", `packs: {"vip pack": {file: x}}`, `packs.vip pack: a pack name is letters`},
		{"service without addr", "source: service\npacks: {vip: {}}", `service.addr: source service needs`},
		{"service addr without port", "source: service\nservice: {addr: localhost}\npacks: {vip: {}}", `service.addr: want host:port`},
		{"zero timeout", "service: {timeout: 0s}\npacks: {vip: {file: x}}", `service.timeout: must be > 0`},
		{"zero ttl", "service: {ttl: 0s}\npacks: {vip: {file: x}}", `service.ttl: must be > 0`},
		{"tiny cache", "service: {cache_size: 1KiB}\npacks: {vip: {file: x}}", `service.cache_size: want at least 1MiB`},
		{"fast reload", "reload_every: 10ms\npacks: {vip: {file: x}}", `reload_every: want at least 100ms (e.g. 10s) (got 10ms)`},
		{"packs as a list", `packs: [vip]`, `packs: want a mapping`},
		{"unknown field", "pack: {vip: {file: x}}", `unknown field "pack"`},
		{"unknown pack field", "packs: {vip: {path: x}}", `unknown field "path"`},
		{"bad key kind", "packs: {vip: {file: x, keys: strings}}", `packs.vip.keys: want numeric (user numbers, the default) or string (got strings)`},
		{"string pack from the service", "source: service\nservice: {addr: 127.0.0.1:8083}\npacks: {ids: {keys: string}}", `packs.ids.keys: string packs are loaded from files`},
	} {
		err := filtertest.DecodeErr(t, Name, tc.yaml)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.desc, err, tc.want)
		}
	}
	for _, ok := range []string{
		"packs: {vip: {file: x}}",
		"source: service\nservice: {addr: 127.0.0.1:8083}\npacks: {vip: {}, new_users: {}}",
		"mode: annotate\nkey: cookie:uin\nheader: X-Packs\non_unknown: closed\nstatus: 451\npacks: {vip: {file: x}}",
	} {
		filtertest.Decode(t, Name, ok)
	}
}

func TestBuildMissingFile(t *testing.T) {
	cfg := filtertest.Decode(t, Name, `packs: {vip: {file: /nonexistent/vip.txt}}`)
	_, err := cfg.Build(filters.NewBuildContext(filters.Route{Name: "grant"}, Name, nil, nil, nil), nil)
	if err == nil || !strings.Contains(err.Error(), "packs.vip.file") || !strings.Contains(err.Error(), "/nonexistent/vip.txt") {
		t.Fatalf("Build with a missing file: %v, want an error naming the field and the path", err)
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10001", "10001"}, {"0010001", "10001"}, {"0", "0"}, {"000", "0"},
		{"18446744073709551614", "18446744073709551614"},
		{"18446744073709551615", ""}, {"18446744073709551616", ""}, {"", ""}, {"-1", ""}, {"1 ", ""}, {"1e5", ""},
	} {
		got, n, ok := canonical([]byte(tc.in))
		if string(got) != tc.want || ok != (tc.want != "") || (ok && strconv.FormatUint(n, 10) != tc.want) {
			t.Errorf("canonical(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

func TestHashIsABijectionSample(t *testing.T) {
	seen := map[uint64]uint64{}
	for _, n := range append(spreadNumbers(200_000, 0), 0, 1, 2, 1<<63, reservedNumber-1) {
		h := hashNumber(n)
		if h == 0 {
			t.Fatalf("hash(%d) = 0 (bigcache reads it as deleted)", n)
		}
		if m, dup := seen[h]; dup && m != n {
			t.Fatalf("hash(%d) == hash(%d)", n, m)
		}
		seen[h] = n
	}
	if hashNumber(reservedNumber) != 0 {
		t.Errorf("the zero hash moved away from the reserved number")
	}
	if got := (numberHasher{}).Sum64("1234567890"); got != hashNumber(1234567890) {
		t.Errorf("Sum64 of a decimal key != hash of its number")
	}
}

func TestCloseStopsLoader(t *testing.T) {
	release := holdLoads(t)
	f := build(t, "reload_every: 100ms\n"+bothPacks, nil)
	l := f.files
	release()
	waitLoaded(t, f)
	f.Close()
	select {
	case <-l.done:
	default:
		t.Fatal("loader still running after Close")
	}
	f.Close() // idempotent
	// A request of the retired chain still gets an answer.
	if v, _ := decide(t, f, filtertest.Req{URI: "/?uin=10001"}); v != "" {
		t.Errorf("retired filter: verdict %q for a member", v)
	}
}

func TestCloseAbortsALoad(t *testing.T) {
	dir := t.TempDir()
	path := writePack(t, dir, "big", spreadNumbers(400_000, 0), false)
	f := build(t, "packs: {big: {file: "+yamlQuote(path)+"}}", nil)
	start := time.Now()
	f.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v during a load", d)
	}
}

func TestRelativePathsAreFromTheWorkingDirectory(t *testing.T) {
	wd, _ := os.Getwd()
	f := build(t, "packs: {vip: {file: ../../testdata/packs/vip.txt}}", nil)
	if want := filepath.Join(wd, "../../testdata/packs/vip.txt"); f.files.packs[0].path != filepath.Clean(want) {
		t.Errorf("path %q, want %q", f.files.packs[0].path, want)
	}
}

// TestDroppedFilterStopsItsLoader: a filter that the gateway builds and then drops
// without Close (its configuration failed elsewhere) stops its loader when collected.
func TestDroppedFilterStopsItsLoader(t *testing.T) {
	cfg := filtertest.Decode(t, Name, "reload_every: 100ms\n"+bothPacks)
	f, err := cfg.Build(filters.NewBuildContext(filters.Route{Name: t.Name()}, Name, nil, nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := f.(*Filter).files
	f = nil
	waitFor(t, "the dropped filter's loader to stop", func() bool {
		runtime.GC()
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	})
}

// TestStringPacks: a pack declares keys: string; its keys are looked up as sent, the
// route's number packs by value, in the same request.
func TestStringPacks(t *testing.T) {
	dir := t.TempDir()
	ids := filepath.Join(dir, "openids.txt")
	if err := os.WriteFile(ids, []byte("# openids\noAbc-1\nuser_x\n007\n\n  padded  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	packs := "packs: {vip: {file: " + yamlQuote(vipFile) + "}, ids: {file: " + yamlQuote(ids) + ", keys: string}}"
	f := build(t, "mode: require\n"+packs, nil)
	waitLoaded(t, f)
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "number in the number pack", Req: filtertest.Req{URI: "/?uin=10001"}},
		{Desc: "key in the string pack", Req: filtertest.Req{URI: "/?uin=oAbc-1"}},
		{Desc: "a number-looking key in the string pack, as sent", Req: filtertest.Req{URI: "/?uin=007"}},
		{Desc: "the same number written otherwise is not that key", Req: filtertest.Req{URI: "/?uin=7"}, Want: "number_pack/not_eligible"},
		{Desc: "leading zeros still name the number pack's user", Req: filtertest.Req{URI: "/?uin=0010001"}},
		{Desc: "a trimmed line", Req: filtertest.Req{URI: "/?uin=padded"}},
		{Desc: "key in neither", Req: filtertest.Req{URI: "/?uin=nobody"}, Want: "number_pack/not_eligible"},
		{Desc: "key with a space is no key", Req: filtertest.Req{URI: "/?uin=user%20x"}, Want: "number_pack/not_eligible"},
	})
	if got := value(f.m.noKey); got != 1 {
		t.Errorf("no_key %v, want 1 (the key with a space)", got)
	}

	a := build(t, "mode: annotate\n"+packs, nil)
	waitLoaded(t, a)
	for _, tc := range []struct{ uin, want string }{{"10001", "vip"}, {"user_x", "ids"}, {"zzz", ""}} {
		_, r := decide(t, a, filtertest.Req{URI: "/?uin=" + tc.uin})
		if got := string(r.Ctx.Request.Header.Peek(DefaultHeader)); got != tc.want {
			t.Errorf("uin %s: header %q, want %q", tc.uin, got, tc.want)
		}
	}

	// Without a string pack, the key is read as a number (filters.KeyNumber): a
	// non-numeric key is a bad key (400), counted as no key.
	n := build(t, "packs: {vip: {file: "+yamlQuote(vipFile)+"}}", nil)
	waitLoaded(t, n)
	if v, _ := decide(t, n, filtertest.Req{URI: "/?uin=oAbc-1"}); v != "number_pack/bad_key" || value(n.m.noKey) != 1 {
		t.Errorf("numeric-only route: %q, no_key %v", v, value(n.m.noKey))
	}

	// The same file as numbers and as strings is two entries; a malformed key is an
	// error naming file:line.
	if registeredPath(ids) != 1 {
		t.Errorf("%d registry entries for the string pack, want 1 (shared by both routes)", registeredPath(ids))
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("ok-1\ntwo words\n"), 0o644)
	if _, _, err := readKeySet(bad, nil); err == nil || !strings.Contains(err.Error(), "bad.txt:2: malformed key \"two words\"") {
		t.Errorf("malformed key: %v", err)
	}
}

// The client's annotate header is removed whatever the configured name's case, in both
// modes (Decide looks for it before it asks fasthttp to delete it); one sent empty may
// stay, empty: it names no pack and changes nothing.
func TestHeaderStripped(t *testing.T) {
	for _, tc := range []struct {
		desc, config, sent, value string
		mode, uin, want           string // want: the header after Decide
	}{
		{"require, default name", "", DefaultHeader, "vip", "require", "10001", ""},
		{"require, non-member", "", DefaultHeader, "vip", "require", "77", ""},
		{"annotate, non-member", "", DefaultHeader, "vip", "annotate", "77", ""},
		{"annotate, member: replaced", "", DefaultHeader, "vip,gold", "annotate", "30002", "new_users"},
		{"configured in lower case", "x-floodgate-packs", "X-Floodgate-Packs", "vip", "annotate", "77", ""},
		{"configured in upper case, sent in lower case", "X-FLOODGATE-PACKS", "x-floodgate-packs", "vip", "require", "10001", ""},
		{"another name", "X-Packs", "x-packs", "vip", "annotate", "77", ""},
		{"sent empty, non-member: nothing named", "", DefaultHeader, "", "annotate", "77", ""},
		{"sent empty, member: replaced", "", DefaultHeader, "", "annotate", "10002", "vip"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := "mode: " + tc.mode + "\n" + bothPacks
			name := DefaultHeader
			if tc.config != "" {
				cfg += "\nheader: " + tc.config
				name = tc.config
			}
			f := build(t, cfg, nil)
			waitLoaded(t, f)
			verdict, r := decide(t, f, filtertest.Req{URI: "/grant?uin=" + tc.uin, Headers: map[string]string{tc.sent: tc.value}})
			if got := string(r.Ctx.Request.Header.Peek(name)); got != tc.want {
				t.Errorf("%s after Decide = %q, want %q", name, got, tc.want)
			}
			member := tc.uin != "77"
			if rejected := verdict != ""; rejected != (tc.mode == "require" && !member) {
				t.Errorf("verdict %q for uin %s in mode %s", verdict, tc.uin, tc.mode)
			}
			f.Close()
		})
	}
}
