package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeClock returns 2026-01-28T16:00:00Z plus one second per call.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 28, 16, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func newTestDelivery(t *testing.T, path string) *Delivery {
	t.Helper()
	d, err := NewDelivery(DeliveryConfig{LedgerPath: path, Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// grantBody is what POST /grant answers on success.
type grantBody struct {
	OK bool `json:"ok"`
	Grant
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error"`
	Original  *Grant `json:"original"`
}

func decodeGrantBody(t *testing.T, r reply) grantBody {
	t.Helper()
	var g grantBody
	if err := json.Unmarshal([]byte(r.body), &g); err != nil {
		t.Fatalf("answer %q is not JSON: %v", r.body, err)
	}
	return g
}

func postGrant(t *testing.T, base, id, user, prize string) reply {
	t.Helper()
	q := url.Values{"user": {user}, "prize": {prize}}
	return do(t, "POST", base+"/grant?"+q.Encode(), map[string]string{"X-Grant-Id": id}, nil)
}

func TestGrantAPI(t *testing.T) {
	d := newTestDelivery(t, filepath.Join(t.TempDir(), "ledger.jsonl"))
	base := serve(t, d.Server)
	// The steps run in order against one ledger: later ones see what earlier ones made.
	cases := []struct {
		desc    string
		method  string
		path    string
		header  map[string]string
		form    url.Values
		status  int
		seq     uint64 // expected record, on 200 and 409
		dup     bool
		errText string // substring of "error", on 4xx
	}{
		{desc: "new grant, id in header, fields in query", method: "POST", path: "/grant?user=10001&prize=red",
			header: map[string]string{"X-Grant-Id": "g1"}, status: 200, seq: 1},
		{desc: "repeat is a duplicate with the original record", method: "POST", path: "/grant?user=10001&prize=red",
			header: map[string]string{"X-Grant-Id": "g1"}, status: 200, seq: 1, dup: true},
		{desc: "repeat with id in query and fields in a form", method: "POST", path: "/grant?grant_id=g1",
			form: url.Values{"user": {"10001"}, "prize": {"red"}}, status: 200, seq: 1, dup: true},
		{desc: "same id, other user is a conflict", method: "POST", path: "/grant?user=10002&prize=red",
			header: map[string]string{"X-Grant-Id": "g1"}, status: 409, seq: 1, errText: `grant id "g1" was already granted to user "10001" prize "red"`},
		{desc: "same id, other prize is a conflict", method: "POST", path: "/grant?grant_id=g1&user=10001&prize=blue",
			status: 409, seq: 1, errText: "already granted"},
		{desc: "header wins over query for the id", method: "POST", path: "/grant?grant_id=g1&user=10003&prize=red",
			header: map[string]string{"X-Grant-Id": "g2"}, status: 200, seq: 2},
		{desc: "non-ASCII fields", method: "POST", path: "/grant?grant_id=g3&user=%E7%94%A8%E6%88%B7&prize=%E7%BA%A2%E5%8C%85",
			status: 200, seq: 3},
		{desc: "missing grant id", method: "POST", path: "/grant?user=1&prize=red", status: 400,
			errText: "missing grant id: set header X-Grant-Id or query parameter grant_id"},
		{desc: "missing user", method: "POST", path: "/grant?grant_id=g9&prize=red", status: 400, errText: `missing field "user"`},
		{desc: "missing prize", method: "POST", path: "/grant?grant_id=g9", form: url.Values{"user": {"1"}}, status: 400,
			errText: `missing field "prize"`},
		{desc: "control character", method: "POST", path: "/grant?grant_id=g9&user=1%0A&prize=red", status: 400,
			errText: `field "user" has a non-printable character`},
		{desc: "invalid UTF-8", method: "POST", path: "/grant?grant_id=g9&user=1&prize=%FF", status: 400,
			errText: `field "prize" is not valid UTF-8`},
		{desc: "field too long", method: "POST", path: "/grant?grant_id=" + strings.Repeat("x", MaxFieldLen+1) + "&user=1&prize=red",
			status: 400, errText: `field "grant id" is longer than 256 bytes`},
		{desc: "GET /grant is refused", method: "GET", path: "/grant?grant_id=g9&user=1&prize=red", status: 405},
		{desc: "unknown path", method: "GET", path: "/nope", status: 404, errText: "no endpoint /nope"},
		{desc: "lookup one", method: "GET", path: "/grants?id=g2", status: 200, seq: 2},
		{desc: "lookup missing", method: "GET", path: "/grants?id=g9", status: 404, errText: `no grant with id "g9"`},
		{desc: "lookup empty id", method: "GET", path: "/grants?id=", status: 400, errText: "empty id"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			r := do(t, tc.method, base+tc.path, tc.header, tc.form)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if r.ctype != "application/json" {
				t.Fatalf("Content-Type %q", r.ctype)
			}
			g := decodeGrantBody(t, r)
			switch {
			case tc.status == 200 && (g.Seq != tc.seq || g.Duplicate != tc.dup || (tc.method == "POST" && !g.OK)):
				t.Fatalf("got %s; want seq %d duplicate %v", r.body, tc.seq, tc.dup)
			case tc.status == 409 && (g.Original == nil || g.Original.Seq != tc.seq || g.OK):
				t.Fatalf("got %s; want the original record seq %d", r.body, tc.seq)
			case tc.errText != "" && !strings.Contains(g.Error, tc.errText):
				t.Fatalf("error %q, want it to contain %q", g.Error, tc.errText)
			}
		})
	}

	// GET /grants lists every record as JSON lines, byte for byte as in the ledger.
	r := get(t, base+"/grants")
	ledger, err := os.ReadFile(d.LedgerPath())
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 200 || r.ctype != "application/x-ndjson" || r.body != string(ledger) {
		t.Fatalf("GET /grants = %d %q\n%s\nwant the ledger:\n%s", r.status, r.ctype, r.body, ledger)
	}
	if got := len(d.Grants()); got != 3 {
		t.Fatalf("Grants() has %d records, want 3", got)
	}
	if g, ok := d.Lookup("g3"); !ok || g.User != "用户" || g.Prize != "红包" {
		t.Fatalf("Lookup(g3) = %+v, %v", g, ok)
	}
}

func TestLedgerReplayAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	d := newTestDelivery(t, path)
	base := serve(t, d.Server)
	for i := 1; i <= 3; i++ {
		if r := postGrant(t, base, fmt.Sprint("g", i), fmt.Sprint(10000+i), "red"); r.status != 200 {
			t.Fatalf("grant %d: %d %s", i, r.status, r.body)
		}
	}
	before := d.Grants()
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}

	d2 := newTestDelivery(t, path)
	base2 := serve(t, d2.Server)
	if after := d2.Grants(); !equalGrants(before, after) {
		t.Fatalf("replayed %+v, want %+v", after, before)
	}
	cases := []struct {
		desc         string
		id, user     string
		status       int
		seq          uint64
		dup          bool
		originalTime time.Time
	}{
		{desc: "repeat of a replayed grant is a duplicate with its original time", id: "g2", user: "10002",
			status: 200, seq: 2, dup: true, originalTime: before[1].Time},
		{desc: "conflict with a replayed grant", id: "g3", user: "99", status: 409, seq: 3},
		{desc: "a new grant continues the sequence", id: "g4", user: "10004", status: 200, seq: 4},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			r := postGrant(t, base2, tc.id, tc.user, "red")
			g := decodeGrantBody(t, r)
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 409 {
				if g.Original.Seq != tc.seq {
					t.Fatalf("original %+v, want seq %d", g.Original, tc.seq)
				}
				return
			}
			if g.Seq != tc.seq || g.Duplicate != tc.dup || (!tc.originalTime.IsZero() && !g.Time.Equal(tc.originalTime)) {
				t.Fatalf("got %s; want seq %d duplicate %v time %v", r.body, tc.seq, tc.dup, tc.originalTime)
			}
		})
	}
}

