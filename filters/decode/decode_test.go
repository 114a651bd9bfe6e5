package decode_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/filters"
	_ "github.com/floodgate/floodgate/filters/acl"
	"github.com/floodgate/floodgate/filters/decode"
	numberpack "github.com/floodgate/floodgate/filters/number_pack"
	tokenbucket "github.com/floodgate/floodgate/filters/token_bucket"
)

func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		desc, name, src string
		want            []string // lines of the error, in order; nil = valid
	}{
		{desc: "valid", name: "acl", src: "deny_paths: [/admin]\n"},
		{desc: "empty is the defaults", name: "acl", src: ""},
		{desc: "unknown field, located and named", name: "acl", src: "status: 403\ndeny_ips: [1.2.3.4]\n",
			want: []string{`acl.yaml:2: deny_ips: unknown field "deny_ips" (known: allow_methods,`}},
		{desc: "Validate's problem located at its field", name: "acl", src: "deny_paths:\n  - /ok\n  - admin\n",
			want: []string{`acl.yaml:3: deny_paths.1: must start with '/': "admin"`}},
		{desc: "a missing field is located at the top", name: "token_bucket", src: "status: 429\n",
			want: []string{`token_bucket.yaml:1: rate: must be a number of requests per second > 0 (got 0)`}},
		{desc: "decoding and validation problems in one run, by line", name: "token_bucket", src: "burst: -1\nrate: fast\nstatus: 200\n",
			want: []string{
				`token_bucket.yaml:1: burst: must be >= 1 (or unset for rate/10) (got -1)`,
				`token_bucket.yaml:2: rate: want a number, got "fast"`,
				`token_bucket.yaml:3: status: want a 4xx or 5xx status (got 200)`,
			}},
		{desc: "not a mapping", name: "acl", src: "[1, 2]\n", want: []string{`acl.yaml:1: want a mapping of parameters, got a list`}},
		{desc: "aliases refused", name: "acl", src: "deny_paths: &p [/a]\nstrip_headers: *p\n", want: []string{"acl.yaml:1: YAML anchor &p", "acl.yaml:2: YAML alias *p"}},
		{desc: "unknown filter", name: "nope", src: "", want: []string{`unknown filter "nope"`}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := decode.Filter(tc.name, []byte(tc.src))
			if tc.want == nil {
				if err != nil || cfg == nil {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("valid, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d: %q, want it to start with %q", i, lines[i], w)
				}
			}
		})
	}
}

// TestDefaults: Filter fills in derived defaults (filters.Defaulter) after Validate;
// FilterFields neither validates nor fills them in.
func TestDefaults(t *testing.T) {
	cfg, err := decode.Filter("token_bucket", []byte("rate: 95\nkey: ip\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb := cfg.(*tokenbucket.Config)
	if tb.Burst != 10 || tb.MaxKeys != tokenbucket.DefaultMaxKeys || tb.MissingKey != tokenbucket.MissingShared {
		t.Errorf("derived defaults not filled in: burst %d, max_keys %d, missing_key %q", tb.Burst, tb.MaxKeys, tb.MissingKey)
	}
	for mode, want := range map[string]string{"require": "closed", "annotate": "open"} {
		cfg, err := decode.Filter("number_pack", []byte("mode: "+mode+"\npacks: {vip: {file: x}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.(*numberpack.Config).OnUnknown; got != want {
			t.Errorf("number_pack mode %s: on_unknown %q, want %q", mode, got, want)
		}
	}
	raw, err := decode.FilterFields("token_bucket", []byte("rate: -1\n"))
	if err != nil {
		t.Fatalf("FilterFields validated: %v", err)
	}
	if tb := raw.(*tokenbucket.Config); tb.Burst != 0 || tb.Rate != -1 || tb.Status != 429 {
		t.Errorf("FilterFields: burst %d rate %v status %d; want the decoded values over New's defaults only", tb.Burst, tb.Rate, tb.Status)
	}
}

// TestConfigLeavesOutConsequences: Validate's problem about a field that did not decode
// is left out (it follows from the decoding problem).
func TestConfigLeavesOutConsequences(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("rate: fast\nstatus: 200\n"), &n); err != nil {
		t.Fatal(err)
	}
	def, _ := filters.Lookup("token_bucket")
	cfg, problems := decode.Config(def, n.Content[0], []string{"routes", "r", "filters", "token_bucket"})
	if cfg != nil {
		t.Fatal("a Config despite problems")
	}
	var got []string
	for _, p := range problems {
		got = append(got, strings.Join(p.Path, ".")+": "+p.Msg)
		if (p.Node == nil) != strings.HasSuffix(strings.Join(p.Path, "."), "status") {
			t.Errorf("%s: a decoding problem carries its node, Validate's does not", strings.Join(p.Path, "."))
		}
	}
	want := []string{
		`routes.r.filters.token_bucket.rate: want a number, got "fast"`,
		`routes.r.filters.token_bucket.status: want a 4xx or 5xx status (got 200)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
