package consul

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
)

// Registrar is what a Source does with the process's entry in Consul's catalog
// (*Instance): register it with meta, keep the meta current, follow the live peers.
type Registrar interface {
	Register(meta map[string]string) error
	UpdateMeta(meta map[string]string)
	WatchPeers(ctx context.Context, waitTime time.Duration)
}

// SourceOptions wires Consul into a process as a configuration source.
type SourceOptions struct {
	// Options are the watcher's (Client, Prefix, SnapshotPath, Logger, OnStale, OnHeld...).
	Options
	// Registrar, if set, is registered in the catalog (retrying every RetryEvery while
	// Consul is down), its meta kept to Meta, and its live peers followed. Processes that
	// serve no traffic (the deliverer) leave it nil.
	Registrar Registrar
	// Generation returns the generation the process serves (meta "generation").
	Generation func() uint64
	// AdminAddr is the process's admin listener (meta "admin": ctl reads /config there).
	AdminAddr string
	// RetryEvery is the wait between registration attempts (default 2s).
	RetryEvery time.Duration
}

// Source is Consul wired into a process: the watcher, fed the last-known-good snapshot
// first, and the process's catalog entry.
type Source struct {
	Watcher *Watcher
	o       SourceOptions
	kick    chan struct{}
}

// Catalog meta keys a registered gateway publishes (ctl status and the console read them).
const (
	MetaGeneration  = "generation"
	MetaFingerprint = "fingerprint"
	MetaPlan        = "plan"
	MetaStale       = "stale"
	MetaHeld        = "held"
	MetaAdmin       = "admin"
)

// DefaultSnapshotPath is where a process keeps its last-known-good snapshot when none is
// given: in the user cache directory, named after name (a listen address, made safe).
func DefaultSnapshotPath(name string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "floodgate", "lkg-"+strings.NewReplacer(":", "_", "/", "_").Replace(name)+".json")
}

// StartSource makes Consul a configuration source of up: it first applies the
// last-known-good snapshot (so that a process restarted with Consul down keeps its
// switches, and says it is stale), then watches the prefix until ctx is done and, with a
// Registrar, registers the process and keeps its catalog meta current - after every
// applied update, from Consul or any other source (a file reloaded with SIGHUP changes
// the generation too).
func StartSource(ctx context.Context, up *gateway.Updater, o SourceOptions) *Source {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.RetryEvery == 0 {
		o.RetryEvery = 2 * time.Second
	}
	if o.Generation == nil {
		o.Generation = func() uint64 { return 0 }
	}
	s := &Source{o: o, kick: make(chan struct{}, 1)}
	wo := o.Options
	wo.OnStale = func(reason string) {
		if o.OnStale != nil {
			o.OnStale(reason)
		}
		s.changed()
	}
	wo.OnHeld = func(reason string) {
		if o.OnHeld != nil {
			o.OnHeld(reason)
		}
		s.changed()
	}
	wo.OnApplied = func(snap *Snapshot) {
		if o.OnApplied != nil {
			o.OnApplied(snap)
		}
		s.changed() // the fingerprint and plan in Status changed after the updater's hook ran
	}
	s.Watcher = NewWatcher(wo)
	s.seed(up)
	up.OnApplied(func(_ *config.Config, _ uint64) { s.changed() })
	go s.Watcher.Run(ctx, up)
	if o.Registrar != nil {
		go s.register(ctx)
	}
	o.Logger.Info("watching consul", zap.String("prefix", s.Watcher.o.Prefix), zap.Bool("register", o.Registrar != nil))
	return s
}

// seed applies the last-known-good snapshot, if there is a usable one, and tells the
// watcher what is served until its first read.
func (s *Source) seed(up *gateway.Updater) {
	w, path, log := s.Watcher, s.Watcher.o.SnapshotPath, s.o.Logger
	if path == "" {
		w.Seed(nil, "waiting for the first read from consul (no snapshot kept)")
		return
	}
	snap, saved, err := ReadSnapshot(path, w.o.Prefix)
	switch {
	case err != nil:
		log.Error("last-known-good snapshot not used", zap.Error(err))
		w.Seed(nil, "waiting for the first read from consul (snapshot unusable)")
	case snap == nil:
		w.Seed(nil, "waiting for the first read from consul (no snapshot yet)")
	default:
		ov := snap.Overrides
		plan := gateway.Plan{Name: snap.ActivePlan, Overrides: snap.Plan()}
		if _, err := up.Apply(gateway.Update{Source: "snapshot:" + path, Overrides: &ov, Plan: &plan, Note: "last-known-good from " + saved.Format(time.RFC3339)}); err != nil {
			log.Error("last-known-good snapshot does not validate against this configuration; serving the file alone", zap.Error(err))
			w.Seed(nil, "waiting for the first read from consul (snapshot rejected)")
			return
		}
		log.Info("serving the last-known-good consul snapshot until consul answers", zap.String("path", path), zap.Time("saved", saved), zap.Int("keys", snap.Keys))
		w.Seed(snap, "serving the last-known-good snapshot of "+saved.Format(time.RFC3339)+" until consul answers")
	}
}

// changed asks the registration goroutine to publish the meta again.
func (s *Source) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Meta is what the process publishes in its catalog entry.
func (s *Source) Meta() map[string]string {
	st := s.Watcher.Status()
	return map[string]string{
		MetaGeneration:  strconv.FormatUint(s.o.Generation(), 10),
		MetaFingerprint: st.Fingerprint,
		MetaPlan:        st.ActivePlan,
		MetaStale:       truncate(st.Stale, 200),
		MetaHeld:        truncate(st.Held, 200),
		MetaAdmin:       s.o.AdminAddr,
	}
}

// register registers the process (retrying while Consul is down), follows its peers,
// then publishes the meta again whenever it may have changed. One goroutine owns the
// registration, so that updates cannot overtake each other.
func (s *Source) register(ctx context.Context) {
	for {
		err := s.o.Registrar.Register(s.Meta())
		if err == nil {
			break
		}
		s.o.Logger.Warn("consul registration failed; retrying", zap.Error(err), zap.Duration("every", s.o.RetryEvery))
		if !sleep(ctx, s.o.RetryEvery) {
			return
		}
	}
	go s.o.Registrar.WatchPeers(ctx, 0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.o.Registrar.UpdateMeta(s.Meta())
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