func equalGrants(a, b []Grant) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Seq != b[i].Seq || a[i].ID != b[i].ID || a[i].User != b[i].User ||
			a[i].Prize != b[i].Prize || !a[i].Time.Equal(b[i].Time) {
			return false
		}
	}
	return true
}

// writeLedger makes a ledger file of n valid records through a real Delivery and
// returns its bytes.
func writeLedger(t *testing.T, path string, n int) []byte {
	t.Helper()
	d := newTestDelivery(t, path)
	for i := 1; i <= n; i++ {
		if _, _, err := d.ledger.grant(fmt.Sprint("g", i), fmt.Sprint(10000+i), "red", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLedgerTornTail(t *testing.T) {
	dir := t.TempDir()
	full := writeLedger(t, filepath.Join(dir, "full.jsonl"), 3)
	lastStart := bytes.LastIndexByte(full[:len(full)-1], '\n') + 1 // where record 3 starts

	type tcase struct {
		desc      string
		content   []byte
		wantCount int // records after opening
		wantSize  int // file size after opening
		wantWarn  bool
	}
	cases := []tcase{
		{desc: "complete file", content: full, wantCount: 3, wantSize: len(full)},
		{desc: "cut exactly after record 2", content: full[:lastStart], wantCount: 2, wantSize: lastStart},
		{desc: "NUL bytes after the last record", content: append(bytes.Clone(full), 0, 0, 0, 0),
			wantCount: 3, wantSize: len(full), wantWarn: true},
		{desc: "half a record after a complete one", content: append(bytes.Clone(full), `{"seq":4,"id":"g`...),
			wantCount: 3, wantSize: len(full), wantWarn: true},
		{desc: "empty file", content: nil, wantCount: 0, wantSize: 0},
		{desc: "torn first record", content: full[:10], wantCount: 0, wantSize: 0, wantWarn: true},
	}
	// Every byte offset inside record 3, including "all but its newline".
	for cut := lastStart + 1; cut < len(full); cut++ {
		cases = append(cases, tcase{desc: fmt.Sprintf("record 3 cut at byte %d of %d", cut-lastStart, len(full)-lastStart),
			content: full[:cut], wantCount: 2, wantSize: lastStart, wantWarn: true})
	}
	for i, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("case%d.jsonl", i))
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zapcore.WarnLevel)
			d, err := NewDelivery(DeliveryConfig{LedgerPath: path, Logger: zap.New(core)})
			if err != nil {
				t.Fatalf("NewDelivery: %v", err)
			}
			if n := len(d.Grants()); n != tc.wantCount {
				t.Fatalf("%d records, want %d", n, tc.wantCount)
			}
			warned := logs.FilterMessageSnippet("torn last line").Len() == 1
			if warned != tc.wantWarn {
				t.Fatalf("torn-line warning logged: %v, want %v (%v)", warned, tc.wantWarn, logs.All())
			}
			// The next grant lands on a clean line boundary and survives a restart.
			if _, _, err := d.ledger.grant("next", "1", "red", time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := d.Shutdown(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			if len(b) <= tc.wantSize || !bytes.Equal(b[:tc.wantSize], full[:tc.wantSize]) {
				t.Fatalf("after truncation and one grant the file is %q", b)
			}
			d2 := newTestDelivery(t, path)
			defer d2.Shutdown()
			if g, ok := d2.Lookup("next"); !ok || g.Seq != uint64(tc.wantCount+1) {
				t.Fatalf("after restart: %+v %v, want seq %d", g, ok, tc.wantCount+1)
			}
		})
	}
}

