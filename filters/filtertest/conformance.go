package filtertest

import (
	"bufio"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/decode"
)

// Conformance is what a filter hands the conformance kit: every filter runs the same
// checks (see RunConformance) from its own test, with its own configuration and requests.
type Conformance struct {
	// Name is the filter's registered name.
	Name string
	// Valid is a valid configuration in block YAML that sets most fields.
	Valid string
	// Minimal is the smallest valid configuration (required fields only), where every
	// default applies: Validate must not fill them in either.
	Minimal string
	// Decisions are requests decided by a filter built from Valid; each must allocate
	// nothing (checked in builds without -race, which allocates itself).
	Decisions []Req
	// Ready, if set, waits until a filter just built serves from its loaded state (a
	// number_pack loading its files): before the allocation check, and before prev is
	// rebuilt in the state check.
	Ready func(t *testing.T, f filters.Filter)
	// KeepsState, for a filter that keeps state across reloads, checks that next (built
	// from Valid over prev, as the gateway does on a reload that did not change the
	// filter) carries prev's state: a token bucket its tokens, number_pack its loaded
	// store. Nil for a filter that keeps no state - say so in a comment.
	KeepsState func(t *testing.T, prev, next filters.Filter)
}

// RunConformance runs the kit's checks as subtests of t:
//   - unknown_field: a field the filter does not know is rejected, and the error names it;
//   - validate_changes_nothing: Validate leaves the decoded configuration as it was
//     (defaults live in New; derived ones in Defaults, see filters.Defaulter);
//   - build_changes_nothing: Build leaves the configuration as it was (what /config shows
//     and what the next reload starts from);
//   - config_names: every field /config shows (JSON) has the name the configuration and
//     Consul use (YAML), so that operators read back what they wrote;
//   - keeps_state: Build(prev) with unchanged parameters keeps prev's state;
//   - no_allocs: Decide allocates nothing;
//   - forwards_as_sent: Decide leaves the request as the upstream would get it, byte for
//     byte (each of Decisions, with an awkward query and awkward cookies added): reading
//     the request through fasthttp's parsed views (QueryArgs, Header.VisitAll, cookies)
//     makes fasthttp re-encode the query and re-serialise the cookies it forwards; read
//     through filters.Request.Query/Cookie and KeySpec instead.
func RunConformance(t *testing.T, c Conformance) {
	t.Helper()
	t.Run("unknown_field", func(t *testing.T) {
		src := strings.TrimRight(c.Valid, "\n") + "\nzz_no_such_field: 1\n"
		err := DecodeErr(t, c.Name, src)
		if !strings.Contains(err.Error(), "zz_no_such_field") {
			t.Errorf("the error for an unknown field does not name it: %v", err)
		}
	})
	t.Run("validate_changes_nothing", func(t *testing.T) {
		if c.Minimal == "" {
			t.Fatal("no Minimal configuration")
		}
		for _, src := range []string{c.Minimal, c.Valid} {
			a, err := decode.FilterFields(c.Name, []byte(src))
			if err != nil {
				t.Fatalf("does not decode: %v\n%s", err, src)
			}
			b, _ := decode.FilterFields(c.Name, []byte(src))
			if err := a.Validate(); err != nil {
				t.Fatalf("does not validate: %v\n%s", err, src)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("Validate changed the configuration:\nbefore %+v\nafter  %+v\n(defaults belong in New, derived ones in Defaults)\n%s", b, a, src)
			}
		}
	})
	t.Run("build_changes_nothing", func(t *testing.T) {
		for _, src := range []string{c.Minimal, c.Valid} {
			cfg, want := Decode(t, c.Name, src), Decode(t, c.Name, src)
			f := buildConfig(t, c.Name, cfg, nil)
			if c.Ready != nil {
				c.Ready(t, f)
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("Build changed the configuration:\nbefore %+v\nafter  %+v\n(/config shows it; the next reload builds from it)\n%s", want, cfg, src)
			}
		}
	})
	t.Run("config_names", func(t *testing.T) {
		cfg := Decode(t, c.Name, c.Valid)
		for _, p := range nameProblems(reflect.TypeOf(cfg), c.Name, map[reflect.Type]bool{}) {
			t.Error(p)
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Errorf("/config cannot show the configuration: %v", err)
		}
	})
	t.Run("keeps_state", func(t *testing.T) {
		if c.KeepsState == nil {
			t.Skipf("%s keeps no state across reloads", c.Name)
		}
		prev := Build(t, c.Name, c.Valid, nil)
		if c.Ready != nil {
			c.Ready(t, prev)
		}
		next := Build(t, c.Name, c.Valid, prev)
		c.KeepsState(t, prev, next)
	})
	t.Run("forwards_as_sent", func(t *testing.T) {
		f := Build(t, c.Name, c.Valid, nil)
		if c.Ready != nil {
			c.Ready(t, f)
		}
		for _, rq := range c.Decisions {
			rq = awkward(rq)
			want := wire(t, NewRequest(t, rq))
			req := NewRequest(t, rq)
			f.Decide(req)
			if got := wire(t, req); got != want {
				t.Errorf("%s %s: Decide changed the request the upstream gets:\nbefore %q\nafter  %q", rq.Method, rq.URI, want, got)
			}
		}
	})
	t.Run("no_allocs", func(t *testing.T) {
		if len(c.Decisions) == 0 {
			t.Fatal("no Decisions to check")
		}
		if raceEnabled {
			t.Skip("the race detector allocates; run without -race")
		}
		f := Build(t, c.Name, c.Valid, nil)
		if c.Ready != nil {
			c.Ready(t, f)
		}
		for _, rq := range c.Decisions {
			AssertNoAllocs(t, f, NewRequest(t, rq))
		}
	})
}

