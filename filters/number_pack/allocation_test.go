//go:build !race

package numberpack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/backend"
	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// What bigcache v3.1.0's Get costs on a hit: it copies the stored key (to compare it)
// and the value. Only the service's answer cache pays it: file packs are packfile.Sets,
// and everything else on the request path allocates nothing.
const bigcacheHitAllocs = 2

func allocs(t *testing.T, f filters.Filter, uri string, headers map[string]string) float64 {
	t.Helper()
	r := filtertest.NewRequest(t, filtertest.Req{URI: uri, Headers: headers})
	f.Decide(r)
	return testing.AllocsPerRun(1000, func() { f.Decide(r) })
}

func TestAllocs(t *testing.T) {
	require := build(t, "mode: require\n"+bothPacks, nil)
	annotate := build(t, "mode: annotate\n"+bothPacks, nil)
	waitLoaded(t, require)
	waitLoaded(t, annotate)

	dir := t.TempDir()
	var packs []string
	for i := 0; i < 10; i++ {
		name := "p" + string(rune('a'+i))
		writePack(t, dir, name, []uint64{5000}, false)
		packs = append(packs, name+": {file: "+yamlQuote(filepath.Join(dir, name))+"}")
	}
	many := build(t, "mode: annotate\npacks: {"+strings.Join(packs, ", ")+"}", nil)
	waitLoaded(t, many)

	single := build(t, "packs: {vip: {file: "+yamlQuote(vipFile)+"}}", nil)
	waitLoaded(t, single)

	ids := filepath.Join(dir, "ids.txt")
	if err := os.WriteFile(ids, []byte("oAbc-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	strs := build(t, "packs: {vip: {file: "+yamlQuote(vipFile)+"}, ids: {file: "+yamlQuote(ids)+", keys: string}}", nil)
	waitLoaded(t, strs)

	_, addr, _ := startPacks(t, backend.Faults{})
	svc := build(t, serviceYAML(addr, "")+"mode: annotate", nil)
	forged := map[string]string{DefaultHeader: "vip"}
	for _, tc := range []struct {
		desc string
		f    filters.Filter
		uri  string
		want float64
	}{
		{"require: non-member", require, "/?uin=42", 0},
		{"require: no key", require, "/", 0},
		{"require: member", require, "/?uin=10003", 0},
		{"require, one pack: member", single, "/?uin=10003", 0},
		{"require, one pack: non-member", single, "/?uin=30001", 0},
		{"annotate: non-member", annotate, "/?uin=42", 0},
		{"annotate: member (header set)", annotate, "/?uin=10003", 0},
		{"annotate, 10 packs: member (pooled header buffer)", many, "/?uin=5000", 0},
		{"string pack: member (bigcache copies the key)", strs, "/?uin=oAbc-1", 1},
		{"string pack route: number member (a miss in the string pack)", strs, "/?uin=10003", 0},
		{"string pack route: non-member", strs, "/?uin=nobody", 0},
		{"service: cached member", svc, "/?uin=10003", bigcacheHitAllocs},
		{"service: cached non-member", svc, "/?uin=42", bigcacheHitAllocs},
	} {
		if got := allocs(t, tc.f, tc.uri, forged); got != tc.want {
			t.Errorf("%s: %.1f allocs per request, want %.0f", tc.desc, got, tc.want)
		}
	}
}

// TestAllocsServiceLookup reports (does not assert) what a lookup through to the
// backend costs, cache Set included.
func TestAllocsServiceLookup(t *testing.T) {
	_, addr, _ := startPacks(t, backend.Faults{})
	f := build(t, "source: service\nservice: {addr: "+addr+", ttl: 1s, negative_ttl: 1s, stale_ttl: 0s}\npacks: {vip: {}}", nil)
	r := filtertest.NewRequest(t, filtertest.Req{URI: "/?uin=10001"})
	f.Decide(r)
	n := testing.AllocsPerRun(200, func() {
		r.Now += 2 * sec // always expired: every Decide asks the backend
		f.Decide(r)
	})
	t.Logf("read-through lookup: %.1f allocs per request", n)
	if value(f.m.svcFetched) < 200 {
		t.Fatalf("only %v lookups reached the backend", value(f.m.svcFetched))
	}
}
