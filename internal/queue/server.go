package queue

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// ServerOptions configures one embedded queue node (`floodgate queue`).
type ServerOptions struct {
	// Name is the node's server name (unique in a cluster; JetStream needs it).
	Name string
	// Listen is the client address, host:port (127.0.0.1:4222).
	Listen string
	// DataDir holds JetStream's file store.
	DataDir string
	// SyncInterval is how often the file store syncs to disk; 0 means "always" (every
	// message is on disk before it is acknowledged), the only setting under which a
	// single node's acknowledgement survives a power cut.
	SyncInterval time.Duration
	// MaxStore caps JetStream's disk use on this node (0: 75% of the free space, the
	// server's default).
	MaxStore int64
	// Cluster is the route listen address (host:port) for a multi-node cluster; empty
	// runs a standalone node.
	Cluster string
	// ClusterName names the cluster (all nodes the same).
	ClusterName string
	// Routes are the other nodes' route addresses (host:port).
	Routes []string
	// Monitor, if set, is the address of nats-server's HTTP monitoring endpoint.
	Monitor string
	Logger  *zap.Logger
}

// Server is a running embedded queue node.
type Server struct {
	NS *server.Server
}

// StartServer starts a node and waits until it accepts clients (and, in a cluster, until
// JetStream is enabled on it).
func StartServer(o ServerOptions) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	host, port, err := splitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("queue -listen: %w", err)
	}
	if o.DataDir == "" {
		return nil, errors.New("queue: a data directory is needed (-data)")
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("queue -data: %w", err)
	}
	opts := &server.Options{
		ServerName:        o.Name,
		Host:              host,
		Port:              port,
		JetStream:         true,
		StoreDir:          o.DataDir,
		JetStreamMaxStore: o.MaxStore,
		NoSigs:            true,
		MaxPayload:        2 << 20,
	}
	if o.SyncInterval == 0 {
		opts.SyncAlways = true
		opts.SyncInterval = 2 * time.Minute // unused with SyncAlways; set so the server does not override it
	} else {
		opts.SyncInterval = o.SyncInterval
	}
	if o.Cluster != "" {
		ch, cp, err := splitHostPort(o.Cluster)
		if err != nil {
			return nil, fmt.Errorf("queue -cluster: %w", err)
		}
		if o.ClusterName == "" {
			return nil, errors.New("queue: a cluster name is needed with -cluster")
		}
		if o.Name == "" {
			return nil, errors.New("queue: every node of a cluster needs a unique -name")
		}
		opts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: ch, Port: cp}
		for _, r := range o.Routes {
			if _, _, err := splitHostPort(r); err != nil {
				return nil, fmt.Errorf("queue -routes: %w", err)
			}
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", Host: r})
		}
	}
	if o.Monitor != "" {
		mh, mp, err := splitHostPort(o.Monitor)
		if err != nil {
			return nil, fmt.Errorf("queue -monitor: %w", err)
		}
		opts.HTTPHost, opts.HTTPPort = mh, mp
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	ns.SetLoggerV2(zapLogger{log.Sugar()}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("queue: node %s did not start listening on %s within 30s", o.Name, o.Listen)
	}
	return &Server{NS: ns}, nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.NS.ClientURL() }

// Shutdown stops the node (stored messages stay in its data directory).
func (s *Server) Shutdown() {
	s.NS.Shutdown()
	s.NS.WaitForShutdown()
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port, got %q", hp)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	if h == "" {
		return "", 0, fmt.Errorf("want an explicit host (e.g. 127.0.0.1:%s), got %q", p, hp)
	}
	return h, n, nil
}

// zapLogger adapts zap to nats-server's logger.
type zapLogger struct{ l *zap.SugaredLogger }

func (z zapLogger) Noticef(format string, v ...any) { z.l.Infof(format, v...) }
func (z zapLogger) Warnf(format string, v ...any)   { z.l.Warnf(format, v...) }
func (z zapLogger) Fatalf(format string, v ...any)  { z.l.Errorf(format, v...) }
func (z zapLogger) Errorf(format string, v ...any)  { z.l.Errorf(format, v...) }
func (z zapLogger) Debugf(format string, v ...any)  { z.l.Debugf(format, v...) }
func (z zapLogger) Tracef(format string, v ...any)  {}