// reseal gives an edited ledger line a correct crc again, to test the checks behind it.
func reseal(line string) string {
	prefix := line[:len(line)-crcTail]
	return fmt.Sprintf("%s%08x\"}\n", prefix, crc32.Checksum([]byte(prefix), castagnoli))
}

func TestLedgerDamageRefused(t *testing.T) {
	dir := t.TempDir()
	full := writeLedger(t, filepath.Join(dir, "full.jsonl"), 3)
	lines := strings.SplitAfter(string(full), "\n")[:3]
	with := func(i int, s string) []byte { // full with line i (0-based) replaced
		l := append([]string(nil), lines...)
		l[i] = s
		return []byte(strings.Join(l, ""))
	}
	cases := []struct {
		desc    string
		content []byte
		wantErr string
	}{
		{desc: "garbage in line 2", content: with(1, "#!garbage\n"), wantErr: ":2: damaged record (no crc at the end)"},
		{desc: "one changed byte in a value", content: with(1, strings.Replace(lines[1], `10002`, `10003`, 1)),
			wantErr: ":2: damaged record (crc "},
		{desc: "one changed byte in a name", content: with(1, strings.Replace(lines[1], `"id"`, `"iD"`, 1)),
			wantErr: ":2: damaged record (crc "},
		{desc: "crc removed", content: with(1, lines[1][:strings.Index(lines[1], `,"crc"`)]+"}\n"),
			wantErr: ":2: damaged record (no crc at the end)"},
		{desc: "blank line 1", content: with(0, "\n"), wantErr: ":1: damaged record"},
		{desc: "sequence gap", content: with(1, reseal(strings.Replace(lines[1], `"seq":2`, `"seq":5`, 1))),
			wantErr: ":2: damaged record (seq 5, want 2)"},
		{desc: "repeated grant id", content: with(2, reseal(strings.Replace(lines[2], `"g3"`, `"g1"`, 1))),
			wantErr: `:3: damaged record (grant id "g1" repeats line 1)`},
		{desc: "missing user", content: with(1, reseal(strings.Replace(lines[1], `"user":"10002"`, `"user":""`, 1))),
			wantErr: `:2: damaged record (missing field "user")`},
		{desc: "unknown field", content: with(0, reseal(strings.Replace(lines[0], `{`, `{"x":1,`, 1))),
			wantErr: ":1: damaged record (not a JSON record: json: unknown field"},
		{desc: "two records on one line", content: with(0, reseal(strings.TrimSuffix(lines[0], "\n")+lines[0])),
			wantErr: ":1: damaged record (data after the record)"},
		{desc: "a complete but damaged last line is damage, not a torn tail", content: with(2, "{}\n"),
			wantErr: ":3: damaged record"},
	}
	for i, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("case%d.jsonl", i))
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			d, err := NewDelivery(DeliveryConfig{LedgerPath: path})
			if err == nil {
				d.Shutdown()
				t.Fatal("damaged ledger accepted")
			}
			if want := "ledger " + path + tc.wantErr; !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q, want it to contain %q", err, want)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, tc.content) {
				t.Fatalf("a refused ledger was modified")
			}
		})
	}
}

