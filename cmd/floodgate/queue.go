package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/queue"
)

func init() {
	register(command{name: "queue", summary: "run a queue node (NATS with JetStream, embedded) for async routes", run: runQueue})
}

const queueExamples = `  floodgate queue                                # one node on 127.0.0.1:4222, data in the user cache dir
  floodgate queue -data /var/lib/floodgate/queue -max-store 20GiB
  # a three-node cluster on one machine (queue.replicas: 3 in the gateway's configuration):
  floodgate queue -name q1 -listen 127.0.0.1:4222 -data q1 -cluster 127.0.0.1:6222 -routes 127.0.0.1:6223,127.0.0.1:6224
  floodgate queue -name q2 -listen 127.0.0.1:4223 -data q2 -cluster 127.0.0.1:6223 -routes 127.0.0.1:6222,127.0.0.1:6224
  floodgate queue -name q3 -listen 127.0.0.1:4224 -data q3 -cluster 127.0.0.1:6224 -routes 127.0.0.1:6222,127.0.0.1:6223`

// defaultQueueDir is the data directory when -data is not given: one per listen address
// under the user cache directory, so two local nodes never share one by accident.
func defaultQueueDir(listen string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "floodgate", "queue-"+strings.NewReplacer(":", "_", "/", "_").Replace(listen))
}

// queueOptions parses the flags of `floodgate queue` into server options. Every flag
// problem is an exitError with code 2 naming the flag.
func queueOptions(args []string) (queue.ServerOptions, *zap.Logger, error) {
	fs := newFlagSet("queue", "[flags]", queueExamples)
	listen := fs.String("listen", "127.0.0.1:4222", "client address (host:port); the gateway's queue.url points here")
	data := fs.String("data", "", "JetStream data directory (default: floodgate/queue-<listen> in the user cache dir)")
	name := fs.String("name", "", "server name, unique in a cluster (default: floodgate-<listen>)")
	cluster := fs.String("cluster", "", "route listen address (host:port) to form a cluster with -routes; empty = standalone")
	clusterName := fs.String("cluster-name", "floodgate", "cluster name (the same on every node)")
	routes := fs.String("routes", "", "the other nodes' route addresses, comma-separated (host:port,host:port)")
	syncFlag := fs.String("sync", "always", `when stored messages reach the disk: "always" (before each acknowledgement) or a duration (NOT durable on one node)`)
	maxStore := fs.String("max-store", "0", "cap on JetStream's disk use on this node, e.g. 20GiB (0 = the server's default, 75% of the free space)")
	monitor := fs.String("monitor", "", "address of nats-server's HTTP monitoring endpoint (e.g. 127.0.0.1:8222); empty = off")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "console", "log format: console or json")
	if err := parseFlags(fs, args); err != nil {
		return queue.ServerOptions{}, nil, err
	}
	bad := func(flagName, format string, a ...any) error {
		return exitError{code: 2, msg: "-" + flagName + ": " + fmt.Sprintf(format, a...)}
	}
	logger, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return queue.ServerOptions{}, nil, exitError{code: 2, msg: err.Error()}
	}
	// nats-server's own notices (a banner of some twenty lines) only with -log-level
	// debug; its warnings and errors always.
	serverLog := logger
	if *logLevel != "debug" {
		serverLog = logger.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))
	}
	o := queue.ServerOptions{Name: *name, Listen: *listen, DataDir: *data, Monitor: *monitor, Logger: serverLog}
	if err := filters.CheckHostPort(*listen); err != nil {
		return o, nil, bad("listen", "%v", err)
	}
	if o.Name == "" {
		o.Name = "floodgate-" + strings.ReplaceAll(*listen, ":", "-")
	}
	if o.DataDir == "" {
		o.DataDir = defaultQueueDir(*listen)
	}
	switch s := strings.TrimSpace(*syncFlag); s {
	case "always", "":
	default:
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return o, nil, bad("sync", `want "always" or a positive duration such as 1s, got %q`, *syncFlag)
		}
		o.SyncInterval = d
	}
	var sz filters.Size
	if err := sz.UnmarshalText([]byte(*maxStore)); err != nil || sz < 0 {
		return o, nil, bad("max-store", "want a size such as 20GiB or 0, got %q", *maxStore)
	}
	o.MaxStore = int64(sz)
	if *monitor != "" {
		if err := filters.CheckHostPort(*monitor); err != nil {
			return o, nil, bad("monitor", "%v", err)
		}
	}
	if *cluster != "" {
		if err := filters.CheckHostPort(*cluster); err != nil {
			return o, nil, bad("cluster", "%v", err)
		}
		if strings.TrimSpace(*clusterName) == "" {
			return o, nil, bad("cluster-name", "must not be empty with -cluster")
		}
		o.Cluster, o.ClusterName = *cluster, *clusterName
		for _, r := range strings.Split(*routes, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			if err := filters.CheckHostPort(r); err != nil {
				return o, nil, bad("routes", "%v", err)
			}
			o.Routes = append(o.Routes, r)
		}
	} else if *routes != "" {
		return o, nil, bad("routes", "needs -cluster (this node's own route address)")
	}
	return o, logger, nil
}

func runQueue(args []string) error {
	o, logger, err := queueOptions(args)
	if err != nil {
		return err
	}
	defer logger.Sync()
	sig := shutdownSignals() // before the server accepts anything (see runGateway)
	if o.SyncInterval > 0 {
		logger.Warn("-sync is not \"always\": the queue acknowledges messages before they are on disk; "+
			"a power cut or kill of this node can lose acknowledged grants unless the stream is replicated (queue.replicas: 3)",
			zap.Duration("sync", o.SyncInterval))
	}
	s, err := queue.StartServer(o)
	if err != nil {
		return err
	}
	sync := "always"
	if o.SyncInterval > 0 {
		sync = o.SyncInterval.String()
	}
	logger.Info("floodgate queue serving",
		zap.String("url", s.ClientURL()), zap.String("name", o.Name), zap.String("data", o.DataDir),
		zap.String("sync", sync), zap.String("cluster", o.Cluster), zap.Strings("routes", o.Routes),
		zap.String("monitor", o.Monitor))
	got := <-sig
	logger.Info("shutting down", zap.String("signal", got.String()))
	s.Shutdown()
	return nil
}
