package consul

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/floodgate/floodgate/gateway/config"
)

func kvs(pairs ...string) []KV {
	var out []KV
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, KV{Key: pairs[i], Value: []byte(pairs[i+1])})
	}
	return out
}

func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		in      []KV
		wantErr string
		check   func(t *testing.T, s *Snapshot)
	}{
		{desc: "overrides, plans and the active plan", in: kvs(
			"floodgate/routes/lottery/enabled", "false",
			"floodgate/routes/lottery/token_bucket/rate", " 20000\n",
			"floodgate/pools/query/max_conns", "64",
			"floodgate/plans/midnight", "routes/info/enabled: false\nroutes:\n  report:\n    enabled: false\n",
			"floodgate/active_plan", "midnight",
			"floodgate/audit/1700000000-alice", `{"what":"set"}`,
			"floodgate/confirm", "abc",
			"floodgate/routes/", ""),
			check: func(t *testing.T, s *Snapshot) {
				if s.Keys != 5 || s.ActivePlan != "midnight" || s.Confirm != "abc" {
					t.Fatalf("keys %d plan %q confirm %q", s.Keys, s.ActivePlan, s.Confirm)
				}
				if got := s.Overrides[2]; got.Path != "routes/lottery/token_bucket/rate" || got.Value != "20000" || got.Origin != "consul:floodgate/routes/lottery/token_bucket/rate" {
					t.Errorf("override %+v", got)
				}
				plan := s.Plan()
				if len(plan) != 2 || plan[0].Path != "routes/info/enabled" || plan[1].Path != "routes/report/enabled" || plan[1].Origin != "plan:midnight" {
					t.Errorf("plan %+v", plan)
				}
			}},
		{desc: "unknown key", in: kvs("floodgate/rutes/x/enabled", "true"), wantErr: `unknown key "rutes/x/enabled"`},
		{desc: "route key too short", in: kvs("floodgate/routes/lottery", "true"), wantErr: `want routes/<route>/<field>`},
		{desc: "filter without a parameter", in: kvs("floodgate/routes/lottery/token_bucket", "1"), wantErr: `neither a route field nor a filter parameter path`},
		{desc: "active plan missing", in: kvs("floodgate/active_plan", "nope"), wantErr: `names plan "nope", which does not exist`},
		{desc: "plan with a list", in: kvs("floodgate/plans/p", "routes/lottery/acl/allow_methods: [GET]"), wantErr: `want a single value, not a list`},
		{desc: "plan not YAML", in: kvs("floodgate/plans/p", "{"), wantErr: `is not valid YAML`},
		{desc: "plan overriding server settings", in: kvs("floodgate/plans/p", "server/listen: 0.0.0.0:80"), wantErr: `only routes/... and pools/... can be overridden live`},
	} {
		s, err := Convert("floodgate/", tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.desc, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.desc, err)
			continue
		}
		tc.check(t, s)
	}
}

func TestFingerprintIgnoresConfirmAndAudit(t *testing.T) {
	a, _ := Convert("p/", kvs("p/routes/a/enabled", "true"))
	b, _ := Convert("p/", kvs("p/routes/a/enabled", "true", "p/confirm", "x", "p/audit/1", "{}"))
	c, _ := Convert("p/", kvs("p/routes/a/enabled", "false"))
	if a.Fingerprint != b.Fingerprint {
		t.Errorf("confirm/audit keys changed the fingerprint")
	}
	if a.Fingerprint == c.Fingerprint {
		t.Errorf("a value change did not change the fingerprint")
	}
}

func TestSuspicious(t *testing.T) {
	snap := func(n int) *Snapshot { return &Snapshot{Keys: n} }
	for _, tc := range []struct {
		desc      string
		cur, next *Snapshot
		held      bool
	}{
		{"first read", nil, snap(0), false},
		{"nothing in force", snap(0), snap(0), false},
		{"empty read while keys are in force", snap(1), snap(0), true},
		{"small change", snap(3), snap(1), false},
		{"half removed", snap(10), snap(5), false},
		{"most removed", snap(10), snap(4), true},
		{"growth", snap(2), snap(20), false},
	} {
		if got := suspicious(tc.cur, tc.next) != ""; got != tc.held {
			t.Errorf("%s: held = %v, want %v", tc.desc, got, tc.held)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	path := t.TempDir() + "/lkg.json"
	s := &Snapshot{Keys: 2, Fingerprint: "f", ActivePlan: "p", Overrides: []config.Override{{Path: "routes/a/enabled", Value: "false", Origin: "consul:x"}},
		Plans: map[string][]config.Override{"p": {{Path: "routes/b/enabled", Value: "false", Origin: "plan:p"}}}}
	if err := WriteSnapshot(path, "floodgate/", s); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadSnapshot(path, "floodgate/")
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint != "f" || len(got.Overrides) != 1 || len(got.Plan()) != 1 || got.Plan()[0].Path != "routes/b/enabled" {
		t.Errorf("round trip: %+v", got)
	}
	if _, _, err := ReadSnapshot(path, "other/"); err == nil {
		t.Errorf("a snapshot of another prefix was accepted")
	}
	if s, _, err := ReadSnapshot(path+".missing", "floodgate/"); s != nil || err != nil {
		t.Errorf("missing snapshot: %v %v", s, err)
	}
}

// TestHostileConsulCorpus runs testdata/attacks/consul.txt: every read is refused whole,
// naming each bad key.
func TestHostileConsulCorpus(t *testing.T) {
	data, err := os.ReadFile("../../testdata/attacks/consul.txt")
	if err != nil {
		t.Fatal(err)
	}
	type tcase struct {
		desc string
		kvs  []KV
		want []string
	}
	var cases []tcase
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, ": ")
		switch key {
		case "case":
			cases = append(cases, tcase{desc: val})
		case "kv":
			k, v, _ := strings.Cut(val, " ")
			uv, err := strconv.Unquote(v)
			if err != nil {
				t.Fatalf("consul.txt:%d: value not a Go string literal: %v", i+1, err)
			}
			cases[len(cases)-1].kvs = append(cases[len(cases)-1].kvs, KV{Key: k, Value: []byte(uv)})
		case "want":
			cases[len(cases)-1].want = append(cases[len(cases)-1].want, val)
		default:
			t.Fatalf("consul.txt:%d: unknown line %q", i+1, line)
		}
	}
	for _, tc := range cases {
		s, err := Convert(DefaultPrefix, tc.kvs)
		if err == nil {
			t.Errorf("%s: accepted (%d overrides %+v), want refused", tc.desc, len(s.Overrides), s.Overrides)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not name %s:\n%v", tc.desc, w, err)
			}
		}
	}
}

