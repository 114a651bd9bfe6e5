package config_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
)

const loaderBase = `
server: {listen: 127.0.0.1:18080}
pools:
  q: {addrs: [127.0.0.1:8081]}
  d: {addrs: [127.0.0.1:8082, 127.0.0.1:8083], max_conns: 64}
routes:
  a: {path: /a, pool: q, filters: {acl: {allow_methods: [GET]}}}
  b: {path: /b, pool: q, core: true, filters: {token_bucket: {rate: 100, burst: 10}}}
  c: {path: /c, pool: d, host: Act.Example.com, fallback: {status: 429, headers: {X-Why: busy}}}
  d: {path: /d, pool: d, host: "*.example.com", filters: {sample: {ratio: 0.5}}}
  e: {path: /, pool: q}
  g: {path: /g, pool: d, async: {deliver: {rate: 10}}}
  a-1: {path: /a-1, pool: q}
`

// loaderKeys are the keys the random walk sets, with good and bad values.
var loaderKeys = []struct {
	path   string
	values []string
}{
	{"routes/a/enabled", []string{"true", "false", "nah"}},
	{"routes/a/timeout", []string{"1s", "250ms", "-1s"}},
	{"routes/a-1/enabled", []string{"false", "true"}},
	{"routes/b/token_bucket/rate", []string{"100", "200", "-5"}},
	{"routes/b/token_bucket/burst", []string{"10", "1e30"}},
	{"routes/b/priority", []string{"3", "9"}},
	{"routes/c/fallback/status", []string{"503", "99"}},
	{"routes/c/fallback/headers/X-A", []string{"v", "bad\nvalue"}},
	{"routes/d/path", []string{"/d", "/a", "/dd"}},
	{"routes/d/sample/ratio", []string{"0.2", "2"}},
	{"routes/e/pool", []string{"q", "d", "nope"}},
	{"routes/g/async/deliver/rate", []string{"5", "0"}},
	{"routes/new/path", []string{"/new"}},
	{"routes/new/pool", []string{"q"}},
	{"routes/lotery/enabled", []string{"false"}},
	{"routes/a/fallback", []string{"x"}},
	{"pools/q/max_conns", []string{"100", "0"}},
	{"pools/q/adaptive/enabled", []string{"true", "false"}},
	{"pools/d/eject/failures", []string{"3", "-1"}},
	{"server/listen", []string{"0.0.0.0:80"}},
}

// compareLoads checks that a Loader's result is Load's: the same errors in the same
// order, or an equal configuration with equal sources.
func compareLoads(t *testing.T, step string, l *config.Loader, doc *config.Document, layers ...[]config.Override) *config.Config {
	t.Helper()
	want, werr := config.Load(doc, layers...)
	got, gerr := l.Load(doc, layers...)
	switch {
	case (werr == nil) != (gerr == nil):
		t.Fatalf("%s: Load err = %v, Loader err = %v", step, werr, gerr)
	case werr != nil:
		if werr.Error() != gerr.Error() {
			t.Fatalf("%s: errors differ:\nLoad:\n%v\nLoader:\n%v", step, werr, gerr)
		}
		return nil
	}
	if !reflect.DeepEqual(want.Sources, got.Sources) {
		t.Fatalf("%s: sources differ:\nLoad:   %v\nLoader: %v", step, want.Sources, got.Sources)
	}
	if !reflect.DeepEqual(want, got) {
		for name := range want.Routes {
			if !reflect.DeepEqual(want.Routes[name], got.Routes[name]) {
				t.Errorf("%s: route %s differs:\nLoad:   %+v\nLoader: %+v", step, name, want.Routes[name], got.Routes[name])
			}
		}
		t.Fatalf("%s: configurations differ", step)
	}
	return got
}

