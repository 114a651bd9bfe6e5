package main

import (
	"context"
	"fmt"
	"sort"
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

// startConsul wires the Consul source (consul.StartSource: the last-known-good snapshot
// first, so a gateway starts in well under a second with Consul down, readiness
// "stale"; then the watcher, the registration and its peers) into the admin API.
func startConsul(ctx context.Context, cs consulSetup, gw *gateway.Gateway, up *gateway.Updater, adm *admin.Server, logger *zap.Logger) (*consul.Instance, error) {
	client, err := consul.NewClient(consul.ClientOptions{Addr: cs.addr, TokenFile: cs.tokenFile})
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	if cs.snapshot == "" {
		cs.snapshot = consul.DefaultSnapshotPath(cs.traffic)
	}
	id := cs.instanceID
	if id == "" {
		id = defaultInstanceID(cs.traffic)
	}
	o := consul.SourceOptions{
		Options: consul.Options{Client: client, Prefix: cs.prefix, Logger: logger, SnapshotPath: cs.snapshot,
			OnStale: adm.SetStale, OnHeld: adm.SetHeld},
		Generation: gw.Generation,
		AdminAddr:  cs.admin,
	}
	var inst *consul.Instance
	if cs.register {
		inst = &consul.Instance{Client: client, ID: id, Addr: cs.traffic, AdminAddr: cs.admin, Env: gw.Env(), Logger: logger}
		o.Registrar = inst
	}
	src := consul.StartSource(ctx, up, o)
	adm.SetFleet(fleetProvider(client, id))
	adm.Handle("/consul", admin.JSON(func() any {
		// instances_live is what this gateway knows of the catalog (0 when it does not
		// register: -register=false, like floodgate_instances_live); global limits are
		// divided by limit_divisor (at least 1)
		live := int64(0)
		if inst != nil {
			live = gw.Env().Instances()
		}
		return map[string]any{"watcher": src.Watcher.Status(), "registered": inst != nil, "instances_live": live, "limit_divisor": gw.Env().Instances(), "instance_id": id, "snapshot": cs.snapshot}
	}))
	logger.Info("consul source started", zap.String("addr", cs.addr), zap.String("instance", id))
	return inst, nil
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
