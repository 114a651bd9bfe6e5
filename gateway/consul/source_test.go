package consul

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
)

const sourceDoc = `
pools:
  q: {addrs: ["127.0.0.1:9"]}
routes:
  lottery: {path: /lottery, pool: q}
  info:    {path: /info, pool: q}
`

// blockedLister answers no read until the process stops: what the source does before
// Consul's first answer.
type blockedLister struct{}

func (blockedLister) List(ctx context.Context, _ string, _ uint64, _ time.Duration) ([]KV, uint64, error) {
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

// gatedLister answers its first read with kvs once gate is closed, then no more.
type gatedLister struct {
	gate chan struct{}
	kvs  []KV
	once sync.Once
}

func (l *gatedLister) List(ctx context.Context, _ string, _ uint64, _ time.Duration) ([]KV, uint64, error) {
	first := false
	l.once.Do(func() { first = true })
	if first {
		select {
		case <-l.gate:
			return l.kvs, 5, nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

func newUpdater(t *testing.T, yaml string) (*gateway.Gateway, *gateway.Updater) {
	t.Helper()
	doc, err := config.Parse("gw.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{})
	up := gateway.NewUpdater(gw, nil)
	if _, err := up.Apply(gateway.Update{Source: "file:gw.yaml", Doc: doc}); err != nil {
		t.Fatal(err)
	}
	return gw, up
}

// TestSourceSeedsFromSnapshot: before Consul answers, a source serves its last-known-good
// snapshot when there is a usable one, and says stale in every case.
func TestSourceSeedsFromSnapshot(t *testing.T) {
	good, err := Convert("floodgate/", keys("lottery/enabled=false"))
	if err != nil {
		t.Fatal(err)
	}
	unknownRoute, err := Convert("floodgate/", keys("nosuch/enabled=false"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc    string
		write   func(path string) // makes the snapshot file (nil: none)
		lottery bool              // routes.lottery.enabled served after StartSource
		stale   string
		seeded  bool // the watcher compares its first read with the snapshot
	}{
		{desc: "no snapshot yet: the file alone", lottery: true, stale: "(no snapshot yet)"},
		{desc: "a snapshot is applied before consul answers",
			write:   func(p string) { must(t, WriteSnapshot(p, "floodgate/", good)) },
			lottery: false, stale: "serving the last-known-good snapshot of", seeded: true},
		{desc: "a damaged snapshot is not used",
			write:   func(p string) { must(t, os.WriteFile(p, []byte("{not json"), 0o644)) },
			lottery: true, stale: "(snapshot unusable)"},
		{desc: "a snapshot of another prefix is not used",
			write:   func(p string) { must(t, WriteSnapshot(p, "other/", good)) },
			lottery: true, stale: "(snapshot unusable)"},
		{desc: "a snapshot that does not validate against this file is not used",
			write:   func(p string) { must(t, WriteSnapshot(p, "floodgate/", unknownRoute)) },
			lottery: true, stale: "(snapshot rejected)"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lkg.json")
			if tc.write != nil {
				tc.write(path)
			}
			gw, up := newUpdater(t, sourceDoc)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stale []string
			var mu sync.Mutex
			src := StartSource(ctx, up, SourceOptions{Options: Options{Lister: blockedLister{}, SnapshotPath: path,
				OnStale: func(r string) { mu.Lock(); stale = append(stale, r); mu.Unlock() }}})
			if got := gw.Config().Routes["lottery"].Enabled; got != tc.lottery {
				t.Errorf("lottery enabled = %v, want %v", got, tc.lottery)
			}
			st := src.Watcher.Status()
			if !strings.Contains(st.Stale, tc.stale) {
				t.Errorf("stale = %q, want it to say %q", st.Stale, tc.stale)
			}
			mu.Lock()
			if len(stale) != 1 || stale[0] != st.Stale {
				t.Errorf("OnStale told %q, want once %q", stale, st.Stale)
			}
			mu.Unlock()
			if (st.Fingerprint == good.Fingerprint) != tc.seeded {
				t.Errorf("watcher's content in force %q, seeded from the snapshot: %v", st.Fingerprint, tc.seeded)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fakeRegistrar fails its first registrations, then records the meta it is given.
type fakeRegistrar struct {
	mu       sync.Mutex
	failures int
	attempts int
	meta     map[string]string
	peers    bool
}

func (r *fakeRegistrar) Register(meta map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.attempts <= r.failures {
		return errors.New("connection refused")
	}
	r.meta = meta
	return nil
}

func (r *fakeRegistrar) UpdateMeta(meta map[string]string) {
	r.mu.Lock()
	r.meta = meta
	r.mu.Unlock()
}

func (r *fakeRegistrar) WatchPeers(ctx context.Context, _ time.Duration) {
	r.mu.Lock()
	r.peers = true
	r.mu.Unlock()
}

// waitFor polls cond until it holds (generous limit: the machine may be loaded).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSourceRegistersAndFollowsEveryUpdate: registration is retried until Consul takes
// it, and the catalog meta follows every applied update - a file reload (SIGHUP) as well
// as Consul's, which `ctl status` showed as a stale generation before.
func TestSourceRegistersAndFollowsEveryUpdate(t *testing.T) {
	gw, up := newUpdater(t, sourceDoc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := &fakeRegistrar{failures: 2}
	var held string
	lister := &gatedLister{gate: make(chan struct{}), kvs: keys("lottery/enabled=false")}
	src := StartSource(ctx, up, SourceOptions{
		Options:   Options{Lister: lister, OnHeld: func(r string) { held = r }},
		Registrar: reg, Generation: gw.Generation, AdminAddr: "127.0.0.1:9901", RetryEvery: time.Millisecond,
	})
	meta := func() map[string]string {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return reg.meta
	}
	waitFor(t, "the third registration attempt to succeed", func() bool { return meta() != nil })
	reg.mu.Lock()
	if reg.attempts != 3 {
		t.Errorf("registered at attempt %d, want 3 (two refused)", reg.attempts)
	}
	reg.mu.Unlock()
	if m := meta(); m[MetaGeneration] != "1" || m[MetaAdmin] != "127.0.0.1:9901" || !strings.Contains(m[MetaStale], "waiting for the first read") {
		t.Errorf("first meta %v", m)
	}
	waitFor(t, "the peers to be followed", func() bool { reg.mu.Lock(); defer reg.mu.Unlock(); return reg.peers })

	// a file reload: a new generation, published without any Consul event (that the
	// reload itself asks for it is TestSourceRepublishesAfterEveryUpdate's)
	doc, err := config.Parse("gw.yaml", []byte(strings.Replace(sourceDoc, "/info", "/information", 1)))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := up.Apply(gateway.Update{Source: "file:gw.yaml", Doc: doc, Note: "SIGHUP"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the meta to show the reloaded file's generation", func() bool { return meta()[MetaGeneration] == strconv.FormatUint(gen, 10) })

	// a read from Consul: the meta shows its generation and its fingerprint together (the
	// updater's hook runs before the watcher records what it applied: the watcher asks
	// again once it has)
	close(lister.gate)
	want, err := Convert("floodgate/", lister.kvs)
	must(t, err)
	waitFor(t, "the meta to show the consul read", func() bool {
		m := meta()
		return m[MetaFingerprint] == want.Fingerprint && m[MetaGeneration] == strconv.FormatUint(gw.Generation(), 10) && m[MetaStale] == ""
	})

	// a hold from the watcher is published too
	src.Watcher.setHeld("the read is empty")
	waitFor(t, "the meta to show the hold", func() bool { return meta()[MetaHeld] == "the read is empty" })
	if held != "the read is empty" {
		t.Errorf("OnHeld told %q", held)
	}
}

// TestSourceRepublishesAfterEveryUpdate: every applied update - a file reload as well as
// a Consul read - and every change of the watcher's state asks for the catalog meta to be
// published again (ctl status showed the generation before a SIGHUP reload: only the
// watcher's events did).
func TestSourceRepublishesAfterEveryUpdate(t *testing.T) {
	_, up := newUpdater(t, sourceDoc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := StartSource(ctx, up, SourceOptions{Options: Options{Lister: blockedLister{}}}) // no registrar: nothing takes the requests
	asked := func() bool {
		select {
		case <-src.kick:
			return true
		default:
			return false
		}
	}
	if !asked() {
		t.Error("seeding (stale: waiting for the first read) did not ask to publish")
	}
	if asked() {
		t.Fatal("a request is still pending after it was taken")
	}
	doc, err := config.Parse("gw.yaml", []byte(strings.Replace(sourceDoc, "/info", "/information", 1)))
	must(t, err)
	if _, err := up.Apply(gateway.Update{Source: "file:gw.yaml", Doc: doc, Note: "SIGHUP"}); err != nil {
		t.Fatal(err)
	}
	if !asked() {
		t.Error("a file reload did not ask to publish the new generation")
	}
	bad, err := config.Parse("gw.yaml", []byte(strings.Replace(sourceDoc, "pool: q}", "pool: nosuch}", 1)))
	must(t, err)
	if _, err := up.Apply(gateway.Update{Source: "file:gw.yaml", Doc: bad}); err == nil {
		t.Fatal("a file naming an unknown pool was applied")
	}
	if asked() {
		t.Error("a rejected update asked to publish (the generation did not change)")
	}
	src.Watcher.setHeld("held for a test")
	if !asked() {
		t.Error("a hold did not ask to publish")
	}
	src.Watcher.setStale("")
	if !asked() {
		t.Error("turning fresh did not ask to publish")
	}
}
