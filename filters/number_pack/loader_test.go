package numberpack

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/filters/filtertest"
)

// TestNoFlipsAfterLoad loads two overlapping packs and checks every number: each is found
// with exactly the packs that hold it, and numbers of neither pack are not found.
func TestNoFlipsAfterLoad(t *testing.T) {
	const n = 80_000
	dir := t.TempDir()
	a := spreadNumbers(n, 0)
	b := spreadNumbers(n, n/2) // the second half of a, then n/2 of its own
	pa := writePack(t, dir, "a.txt", a, false)
	pb := writePack(t, dir, "b.txt.gz", b, true)
	g, err := loadGeneration([]packSpec{{name: "a", path: pa}, {name: "b", path: pb}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.total != 2*n || g.counts[0] != n || g.counts[1] != n {
		t.Fatalf("loaded %d (%v per pack), want %d (%d each)", g.total, g.counts, 2*n, n)
	}
	want := map[uint64]uint64{}
	for _, x := range a {
		want[x] |= 1
	}
	for _, x := range b {
		want[x] |= 2
	}
	for x, m := range want {
		if got := g.lookup(x); got != m {
			t.Fatalf("number %d: mask %b, want %b", x, got, m)
		}
	}
	for _, x := range spreadNumbers(n, 3*n) { // disjoint from both
		if got := g.lookup(x); got != 0 {
			t.Fatalf("non-member %d: mask %b", x, got)
		}
	}
	// The bigcache store it replaced answers the same for every number.
	c, err := loadCacheGeneration([]packSpec{{name: "a", path: pa}, {name: "b", path: pb}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for x, m := range want {
		if got := c.lookup(strconv.AppendUint(nil, x, 10)); got != m {
			t.Fatalf("bigcache: number %d: mask %b, want %b", x, got, m)
		}
	}
	g.refs.Store(1)
	g.release()
}

func TestBrokenFileKeepsServing(t *testing.T) {
	dir := t.TempDir()
	path := writePack(t, dir, "vip", []uint64{111, 222}, false)
	f := build(t, "reload_every: 100ms\npacks: {vip: {file: "+yamlQuote(path)+"}}", nil)
	g := waitLoaded(t, f)
	if err := os.WriteFile(path+".tmp", []byte("111\n22x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(path+".tmp", path)
	waitFor(t, "the failed load", func() bool { return value(f.m.loadError) >= 1 })
	if f.files.current().gen != g {
		t.Fatal("a broken file replaced the serving packs")
	}
	if v, _ := decide(t, f, filtertest.Req{URI: "/?uin=222"}); v != "" {
		t.Errorf("member rejected after a failed reload: %s", v)
	}
	// Fixed: loaded.
	writePack(t, dir, "vip", []uint64{111, 333}, false)
	waitFor(t, "the fixed file to load", func() bool { return f.files.current().gen != g })
	if v, _ := decide(t, f, filtertest.Req{URI: "/?uin=333"}); v != "" {
		t.Errorf("new member rejected: %s", v)
	}
}

// TestReloadOnNewVersion: a new file version is loaded beside the old and swapped in;
// a file touched without change is not reloaded.
func TestReloadOnNewVersion(t *testing.T) {
	dir := t.TempDir()
	path := writePack(t, dir, "vip", []uint64{111, 222}, false)
	f := build(t, "reload_every: 100ms\npacks: {vip: {file: "+yamlQuote(path)+"}}", nil)
	g1 := waitLoaded(t, f)

	// Touch: same bytes, new mtime.
	later := time.Now().Add(time.Minute)
	os.Chtimes(path, later, later)
	time.Sleep(400 * time.Millisecond)
	if g := f.files.current().gen; g != g1 {
		t.Fatal("a touched but unchanged file was reloaded")
	}

	writePack(t, dir, "vip", []uint64{222, 333}, false)
	waitFor(t, "the new version", func() bool { return f.files.current().gen != g1 })
	filtertest.Run(t, f, []filtertest.Case{
		{Desc: "removed from the pack", Req: filtertest.Req{URI: "/?uin=111"}, Want: "number_pack/not_eligible"},
		{Desc: "still in the pack", Req: filtertest.Req{URI: "/?uin=222"}},
		{Desc: "added to the pack", Req: filtertest.Req{URI: "/?uin=333"}},
	})
	if got := value(f.m.numbers[0]); got != 2 {
		t.Errorf("numbers gauge %v, want 2", got)
	}
	if g1.refs.Load() != 0 {
		t.Errorf("old generation still held (%d refs) after the swap", g1.refs.Load())
	}
}

// TestReloadKeepsPacks: a configuration reload that names the same files reuses the
// loaded cache (nothing is read again); one that adds a pack answers at once for the
// packs it keeps and loads the new one in the background; the retired filter's Close
// does not disturb the new one.
func TestReloadKeepsPacks(t *testing.T) {
	dir := t.TempDir()
	vip := writePack(t, dir, "vip", []uint64{111, 222}, false)
	gold := writePack(t, dir, "gold", []uint64{222, 999}, false)
	one := "packs: {vip: {file: " + yamlQuote(vip) + "}}"
	a := build(t, "reload_every: 1h\n"+one, nil)
	g := waitLoaded(t, a)

	// Same files, another mode: the very same cache, complete at once.
	b := build(t, "reload_every: 1h\nmode: annotate\n"+one, a)
	if v := b.files.current(); v == nil || v.gen != g || v.remap != nil || !b.files.complete {
		t.Fatalf("same packs: view %+v, want generation %p reused whole", v, g)
	}
	a.Close()
	if g.refs.Load() != 1 {
		t.Errorf("generation refs %d after the old filter closed, want 1", g.refs.Load())
	}
	_, r := decide(t, b, filtertest.Req{URI: "/?uin=222"})
	if got := string(r.Ctx.Request.Header.Peek(DefaultHeader)); got != "vip" {
		t.Errorf("reused cache: header %q, want vip", got)
	}

	// Add a pack named before vip (bits move): the kept pack answers at once.
	release := holdLoads(t)
	c := build(t, "reload_every: 1h\npacks: {vip: {file: "+yamlQuote(vip)+"}, gold: {file: "+yamlQuote(gold)+"}}", b)
	v := c.files.current()
	if v == nil || v.gen != g || v.remap == nil || v.known != 2 {
		t.Fatalf("added pack: view %+v, want the old generation remapped, knowing vip (bit 1) only", v)
	}
	filtertest.Run(t, c, []filtertest.Case{
		{Desc: "vip member is known before the load", Req: filtertest.Req{URI: "/?uin=111"}},
		{Desc: "gold-only user is unknown until gold loads", Req: filtertest.Req{URI: "/?uin=999"}, Want: "number_pack/unknown"},
	})
	release()
	waitLoaded(t, c)
	filtertest.Run(t, c, []filtertest.Case{
		{Desc: "gold member after the load", Req: filtertest.Req{URI: "/?uin=999"}},
		{Desc: "vip member after the load", Req: filtertest.Req{URI: "/?uin=111"}},
		{Desc: "non-member", Req: filtertest.Req{URI: "/?uin=5"}, Want: "number_pack/not_eligible"},
	})

	// A renamed pack with the same file is the same pack.
	d := build(t, "reload_every: 1h\npacks: {v: {file: "+yamlQuote(vip)+"}}", c)
	if v := d.files.current(); v == nil || v.known != 1 {
		t.Fatalf("renamed pack: view %+v, want vip's numbers carried over", v)
	}
	if _, err := os.Stat(filepath.Join(dir, "vip")); err != nil {
		t.Fatal(err)
	}
}

// TestReorderedPacksAreNotReloaded: renaming packs so that their bit order changes
// keeps the loaded cache (remapped), without a load.
func TestReorderedPacksAreNotReloaded(t *testing.T) {
	dir := t.TempDir()
	x := writePack(t, dir, "x", []uint64{1, 3}, false)
	y := writePack(t, dir, "y", []uint64{2, 3}, false)
	a := build(t, "mode: annotate\nreload_every: 1h\npacks: {a: {file: "+yamlQuote(x)+"}, b: {file: "+yamlQuote(y)+"}}", nil)
	g := waitLoaded(t, a)
	b := build(t, "mode: annotate\nreload_every: 1h\npacks: {z: {file: "+yamlQuote(x)+"}, b: {file: "+yamlQuote(y)+"}}", a)
	v := b.files.current()
	if v.gen != g || v.remap == nil || v.known != b.full || !b.files.complete {
		t.Fatalf("view %+v complete=%v, want the old generation, remapped and complete", v, b.files.complete)
	}
	for _, tc := range []struct{ uin, want string }{{"1", "z"}, {"2", "b"}, {"3", "b,z"}} {
		_, r := decide(t, b, filtertest.Req{URI: "/?uin=" + tc.uin})
		if got := string(r.Ctx.Request.Header.Peek(DefaultHeader)); got != tc.want {
			t.Errorf("uin %s: header %q, want %q", tc.uin, got, tc.want)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if b.files.current().gen != g || value(b.m.loadOK) != 0 {
		t.Error("reordered packs were loaded again")
	}
}

// TestEverySizeAndLength: packs of every size and number length (1 to 20 digits), one to
// nine packs, gzip or not, load without a single loss.
func TestEverySizeAndLength(t *testing.T) {
	dir := t.TempDir()
	mixed := func(n int, seed uint64) []uint64 {
		out := make([]uint64, 0, n)
		for i := 0; i < n; i++ {
			x := hashNumber(uint64(i) + seed)
			out = append(out, x>>(x%64)) // 1 to 20 digits
		}
		return out
	}
	for _, n := range []int{0, 1, 7, 1000, 30_000} {
		for _, k := range []int{1, 2, 9} {
			var packs []packSpec
			for p := 0; p < k; p++ {
				name := "p" + strconv.Itoa(n) + "-" + strconv.Itoa(k) + "-" + strconv.Itoa(p)
				packs = append(packs, packSpec{name: name, path: writePack(t, dir, name, mixed(n, uint64(p*n/2)), p%2 == 1)})
			}
			g, err := loadGeneration(packs, nil)
			if err != nil {
				t.Fatalf("%d numbers x %d packs: %v", n, k, err)
			}
			for p := range packs {
				for _, x := range mixed(n, uint64(p*n/2)) {
					if x == reservedNumber {
						continue
					}
					if g.lookup(x)&(1<<p) == 0 {
						t.Fatalf("%d numbers x %d packs: %d missing from pack %d", n, k, x, p)
					}
				}
			}
		}
	}
}

// registeredPath counts the registry's entries (versions) of one file.
func registeredPath(path string) int {
	registry.Lock()
	defer registry.Unlock()
	n := 0
	for k := range registry.m {
		if k.path == path {
			n++
		}
	}
	return n
}

// TestPacksSharedBetweenRoutes: two routes naming the same file hold one Set; a new
// version is loaded once for both and the old one is dropped when neither holds it; the
// last route closed drops the file from the registry.
func TestPacksSharedBetweenRoutes(t *testing.T) {
	dir := t.TempDir()
	path := writePack(t, dir, "vip", spreadNumbers(10_000, 0), false)
	other := writePack(t, dir, "other", []uint64{5}, false)
	yaml := "reload_every: 100ms\npacks: {vip: {file: " + yamlQuote(path) + "}}"
	a := build(t, yaml, nil)
	b := build(t, "mode: annotate\nreload_every: 100ms\npacks: {vip: {file: "+yamlQuote(path)+"}, x: {file: "+yamlQuote(other)+"}}", nil)
	ga, gb := waitLoaded(t, a), waitLoaded(t, b)
	if ga.sets[0] != gb.sets[0] {
		t.Fatal("two routes naming the same file hold two sets")
	}
	if n := registeredPath(path); n != 1 {
		t.Fatalf("%d registry entries for the file, want 1", n)
	}
	old := ga.sets[0]

	writePack(t, dir, "vip", spreadNumbers(10_000, 5_000), false)
	// the routes poll on their own: one may load a version the other skips (a poll in the
	// middle of the write), so wait until both hold the same new set
	waitFor(t, "both routes to load the new version, shared", func() bool {
		na, nb := a.files.current().gen, b.files.current().gen
		return na != ga && nb != gb && na.sets[0] == nb.sets[0] && na.sets[0] != old
	})
	waitFor(t, "one registry entry for the file after the reload (the old versions dropped)", func() bool {
		return registeredPath(path) == 1
	})
	na, nb := a.files.current().gen, b.files.current().gen
	registry.Lock()
	refs := old.refs
	registry.Unlock()
	if refs != 0 {
		t.Errorf("old version still has %d references", refs)
	}
	for _, x := range []uint64{spreadNumbers(1, 0)[0], spreadNumbers(1, 14_000)[0]} {
		wantA := na.lookup(x)
		if got := nb.lookup(x) & 1; got != wantA {
			t.Errorf("number %d: route a %b, route b %b", x, wantA, got)
		}
	}
	a.Close()
	if n := registeredPath(path); n != 1 {
		t.Fatalf("closing one route dropped the set the other holds")
	}
	b.Close()
	if n := registeredPath(path); n != 0 {
		t.Fatalf("%d registry entries after both routes closed, want 0", n)
	}
}

// TestReloadUnderTrafficNoFlips: while two goroutines decide without pause, the pack file
// is replaced six times, alternating between two versions that share most numbers. A
// number in both versions is never refused, a number in neither never admitted, and
// every view a request reads is one whole version (all of v1's own numbers or all of
// v2's, never a mix).
func TestReloadUnderTrafficNoFlips(t *testing.T) {
	const n = 20_000
	dir := t.TempDir()
	common := spreadNumbers(n, 0)
	own1, own2 := spreadNumbers(n/10, 10*n), spreadNumbers(n/10, 20*n)
	neither := spreadNumbers(n/10, 30*n)
	v1, v2 := append(slices.Clone(common), own1...), append(slices.Clone(common), own2...)
	path := writePack(t, dir, "p.txt", v1, false)
	f := build(t, "mode: require\nreload_every: 100ms\npacks: {p: {file: "+yamlQuote(path)+"}}", nil)
	defer f.Close()
	waitLoaded(t, f)

	var stop atomic.Bool
	var decisions, refused, admitted, mixed atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := filtertest.NewRequest(t, filtertest.Req{URI: "/?uin=1"})
			var buf [24]byte
			for i := w; !stop.Load(); i++ {
				filtertest.SetQueryArg(r, "uin", strconv.AppendUint(buf[:0], common[i%len(common)], 10))
				if f.Decide(r).Action == filters.Reject {
					refused.Add(1)
				}
				filtertest.SetQueryArg(r, "uin", strconv.AppendUint(buf[:0], neither[i%len(neither)], 10))
				if f.Decide(r).Action != filters.Reject {
					admitted.Add(1)
				}
				v := f.files.current()
				in1, in2 := 0, 0
				for j := 0; j < 20; j++ {
					if v.lookup(own1[(i+j)%len(own1)]) != 0 {
						in1++
					}
					if v.lookup(own2[(i+j)%len(own2)]) != 0 {
						in2++
					}
				}
				if !(in1 == 20 && in2 == 0) && !(in1 == 0 && in2 == 20) {
					mixed.Add(1)
				}
				decisions.Add(2)
			}
		}()
	}
	for round := range 6 {
		before := f.files.current().gen
		next := v2
		if round%2 == 1 {
			next = v1
		}
		writePack(t, dir, "p.txt", next, false)
		waitFor(t, "reload "+strconv.Itoa(round+1), func() bool { return f.files.current().gen != before })
	}
	stop.Store(true)
	wg.Wait()
	if refused.Load() != 0 || admitted.Load() != 0 || mixed.Load() != 0 {
		t.Fatalf("over %d decisions and 6 reloads: %d members of both versions refused, %d numbers of neither admitted, %d views mixing versions",
			decisions.Load(), refused.Load(), admitted.Load(), mixed.Load())
	}
	if decisions.Load() == 0 {
		t.Fatal("no decision ran during the reloads")
	}
}