// TestGroupCommit sends 50 grants at once over real sockets and holds the first fsync
// until all 50 are queued: the second fsync must then cover the other 49, and every
// grant must be answered only after the fsync that covers it.
func TestGroupCommit(t *testing.T) {
	const n = 50
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	d := newTestDelivery(t, path)
	l := d.ledger
	var syncedLines []int // lines in the file at each fsync
	l.fsync = func(f *os.File) error {
		deadline := time.Now().Add(60 * time.Second)
		for len(syncedLines) == 0 { // hold the first round until all n are queued
			l.mu.Lock()
			queued := len(l.all)
			l.mu.Unlock()
			if queued == n {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("test: grants never queued up")
			}
			time.Sleep(time.Millisecond)
		}
		b, err := os.ReadFile(path)
		syncedLines = append(syncedLines, bytes.Count(b, []byte("\n")))
		if err != nil {
			return err
		}
		return f.Sync()
	}
	base := serve(t, d.Server)

	var wg sync.WaitGroup
	replies := make([]grantBody, n)
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			r := postGrant(t, base, fmt.Sprint("g", i), fmt.Sprint(10000+i), "red")
			statuses[i], replies[i] = r.status, decodeGrantBody(t, r)
		})
	}
	wg.Wait()

	seen := map[uint64]bool{}
	for i := range n {
		if statuses[i] != 200 || replies[i].Duplicate || replies[i].ID != fmt.Sprint("g", i) {
			t.Fatalf("grant %d: %d %+v", i, statuses[i], replies[i])
		}
		// The answer came after an fsync that covered its line.
		if last := syncedLines[len(syncedLines)-1]; replies[i].Seq > uint64(last) {
			t.Fatalf("grant seq %d answered, but the last fsync covered %d lines", replies[i].Seq, last)
		}
		seen[replies[i].Seq] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct seqs, want %d", len(seen), n)
	}
	if got := d.Syncs(); got != 2 || syncedLines[0] != 1 || syncedLines[1] != n {
		t.Fatalf("Syncs() = %d covering %v lines; want 2 fsyncs covering [1 %d]", got, syncedLines, n)
	}
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	d2 := newTestDelivery(t, path)
	defer d2.Shutdown()
	if got := len(d2.Grants()); got != n {
		t.Fatalf("replayed %d grants, want %d", got, n)
	}
}

