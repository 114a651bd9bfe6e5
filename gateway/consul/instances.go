package consul

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/filters"
)

var liveInstances = Metrics.NewGauge("instances_live",
	"Live gateway instances that share global limits (passing health checks in Consul's catalog).")

// DefaultService is the catalog service name gateways register under.
const DefaultService = "floodgate"

// Instance registers this gateway in Consul's catalog (with an HTTP health check on the
// admin /healthz) and follows the set of live instances, so that global limits are
// split across them (filters.Env.SetInstances).
type Instance struct {
	Client    *api.Client
	Service   string
	ID        string
	Addr      string // traffic listener host:port
	AdminAddr string // admin listener host:port (health check target)
	Env       *filters.Env
	Logger    *zap.Logger
	// CheckInterval of the agent's HTTP check (default 1s).
	CheckInterval time.Duration

	mu   sync.Mutex
	meta map[string]string
}

func (in *Instance) defaults() {
	if in.Service == "" {
		in.Service = DefaultService
	}
	if in.Logger == nil {
		in.Logger = zap.NewNop()
	}
	if in.CheckInterval == 0 {
		in.CheckInterval = time.Second
	}
}

// Register adds the instance to the local agent with meta (generation, plan, stale...).
func (in *Instance) Register(meta map[string]string) error {
	in.defaults()
	host, portStr, err := net.SplitHostPort(in.Addr)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	reg := &api.AgentServiceRegistration{
		ID:      in.ID,
		Name:    in.Service,
		Address: host,
		Port:    port,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        in.ID + ":healthz",
			Name:                           "floodgate admin /healthz",
			HTTP:                           "http://" + in.AdminAddr + "/healthz",
			Interval:                       in.CheckInterval.String(),
			Timeout:                        in.CheckInterval.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := in.Client.Agent().ServiceRegister(reg); err != nil {
		return err
	}
	in.mu.Lock()
	in.meta = meta
	in.mu.Unlock()
	return nil
}

// UpdateMeta re-registers with new meta if it changed (ctl status reads it).
func (in *Instance) UpdateMeta(meta map[string]string) {
	in.mu.Lock()
	same := reflect.DeepEqual(in.meta, meta)
	in.mu.Unlock()
	if same {
		return
	}
	if err := in.Register(meta); err != nil {
		in.Logger.Warn("cannot update the instance's status in consul", zap.Error(err))
	}
}

// Deregister removes the instance (on shutdown).
func (in *Instance) Deregister() error {
	return in.Client.Agent().ServiceDeregister(in.ID)
}

// WatchPeers follows the passing instances of the service with blocking queries and
// sets Env's instance count. While Consul is unreachable the last count stays: an
// instance keeps its last share and never falls back to the full global rate.
func (in *Instance) WatchPeers(ctx context.Context, waitTime time.Duration) {
	in.defaults()
	if waitTime == 0 {
		waitTime = 30 * time.Second
	}
	var index uint64
	fails := 0
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: waitTime}).WithContext(ctx)
		entries, meta, err := in.Client.Health().Service(in.Service, "", true, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			if fails == 1 || fails%10 == 0 {
				in.Logger.Warn("cannot read live instances from consul; keeping the last count",
					zap.Int64("instances", in.Env.Instances()), zap.Error(err))
			}
			d := time.Duration(fails) * 500 * time.Millisecond
			if d > 5*time.Second {
				d = 5 * time.Second
			}
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		fails = 0
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		if index == 0 {
			index = 1
		}
		n := int64(len(entries))
		if n < 1 {
			n = 1 // we are alive even if our own check has not passed yet
		}
		if n != in.Env.Instances() {
			in.Logger.Info("live gateway instances changed; global limits re-split", zap.Int64("from", in.Env.Instances()), zap.Int64("to", n))
		}
		in.Env.SetInstances(n)
		liveInstances.Set(float64(n))
	}
}

// InstanceStatus is one registered gateway as `floodgate ctl status` shows it.
type InstanceStatus struct {
	ID     string            `json:"id"`
	Addr   string            `json:"addr"`
	Node   string            `json:"node"`
	Health string            `json:"health"`
	Meta   map[string]string `json:"meta"`
}

// ListInstances returns every registered instance of service with its health. A call
// that Consul does not answer within 10 s fails (a hung agent must not hang ctl).
func ListInstances(c *api.Client, service string) ([]InstanceStatus, error) {
	if service == "" {
		service = DefaultService
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, _, err := c.Health().Service(service, "", false, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := make([]InstanceStatus, 0, len(entries))
	for _, e := range entries {
		out = append(out, InstanceStatus{
			ID:     e.Service.ID,
			Addr:   net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port)),
			Node:   e.Node.Node,
			Health: e.Checks.AggregatedStatus(),
			Meta:   e.Service.Meta,
		})
	}
	return out, nil
}