// TestLoaderMatchesLoad: a random walk of key changes (good and bad values, created
// routes, pool and plan changes, a new file) composed by one Loader gives, at every step,
// exactly what Load gives.
func TestLoaderMatchesLoad(t *testing.T) {
	docs := make([]*config.Document, 2)
	for i, text := range []string{loaderBase, strings.Replace(loaderBase, "path: /b,", "path: /bb,", 1)} {
		var err error
		if docs[i], err = config.Parse("base.yaml", []byte(text)); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var l config.Loader
	keys := map[string]string{} // path -> value of the override layer
	plan := map[string]string{}
	doc := docs[0]
	layer := func(m map[string]string, origin string) []config.Override {
		var out []config.Override
		for _, p := range slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		}) {
			out = append(out, config.Override{Path: p, Value: m[p], Origin: origin + p})
		}
		return out
	}
	ok, bad := 0, 0
	for step := range 400 {
		k := loaderKeys[rng.IntN(len(loaderKeys))]
		switch r := rng.IntN(20); {
		case r == 0:
			doc = docs[rng.IntN(len(docs))]
		case r == 1:
			clear(keys)
		case r < 4:
			delete(keys, k.path)
		case r < 6:
			plan[k.path] = k.values[0]
		case r == 6:
			clear(plan)
		default:
			keys[k.path] = k.values[rng.IntN(len(k.values))]
		}
		// most steps fix the bad values again, so that good loads follow bad ones
		if rng.IntN(3) == 0 {
			for p := range keys {
				if i := slices.IndexFunc(loaderKeys, func(lk struct {
					path   string
					values []string
				}) bool {
					return lk.path == p
				}); i >= 0 && keys[p] != loaderKeys[i].values[0] {
					delete(keys, p)
				}
			}
		}
		if compareLoads(t, "step "+strings.Repeat("+", 0)+string(rune('0'+step%10)), &l, doc, layer(keys, "consul:fg/"), layer(plan, "plan:p/")) != nil {
			ok++
		} else {
			bad++
		}
	}
	t.Logf("%d valid and %d invalid compositions compared", ok, bad)
	if ok < 50 || bad < 50 {
		t.Fatalf("the walk should give both many valid and many invalid compositions: %d valid, %d invalid", ok, bad)
	}
}

// TestLoaderKeepsUnchangedRoutes: after a kill switch only the switched route is a new
// *Route; the others are the previous configuration's (the gateway keeps what it built
// for them). A pool change or a new file decodes every route again.
func TestLoaderKeepsUnchangedRoutes(t *testing.T) {
	doc, err := config.Parse("base.yaml", []byte(loaderBase))
	if err != nil {
		t.Fatal(err)
	}
	var l config.Loader
	ov := func(kv ...string) []config.Override {
		var out []config.Override
		for i := 0; i < len(kv); i += 2 {
			out = append(out, config.Override{Path: kv[i], Value: kv[i+1], Origin: "consul:fg/" + kv[i]})
		}
		return out
	}
	first := compareLoads(t, "first", &l, doc, ov("routes/b/token_bucket/rate", "200"))
	second := compareLoads(t, "switch a", &l, doc, ov("routes/a/enabled", "false", "routes/b/token_bucket/rate", "200"))
	if first == nil || second == nil {
		t.Fatal("want valid loads")
	}
	for name, r := range second.Routes {
		if same := r == first.Routes[name]; same != (name != "a") {
			t.Errorf("route %s: kept = %v, want %v", name, same, name != "a")
		}
	}
	if second.Routes["a"].Enabled || !first.Routes["a"].Enabled {
		t.Errorf("route a: enabled %v -> %v, want true -> false", first.Routes["a"].Enabled, second.Routes["a"].Enabled)
	}
	third := compareLoads(t, "pool change", &l, doc, ov("pools/q/max_conns", "100", "routes/a/enabled", "false", "routes/b/token_bucket/rate", "200"))
	for name, r := range third.Routes {
		if r == second.Routes[name] {
			t.Errorf("route %s kept across a pool change", name)
		}
	}
	doc2, _ := config.Parse("base.yaml", []byte(loaderBase))
	fourth := compareLoads(t, "new file", &l, doc2, ov("pools/q/max_conns", "100", "routes/a/enabled", "false", "routes/b/token_bucket/rate", "200"))
	for name, r := range fourth.Routes {
		if r == third.Routes[name] {
			t.Errorf("route %s kept across a new file", name)
		}
	}
}

// TestLoaderGolden: every golden configuration composes the same through a Loader
// (first load) and again (the second load keeps every route).
func TestLoaderGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/validate/*.txt")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in, _, _ := strings.Cut(string(b), separator)
		doc, err := config.Parse("input.yaml", []byte(in))
		if err != nil {
			continue
		}
		var l config.Loader
		compareLoads(t, filepath.Base(f)+" first", &l, doc)
		compareLoads(t, filepath.Base(f)+" again", &l, doc)
	}
}
