package backend

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// writePack writes name (e.g. "vip.txt") into dir atomically, the way operators are told
// to: a temp file renamed over the old one.
func writePack(t testing.TB, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, ".tmp-"+name)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func gzipped(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// newTestPacks builds a packs backend over a temp dir holding files (file name ->
// content); pack files get a ".txt" suffix unless the name has a dot.
func newTestPacks(t testing.TB, files map[string]string, every time.Duration) *Packs {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if !strings.Contains(name, ".") {
			name += ".txt"
		}
		writePack(t, dir, name, content)
	}
	p, err := NewPacks(PacksConfig{Dir: dir, ReloadEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown() })
	return p
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func TestPacksEndpoints(t *testing.T) {
	newGz := gzipped(t, "# new users\n20002\n10002\n20002\n")
	vip := "# vip\r\n10001\r\n10002\r\n\r\n  10003  \r\n"
	p := newTestPacks(t, map[string]string{
		"vip":          vip,
		"new.txt.gz":   newGz,
		"empty":        "# nobody yet\n",
		"notes.md":     "not a pack",
		".hidden.txt":  "1\n",
		"a\"b.txt":     "7\n",
		"big.txt.gz.1": "x",
	}, 0)
	if err := os.Mkdir(filepath.Join(p.dir, "dir.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := serve(t, p.Server)
	cases := []struct {
		desc   string
		method string
		path   string
		status int
		ctype  string
		body   string // exact, unless contains is set
		has    string // substring
	}{
		{desc: "member of two packs", path: "/v1/membership?user=10002", status: 200, ctype: "application/json",
			body: `{"user":"10002","packs":["new","vip"]}` + "\n"},
		{desc: "member of one", path: "/v1/membership?user=10003", status: 200, ctype: "application/json",
			body: `{"user":"10003","packs":["vip"]}` + "\n"},
		{desc: "member of none", path: "/v1/membership?user=5", status: 200, ctype: "application/json",
			body: `{"user":"5","packs":[]}` + "\n"},
		{desc: "pack names are JSON-escaped", path: "/v1/membership?user=7", status: 200, ctype: "application/json",
			body: `{"user":"7","packs":["a\"b"]}` + "\n"},
		{desc: "largest number", path: "/v1/membership?user=18446744073709551615", status: 200, ctype: "application/json",
			body: `{"user":"18446744073709551615","packs":[]}` + "\n"},
		{desc: "not a number", path: "/v1/membership?user=abc", status: 400, ctype: "application/json",
			has: `user \"abc\" is not a number`},
		{desc: "too large", path: "/v1/membership?user=18446744073709551616", status: 400, ctype: "application/json",
			has: `user \"18446744073709551616\" is not a number`},
		{desc: "missing user", path: "/v1/membership", status: 400, ctype: "application/json",
			has: "missing query parameter user"},
		{desc: "pack list", path: "/v1/packs", status: 200, ctype: "application/json",
			body: fmt.Sprintf(`[{"name":"a\"b","version":%q,"count":1},{"name":"empty","version":%q,"count":0},`+
				`{"name":"new","version":%q,"count":2},{"name":"vip","version":%q,"count":3}]`+"\n",
				shortHash("7\n"), shortHash("# nobody yet\n"), shortHash(newGz), shortHash(vip))},
		{desc: "one pack's numbers, sorted and distinct", path: "/v1/packs/new", status: 200,
			ctype: "text/plain; charset=utf-8", body: "10002\n20002\n"},
		{desc: "unknown pack", path: "/v1/packs/nope", status: 404, ctype: "application/json", has: `no pack \"nope\"`},
		{desc: "unknown path", path: "/v2", status: 404, ctype: "application/json", has: "no endpoint /v2"},
		{desc: "POST refused", method: "POST", path: "/v1/membership?user=1", status: 405, ctype: "application/json"},
		{desc: "healthz", path: "/healthz", status: 200, ctype: "text/plain; charset=utf-8", body: "ok"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			r := do(t, method, base+tc.path, nil, nil)
			if r.status != tc.status || r.ctype != tc.ctype ||
				(tc.body != "" && r.body != tc.body) || !strings.Contains(r.body, tc.has) {
				t.Fatalf("got %d %q %q; want %d %q %q (containing %q)", r.status, r.ctype, r.body,
					tc.status, tc.ctype, tc.body, tc.has)
			}
		})
	}
	if r := get(t, base+"/v1/packs/vip"); r.header.Get("X-Pack-Version") != shortHash(vip) {
		t.Fatalf("X-Pack-Version %q, want %q", r.header.Get("X-Pack-Version"), shortHash(vip))
	}
	if got := p.Membership(10002); !slices.Equal(got, []string{"new", "vip"}) {
		t.Fatalf("Membership(10002) = %v", got)
	}
	var list []PackInfo
	if err := json.Unmarshal([]byte(get(t, base+"/v1/packs").body), &list); err != nil || !slices.Equal(list, p.List()) {
		t.Fatalf("GET /v1/packs %v != List() %v (%v)", list, p.List(), err)
	}
}

func TestPacksReload(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	dir := t.TempDir()
	writePack(t, dir, "vip.txt", "1\n2\n")
	writePack(t, dir, "new.txt", "2\n3\n")
	p, err := NewPacks(PacksConfig{Dir: dir, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()

	// Each step changes the directory, reloads, and says what membership looks like after.
	cases := []struct {
		desc    string
		change  func()
		forced  bool   // Reload (SIGHUP) rather than a poll
		wantErr string // the reload's error; the old index must keep serving
		want    map[uint64][]string
		wantGen uint64
		reread  []string // packs expected to be re-read (others reused)
	}{
		{desc: "poll with no change does nothing", change: func() {}, want: map[uint64][]string{1: {"vip"}, 2: {"new", "vip"}, 3: {"new"}},
			wantGen: 1},
		{desc: "a rewritten pack is swapped in", change: func() { writePack(t, dir, "vip.txt", "1\n4\n") },
			want: map[uint64][]string{1: {"vip"}, 2: {"new"}, 4: {"vip"}}, wantGen: 2, reread: []string{"vip"}},
		{desc: "an added pack appears", change: func() { writePack(t, dir, "late.txt.gz", gzipped(t, "4\n")) },
			want: map[uint64][]string{4: {"late", "vip"}}, wantGen: 3, reread: []string{"late"}},
		{desc: "a removed pack disappears", change: func() { os.Remove(filepath.Join(dir, "new.txt")) },
			want: map[uint64][]string{2: {}, 3: {}, 4: {"late", "vip"}}, wantGen: 4},
		{desc: "a touched pack is re-read, same version", change: func() {
			later := time.Now().Add(time.Hour)
			os.Chtimes(filepath.Join(dir, "vip.txt"), later, later)
		}, want: map[uint64][]string{1: {"vip"}, 4: {"late", "vip"}}, wantGen: 5, reread: []string{"vip"}},
		{desc: "a broken file keeps the old index", change: func() { writePack(t, dir, "vip.txt", "1\n4\nfive\n") },
			wantErr: "vip.txt:3: malformed number \"five\"", want: map[uint64][]string{1: {"vip"}, 4: {"late", "vip"}}, wantGen: 5},
		{desc: "the same broken state is not retried by polling", change: func() {},
			want: map[uint64][]string{1: {"vip"}, 4: {"late", "vip"}}, wantGen: 5},
		{desc: "a forced reload retries it", change: func() {}, forced: true,
			wantErr: "vip.txt:3: malformed number", want: map[uint64][]string{1: {"vip"}}, wantGen: 5},
		{desc: "two files for one pack keep the old index", change: func() {
			writePack(t, dir, "vip.txt", "9\n")
			writePack(t, dir, "vip.txt.gz", gzipped(t, "9\n"))
		}, wantErr: `pack "vip" has two files`, want: map[uint64][]string{1: {"vip"}, 9: {}}, wantGen: 5},
		{desc: "the fix is picked up", change: func() { os.Remove(filepath.Join(dir, "vip.txt.gz")) },
			want: map[uint64][]string{1: {}, 4: {"late"}, 9: {"vip"}}, wantGen: 6, reread: []string{"vip"}},
		{desc: "a forced reload re-reads everything", change: func() {}, forced: true,
			want: map[uint64][]string{4: {"late"}, 9: {"vip"}}, wantGen: 7, reread: []string{"late", "vip"}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			old := p.index.Load()
			tc.change()
			var err error
			if tc.forced {
				err = p.Reload()
			} else {
				err = p.reloadIfChanged()
			}
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("reload error %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr != "" && p.index.Load() != old {
				t.Fatal("a failed reload replaced the index")
			}
			for user, want := range tc.want {
				if got := p.Membership(user); !slices.Equal(got, want) {
					t.Fatalf("Membership(%d) = %v, want %v", user, got, want)
				}
			}
			if g := p.Generation(); g != tc.wantGen {
				t.Fatalf("Generation() = %d, want %d", g, tc.wantGen)
			}
			if p.index.Load() == old {
				return
			}
			var reread []string
			for _, pk := range p.index.Load().packs {
				if !slices.Contains(old.packs, pk) {
					reread = append(reread, pk.Name)
				}
			}
			if !slices.Equal(reread, tc.reread) {
				t.Fatalf("re-read %v, want %v (the rest reused)", reread, tc.reread)
			}
		})
	}
	// Each distinct failure is logged once, however often it is seen.
	if n := logs.FilterMessageSnippet("reload failed").Len(); n != 2 {
		t.Fatalf("%d reload failures logged, want 2: %v", n, logs.All())
	}
}

// TestPacksReloadSwapWhileServing keeps asking over a real socket while packs are
// swapped: every answer is one generation or the other, never a mix or an error.
func TestPacksReloadSwapWhileServing(t *testing.T) {
	p := newTestPacks(t, map[string]string{"a": "1\n", "b": "1\n"}, 0)
	base := serve(t, p.Server)
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				writePack(t, p.dir, "a.txt", "2\n")
				writePack(t, p.dir, "b.txt", "2\n")
			} else {
				writePack(t, p.dir, "a.txt", "1\n")
				writePack(t, p.dir, "b.txt", "1\n")
			}
			if err := p.Reload(); err != nil {
				done <- err
				return
			}
		}
	}()
	valid := map[string]bool{
		`{"user":"1","packs":["a","b"]}` + "\n": true, // both packs hold 1
		`{"user":"1","packs":[]}` + "\n":        true, // both hold 2
		`{"user":"1","packs":["b"]}` + "\n":     true, // a reload between the two writes
		`{"user":"1","packs":["a"]}` + "\n":     true,
	}
	for range 300 {
		r := get(t, base+"/v1/membership?user=1")
		if r.status != 200 || !valid[r.body] {
			t.Fatalf("got %d %q", r.status, r.body)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.Generation() < 2 {
		t.Fatalf("no reload happened (generation %d)", p.Generation())
	}
}

// TestPacksPolling runs the real poller: a changed file is picked up without a signal.
func TestPacksPolling(t *testing.T) {
	p := newTestPacks(t, map[string]string{"vip": "1\n"}, 5*time.Millisecond)
	writePack(t, p.dir, "vip.txt", "2\n")
	deadline := time.Now().Add(60 * time.Second)
	for p.Generation() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the poller never reloaded")
		}
		time.Sleep(time.Millisecond)
	}
	if got := p.Membership(2); !slices.Equal(got, []string{"vip"}) {
		t.Fatalf("Membership(2) = %v after the poll", got)
	}
	if err := p.Shutdown(); err != nil { // stops the poller
		t.Fatal(err)
	}
}