var textMarshaler = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
var jsonMarshaler = reflect.TypeOf((*json.Marshaler)(nil)).Elem()

// nameProblems walks a configuration type: every exported field that JSON shows must
// have the JSON name of its YAML name (the decoder's rule: the yaml tag, else the
// lower-cased Go name). It returns one line per field that does not.
func nameProblems(typ reflect.Type, path string, seen map[reflect.Type]bool) []string {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || seen[typ] || typ.Implements(jsonMarshaler) || reflect.PointerTo(typ).Implements(jsonMarshaler) ||
		typ.Implements(textMarshaler) || reflect.PointerTo(typ).Implements(textMarshaler) {
		return nil
	}
	seen[typ] = true
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		jname, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if jname == "-" {
			continue
		}
		if jname == "" {
			jname = f.Name
		}
		yname, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if yname == "-" {
			out = append(out, fmt.Sprintf("%s.%s: not configurable (yaml:\"-\") yet shown by /config as %q; tag it json:\"-\" or give it a YAML name", path, f.Name, jname))
			continue
		}
		if yname == "" {
			yname = strings.ToLower(f.Name)
		}
		if jname != yname {
			out = append(out, fmt.Sprintf("%s.%s: /config shows %q, the configuration calls it %q (add json:%q)", path, f.Name, jname, yname, yname))
		}
		out = append(out, nameProblems(f.Type, path+"."+yname, seen)...)
	}
	return out
}

// awkward adds to rq query parameters and cookies that fasthttp's parsed views would
// change when they are written back (escapes it re-encodes, a ';', a quoted cookie, a
// cookie holding quotes, which it drops).
func awkward(rq Req) Req {
	sep := "?"
	if strings.Contains(rq.URI, "?") {
		sep = "&"
	}
	if rq.URI == "" {
		rq.URI = "/"
	}
	rq.URI += sep + "fx=a%7Eb&fk=a;b&fs=AB%2bc"
	cookies := map[string]string{"fq": `"quoted"`, "fj": `{"a":1}`}
	for k, v := range rq.Cookies {
		cookies[k] = v
	}
	rq.Cookies = cookies
	return rq
}

// wire is req as fasthttp writes it upstream.
func wire(t *testing.T, req *filters.Request) string {
	t.Helper()
	var b strings.Builder
	w := bufio.NewWriter(&b)
	if err := req.Ctx.Request.Write(w); err != nil {
		t.Fatalf("the request cannot be written: %v", err)
	}
	w.Flush()
	return b.String()
}
