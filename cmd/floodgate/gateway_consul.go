package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/admin"
	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/consul"
)

type consulSetup struct {
	addr, prefix, tokenFile, snapshot, instanceID string
	register                                      bool
	traffic, admin                                string
}

// startConsul wires the Consul source: it first serves the last-known-good snapshot (so
// a gateway starts in well under a second with Consul down, readiness "stale"), then
// watches the prefix, registers the instance and follows its peers.
func startConsul(ctx context.Context, cs consulSetup, gw *gateway.Gateway, up *gateway.Updater, adm *admin.Server, logger *zap.Logger) (*consul.Instance, error) {
	client, err := consul.NewClient(consul.ClientOptions{Addr: cs.addr, TokenFile: cs.tokenFile})
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	prefix := consul.SlashPrefix(cs.prefix)
	if cs.snapshot == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		cs.snapshot = filepath.Join(dir, "floodgate", "lkg-"+strings.NewReplacer(":", "_", "/", "_").Replace(cs.traffic)+".json")
	}
	id := cs.instanceID
	if id == "" {
		host, _ := os.Hostname()
		_, port, _ := strings.Cut(cs.traffic, ":")
		id = host + "-" + port
	}
	var inst *consul.Instance
	if cs.register {
		inst = &consul.Instance{Client: client, ID: id, Addr: cs.traffic, AdminAddr: cs.admin, Env: gw.Env(), Logger: logger}
	}
	var w *consul.Watcher
	status := func() map[string]string {
		st := w.Status()
		rd := adm.Readiness()
		return map[string]string{
			"generation":  strconv.FormatUint(rd.Generation, 10),
			"fingerprint": st.Fingerprint,
			"plan":        st.ActivePlan,
			"stale":       truncate(st.Stale, 200),
			"held":        truncate(st.Held, 200),
			"admin":       cs.admin,
		}
	}
	// The instance's catalog meta follows the watcher's state. One goroutine owns the
	// registration, so updates cannot overtake each other; kick asks it to re-read.
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	w = consul.NewWatcher(consul.Options{
		Client: client, Prefix: prefix, Logger: logger, SnapshotPath: cs.snapshot,
		OnStale: func(reason string) {
			adm.SetStale(reason)
			poke()
		},
		OnHeld: func(reason string) {
			adm.SetHeld(reason)
			poke()
		},
		OnApplied: func(*consul.Snapshot, uint64) { poke() },
	})

	snap, saved, err := consul.ReadSnapshot(cs.snapshot, prefix)
	switch {
	case err != nil:
		logger.Error("last-known-good snapshot not used", zap.Error(err))
		w.Seed(nil, "waiting for the first read from consul (snapshot unusable)")
	case snap == nil:
		w.Seed(nil, "waiting for the first read from consul (no snapshot yet)")
	default:
		ov := snap.Overrides
		plan := gateway.Plan{Name: snap.ActivePlan, Overrides: snap.Plan()}
		if _, err := up.Apply(gateway.Update{Source: "snapshot:" + cs.snapshot, Overrides: &ov, Plan: &plan, Note: "last-known-good from " + saved.Format(time.RFC3339)}); err != nil {
			logger.Error("last-known-good snapshot does not validate against this configuration; serving the file alone", zap.Error(err))
			w.Seed(nil, "waiting for the first read from consul (snapshot rejected)")
		} else {
			logger.Info("serving the last-known-good consul snapshot until consul answers", zap.String("path", cs.snapshot), zap.Time("saved", saved), zap.Int("keys", snap.Keys))
			w.Seed(snap, "serving the last-known-good snapshot of "+saved.Format(time.RFC3339)+" until consul answers")
		}
	}
	adm.SetFleet(fleetProvider(client, id))
	adm.Handle("/consul", admin.JSON(func() any {
		// instances_live is what this gateway knows of the catalog (0 when it does not
		// register: -register=false, like floodgate_instances_live); global limits are
		// divided by limit_divisor (at least 1)
		live := int64(0)
		if inst != nil {
			live = gw.Env().Instances()
		}
		return map[string]any{"watcher": w.Status(), "registered": inst != nil, "instances_live": live, "limit_divisor": gw.Env().Instances(), "instance_id": id, "snapshot": cs.snapshot}
	}))

	go w.Run(ctx, up)
	if inst != nil {
		go func() {
			// register (retrying while consul is down), then keep the meta current
			for ctx.Err() == nil {
				if err := inst.Register(status()); err != nil {
					logger.Warn("consul registration failed; retrying", zap.Error(err))
					select {
					case <-ctx.Done():
						return
					case <-time.After(2 * time.Second):
					}
					continue
				}
				break
			}
			go inst.WatchPeers(ctx, 0)
			for {
				select {
				case <-ctx.Done():
					return
				case <-kick:
					inst.UpdateMeta(status())
				}
			}
		}()
	}
	logger.Info("watching consul", zap.String("addr", cs.addr), zap.String("prefix", prefix), zap.String("instance", id), zap.Bool("register", cs.register))
	return inst, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// fleetProvider returns the console's fleet section: the gateways registered in Consul
// with their health and meta (generation, fingerprint, plan, stale, held), read at most
// every two seconds however many browsers poll.
func fleetProvider(client *api.Client, self string) func() any {
	var (
		mu   sync.Mutex
		at   time.Time
		last map[string]any
	)
	return func() any {
		mu.Lock()
		defer mu.Unlock()
		if last != nil && time.Since(at) < 2*time.Second {
			return last
		}
		list, err := consul.ListInstances(client, "")
		at = time.Now()
		if err != nil {
			last = map[string]any{"self": self, "error": err.Error(), "instances": []consul.InstanceStatus{}}
			return last
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		last = map[string]any{"self": self, "instances": list}
		return last
	}
}