func TestNewPacksErrors(t *testing.T) {
	dir := t.TempDir()
	writePack(t, dir, "bad.txt", "1\n\n0x10\n")
	cases := []struct {
		desc    string
		cfg     PacksConfig
		wantErr string
	}{
		{desc: "no dir", cfg: PacksConfig{}, wantErr: "no packs directory"},
		{desc: "missing dir", cfg: PacksConfig{Dir: filepath.Join(dir, "nope")}, wantErr: "no such file or directory"},
		{desc: "broken pack names file and line", cfg: PacksConfig{Dir: dir},
			wantErr: filepath.Join(dir, "bad.txt") + `:3: malformed number "0x10"`},
		{desc: "negative reload interval", cfg: PacksConfig{Dir: dir, ReloadEvery: -time.Second}, wantErr: "reload interval -1s is negative"},
		{desc: "bad faults", cfg: PacksConfig{Dir: dir, Faults: Faults{Jitter: -1}}, wantErr: "jitter -1ns is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			if _, err := NewPacks(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// BenchmarkMembership looks users up in 4 packs of 2.5 million numbers each.
func BenchmarkMembership(b *testing.B) {
	files := map[string]string{}
	for k := range 4 {
		var sb strings.Builder
		for i := range 2_500_000 {
			fmt.Fprintf(&sb, "%d\n", 100000000+uint64(i)*4+uint64(k))
		}
		files[fmt.Sprint("pack", k)] = sb.String()
	}
	p := newTestPacks(b, files, 0)
	b.ResetTimer()
	b.ReportAllocs()
	var n uint64
	for b.Loop() {
		n++
		p.Membership(100000000 + n*7919%10_000_000)
	}
}

// TestPackLookup checks the bucketed search against a plain set on several shapes of
// pack, small (no buckets) and big (buckets).
func TestPackLookup(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func(i int) uint64) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	cases := []struct {
		desc string
		nums []uint64
	}{
		{desc: "small, no buckets", nums: []uint64{5, 1, 3, 3}},
		{desc: "empty", nums: nil},
		{desc: "qq-like uniform", nums: gen(50_000, func(int) uint64 { return 10_000 + r.Uint64N(4_000_000_000) })},
		{desc: "dense run", nums: gen(10_000, func(i int) uint64 { return 1_000_000 + uint64(i) })},
		{desc: "two far clusters", nums: gen(20_000, func(i int) uint64 {
			if i%2 == 0 {
				return r.Uint64N(10_000)
			}
			return math.MaxUint64 - r.Uint64N(10_000)
		})},
		{desc: "full uint64 range with 0 and max", nums: append(gen(10_000, func(int) uint64 { return r.Uint64() }), 0, math.MaxUint64)},
		{desc: "skewed: most in one bucket", nums: append(gen(10_000, func(int) uint64 { return r.Uint64N(100_000) }), 1<<60)},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			nums := slices.Compact(slices.Sorted(slices.Values(tc.nums)))
			pk := &pack{nums: nums}
			pk.buildBuckets()
			if (pk.buckets != nil) != (len(nums) >= bucketMin) {
				t.Fatalf("buckets built: %v for %d numbers", pk.buckets != nil, len(nums))
			}
			set := map[uint64]bool{}
			for _, n := range nums {
				set[n] = true
			}
			probes := append([]uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}, nums...)
			for range 20_000 {
				probes = append(probes, r.Uint64(), r.Uint64N(4_000_000_000), r.Uint64N(100_000))
			}
			for _, n := range nums { // neighbours of members
				probes = append(probes, n-1, n+1)
			}
			for _, n := range probes {
				if got := pk.has(n); got != set[n] {
					t.Fatalf("has(%d) = %v, want %v", n, got, set[n])
				}
			}
		})
	}
}
