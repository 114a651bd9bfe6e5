package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/itest"
)

// TestSnapshotEncoding: the snapshot's own encoder writes exactly what json.Marshal
// writes (so any reader of the old files reads the new ones, and the reverse).
func TestSnapshotEncoding(t *testing.T) {
	saved := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		desc string
		f    snapshotFile
	}{
		{"no keys", snapshotFile{Version: 1, Saved: saved, Prefix: "floodgate/"}},
		{"empty list", snapshotFile{Version: 1, Saved: saved, Prefix: "fg/", Overrides: []config.Override{}}},
		{"plain overrides and a plan", snapshotFile{Version: 1, Saved: saved, Prefix: "fg/", Fingerprint: "0123abcd", Keys: 3,
			Overrides:  []config.Override{{Path: "routes/a/enabled", Value: "false", Origin: "consul:fg/routes/a/enabled"}, {Path: "routes/a/timeout", Value: "2s", Origin: "consul:fg/routes/a/timeout"}},
			ActivePlan: "midnight", Plan: []config.Override{{Path: "routes/b/enabled", Value: "false", Origin: "plan:midnight"}}}},
		{"strings encoding/json escapes", snapshotFile{Version: 1, Saved: saved, Prefix: "fg/<&>/", Keys: 1,
			Overrides: []config.Override{{Path: "routes/a/fallback/body", Value: "\"quoted\" \\ <b>&amp;</b>\n\t\x00\x7f é \u2028 \xff", Origin: "consul:fg/ключ"}}}},
		{"an empty value", snapshotFile{Version: 1, Saved: time.Time{}, Overrides: []config.Override{{Path: "routes/a/timeout", Origin: "consul:x"}}}},
	} {
		want, err := json.Marshal(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendSnapshot(nil, tc.f); !bytes.Equal(got, append(want, '\n')) {
			t.Errorf("%s:\n got %s\nwant %s", tc.desc, got, want)
		}
	}
}

// TestSnapshotWriter: snapshots handed to the writer faster than it writes are
// coalesced (only the newest is written), and one handed to it just before the watcher
// stops is still written.
func TestSnapshotWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lkg.json")
	sw := newSnapshotWriter(path, "fg/", zap.NewNop())
	snap := func(fp string) *Snapshot {
		return &Snapshot{Fingerprint: fp, Keys: 1, Overrides: []config.Override{{Path: "routes/a/enabled", Value: fp, Origin: "consul:fg/routes/a/enabled"}}}
	}
	// three saves before the writer runs: one write, of the last
	sw.save(snap("1"))
	sw.save(snap("2"))
	sw.save(snap("3"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sw.run(ctx)
	itest.WaitFor(t, "the write", itest.MinWait, func() bool { return sw.wrote.Load() == 1 })
	if s, _, err := ReadSnapshot(path, "fg/"); err != nil || s.Fingerprint != "3" || s.Overrides[0].Value != "3" {
		t.Fatalf("written: %+v, %v; want the last saved (3)", s, err)
	}
	// saved and stopped at once: written before the writer ends
	sw.save(snap("4"))
	cancel()
	<-sw.done
	if s, _, err := ReadSnapshot(path, "fg/"); err != nil || s.Fingerprint != "4" {
		t.Fatalf("after stop: %+v, %v; want 4", s, err)
	}
	if n := sw.wrote.Load(); n != 2 {
		t.Errorf("%d writes for 4 saves in two bursts, want 2", n)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".floodgate-lkg-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherWritesTheSnapshot: a read the watcher applies ends up in the last-known-good
// snapshot (written by the snapshot writer, off the watcher's path).
func TestWatcherWritesTheSnapshot(t *testing.T) {
	_, up := newUpdater(t, sourceDoc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "lkg.json")
	lister := &gatedLister{gate: make(chan struct{}), kvs: keys("lottery/enabled=false")}
	close(lister.gate)
	StartSource(ctx, up, SourceOptions{Options: Options{Lister: lister, SnapshotPath: path}})
	want, err := Convert("floodgate/", lister.kvs)
	must(t, err)
	waitFor(t, "the snapshot of the read", func() bool {
		s, _, err := ReadSnapshot(path, "floodgate/")
		return err == nil && s != nil && s.Fingerprint == want.Fingerprint
	})
	s, _, _ := ReadSnapshot(path, "floodgate/")
	if len(s.Overrides) != 1 || s.Overrides[0].Path != "routes/lottery/enabled" || s.Overrides[0].Value != "false" {
		t.Errorf("snapshot overrides %+v", s.Overrides)
	}
}