// TestConcurrentSameID sends one grant id from many clients at once: exactly one
// records it, the rest see duplicates of that one record.
func TestConcurrentSameID(t *testing.T) {
	d := newTestDelivery(t, filepath.Join(t.TempDir(), "ledger.jsonl"))
	base := serve(t, d.Server)
	const n = 20
	var wg sync.WaitGroup
	replies := make([]grantBody, n)
	for i := range n {
		wg.Go(func() { replies[i] = decodeGrantBody(t, postGrant(t, base, "same", "10001", "red")) })
	}
	wg.Wait()
	fresh := 0
	for _, g := range replies {
		if !g.OK || g.Seq != 1 {
			t.Fatalf("reply %+v, want seq 1", g)
		}
		if !g.Duplicate {
			fresh++
		}
	}
	if fresh != 1 || len(d.Grants()) != 1 {
		t.Fatalf("%d non-duplicate answers and %d records; want 1 and 1", fresh, len(d.Grants()))
	}
}

func TestLedgerWriteFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	d := newTestDelivery(t, path)
	base := serve(t, d.Server)
	if r := postGrant(t, base, "g1", "1", "red"); r.status != 200 {
		t.Fatalf("first grant: %d %s", r.status, r.body)
	}
	sizeBefore := fileSize(t, path)
	d.ledger.mu.Lock()
	d.ledger.fsync = func(*os.File) error { return errors.New("disk on fire") }
	d.ledger.mu.Unlock()

	cases := []struct {
		desc    string
		id      string
		status  int
		errText string
	}{
		{desc: "the failing fsync answers 503", id: "g2", status: 503, errText: "disk on fire"},
		{desc: "later grants are refused too", id: "g3", status: 503, errText: "disk on fire"},
		{desc: "even a duplicate of a durable grant", id: "g1", status: 503, errText: "disk on fire"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			r := postGrant(t, base, tc.id, "1", "red")
			if g := decodeGrantBody(t, r); r.status != tc.status || !strings.Contains(g.Error, tc.errText) {
				t.Fatalf("got %d %s, want %d with %q", r.status, r.body, tc.status, tc.errText)
			}
		})
	}
	if got := len(d.Grants()); got != 1 {
		t.Fatalf("Grants() has %d records, want only the durable one", got)
	}
	if _, ok := d.Lookup("g2"); ok {
		t.Fatal("the unacknowledged grant is still known")
	}
	if got := fileSize(t, path); got != sizeBefore {
		t.Fatalf("ledger is %d bytes, want the unacknowledged record cut (%d)", got, sizeBefore)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestNewDeliveryErrors(t *testing.T) {
	cases := []struct {
		desc    string
		cfg     DeliveryConfig
		wantErr string
	}{
		{desc: "no ledger path", cfg: DeliveryConfig{}, wantErr: "no ledger path"},
		{desc: "ledger dir missing", cfg: DeliveryConfig{LedgerPath: filepath.Join(t.TempDir(), "no", "such", "l.jsonl")},
			wantErr: "no such file or directory"},
		{desc: "bad faults", cfg: DeliveryConfig{LedgerPath: filepath.Join(t.TempDir(), "l"), Faults: Faults{ErrorRate: 7}},
			wantErr: "error rate 7 is outside [0, 1]"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			if _, err := NewDelivery(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func BenchmarkGrantParallel(b *testing.B) {
	d, err := NewDelivery(DeliveryConfig{LedgerPath: filepath.Join(b.TempDir(), "l.jsonl")})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Shutdown()
	var mu sync.Mutex
	next := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			next++
			id := fmt.Sprint("g", next)
			mu.Unlock()
			if _, _, err := d.ledger.grant(id, "1", "red", time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(d.Syncs()), "grants/fsync")
}