// FuzzConsulConvert: arbitrary keys and values as one read of the prefix. Properties:
// nothing panics or hangs (plans with alias bombs are refused before expansion); a read
// that is refused names a key of the read; a read that converts gives the same
// fingerprint again, and every override it gives is a path config.TreePath accepts.
func FuzzConsulConvert(f *testing.F) {
	data, _ := os.ReadFile("../../testdata/attacks/consul.txt")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "kv: "); ok {
			k, val, _ := strings.Cut(v, " ")
			if uv, err := strconv.Unquote(val); err == nil {
				f.Add(k, []byte(uv), "floodgate/active_plan", []byte(""))
			}
		}
	}
	f.Add("floodgate/routes/lottery/enabled", []byte("false"), "floodgate/plans/p", []byte("routes/info/enabled: false\n"))
	f.Fuzz(func(t *testing.T, k1 string, v1 []byte, k2 string, v2 []byte) {
		in := []KV{{Key: k1, Value: v1}, {Key: k2, Value: v2}}
		s, err := Convert(DefaultPrefix, in)
		if err != nil {
			if !strings.Contains(err.Error(), "consul:") {
				t.Fatalf("a refused read that names no key: %v", err)
			}
			return
		}
		s2, err := Convert(DefaultPrefix, in)
		if err != nil || s2.Fingerprint != s.Fingerprint {
			t.Fatalf("converting twice: %v, fingerprints %s and %s", err, s.Fingerprint, s2.Fingerprint)
		}
		for _, o := range s.Overrides {
			if _, err := config.TreePath(o.Path); err != nil {
				t.Fatalf("override %q: %v", o.Path, err)
			}
		}
	})
}

func TestSlashPrefix(t *testing.T) {
	for _, tc := range []struct{ desc, in, want string }{
		{"adds the slash", "floodgate", "floodgate/"},
		{"keeps one slash", "floodgate/", "floodgate/"},
		{"nested", "team/fg", "team/fg/"},
	} {
		if got := SlashPrefix(tc.in); got != tc.want {
			t.Errorf("%s: SlashPrefix(%q) = %q, want %q", tc.desc, tc.in, got, tc.want)
		}
	}
}

// TestConverterMatchesConvert: a Converter fed a sequence of reads (values changed, keys
// added and deleted, a bad key, a plan) gives exactly Convert's snapshot or errors at
// every read, and a key whose value did not change keeps the strings of its override
// (what lets the composer find an unchanged route at once).
func TestConverterMatchesConvert(t *testing.T) {
	reads := [][]KV{
		kvs("fg/routes/a/enabled", "true", "fg/routes/b/token_bucket/rate", "100", "fg/active_plan", ""),
		kvs("fg/routes/a/enabled", "false", "fg/routes/b/token_bucket/rate", "100", "fg/active_plan", ""),
		kvs("fg/routes/a/enabled", "false", "fg/routes/b/token_bucket/rate", "100", "fg/routes/c/timeout", " 2s ", "fg/active_plan", ""),
		kvs("fg/routes/a/enabled", "false", "fg/routes/c/timeout", " 2s ", "fg/bogus", "1"),
		kvs("fg/routes/a/enabled", "false", "fg/routes/c/timeout", "3s", "fg/plans/p", "routes/a/enabled: true", "fg/active_plan", "p"),
		kvs("fg/routes/b/token_bucket/rate", "100", "fg/routes/a/enabled", "false"), // not in key order
		kvs(),
	}
	var c Converter
	var prev *Snapshot
	for i, read := range reads {
		want, werr := Convert("fg/", read)
		got, gerr := c.Convert("fg/", read)
		if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
			t.Fatalf("read %d: Convert err %v, Converter err %v", i, werr, gerr)
		}
		if werr != nil {
			continue
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("read %d:\nConvert:   %+v\nConverter: %+v", i, want, got)
		}
		if prev != nil {
			for _, o := range got.Overrides {
				for _, p := range prev.Overrides {
					if o == p && unsafe.StringData(o.Origin) != unsafe.StringData(p.Origin) {
						t.Errorf("read %d: %s unchanged but converted again", i, o.Path)
					}
				}
			}
		}
		prev = got
	}
	if len(c.prev) != 0 {
		t.Errorf("the converter remembers %d keys after an empty read", len(c.prev))
	}
}
