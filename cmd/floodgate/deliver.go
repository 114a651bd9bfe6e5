package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/admin"
	"github.com/floodgate/floodgate/configs"
	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/gateway/consul"
	"github.com/floodgate/floodgate/internal/accept"
	"github.com/floodgate/floodgate/internal/deliver"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/queue"
	"github.com/floodgate/floodgate/internal/reconcile"
)

func init() {
	register(command{name: "deliver", summary: "deliver the grants of async routes from the queue to their pools", run: runDeliver})
}

const deliverExamples = `  floodgate deliver                                   # the embedded demo configuration
  floodgate deliver -config configs/demo.yaml          # reloaded on SIGHUP
  floodgate deliver -config gw.yaml -consul 127.0.0.1:8500 -admin 127.0.0.1:9912
  floodgate ctl -config gw.yaml set routes/grant/async/deliver/paused true   # pause, live
  floodgate ctl -config gw.yaml set routes/grant/async/deliver/rate 800      # re-rate, live
  curl -s 127.0.0.1:9902/status ; curl -s 127.0.0.1:9902/metrics | grep floodgate_deliver`

// loadDocument parses -config, or the embedded demo configuration when it is empty.
func loadDocument(path string) (*config.Document, error) {
	if path == "" {
		return config.Parse("embedded:configs/demo.yaml", configs.Demo)
	}
	return config.ParseFile(path)
}

func runDeliver(args []string) error {
	fs := newFlagSet("deliver", "[-config FILE] [flags]", deliverExamples)
	cfgPath := fs.String("config", "", "the gateways' configuration file (YAML); empty = the embedded demo configuration")
	consulAddr := fs.String("consul", os.Getenv("CONSUL_HTTP_ADDR"), "Consul HTTP address to watch for live switches, as the gateways do (default $CONSUL_HTTP_ADDR; empty = file only)")
	consulPrefix := fs.String("consul-prefix", consul.DefaultPrefix, "Consul KV prefix of the switches")
	consulToken := fs.String("consul-token-file", "", "file holding a Consul ACL token with read on the prefix (default: $CONSUL_HTTP_TOKEN / $CONSUL_HTTP_TOKEN_FILE)")
	snapshot := fs.String("snapshot", "", "last-known-good snapshot of the Consul layers (default: in the user cache dir, per admin address)")
	adminAddr := fs.String("admin", "127.0.0.1:9902", "admin listener: /healthz, /metrics, /status (off loopback it needs the configuration's admin.token, sent as a bearer token)")
	id := fs.String("id", "", "this deliverer's name among the live deliverers (default hostname-pid)")
	every := fs.Duration("reconcile-every", time.Minute, "how often to reconcile the queue with the delivery ledgers (metrics only, no repair; at most a tenth of the time when a run is long); 0 = never")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "console", "log format: console or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := filters.CheckHostPort(*adminAddr); err != nil {
		return exitError{code: 2, msg: "-admin: " + err.Error()}
	}
	if *every < 0 {
		return exitError{code: 2, msg: "-reconcile-every: must be >= 0"}
	}
	logger, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	defer logger.Sync()
	sig := shutdownSignals() // before anything starts (see runGateway)
	doc, err := loadDocument(*cfgPath)
	if err != nil {
		printConfigErrors(err)
		return exitError{code: 1, msg: "configuration not loaded"}
	}
	// The configuration layers (file < Consul overrides < active plan) are composed and
	// validated exactly as in the gateway, by the gateway's Updater on a gateway that
	// never serves traffic.
	// The gateway refuses async routes without an acceptor; this one stores nothing (the
	// deliverer's gateway never serves a request).
	acc, err := accept.New(accept.Options{Journal: refusingJournal{}, Committers: 1, Logger: logger})
	if err != nil {
		return err
	}
	defer acc.Close()
	gw := gateway.New(gateway.Options{Logger: logger, Acceptor: acc, InstanceID: "deliver"})
	defer gw.Close()
	up := gateway.NewUpdater(gw, logger)
	if _, err := up.Apply(gateway.Update{Source: "file:" + doc.Name, Doc: doc, Note: "start"}); err != nil {
		printConfigErrors(err)
		return exitError{code: 1, msg: "configuration not loaded"}
	}
	cfg := gw.Config()
	// The admin listener is protected as the gateways' is: with the configuration's
	// admin.token set, /status and /metrics need it; off loopback, a token is required.
	adminToken := cfg.Admin.Token
	if h, _, _ := net.SplitHostPort(*adminAddr); !isLoopbackHost(h) && adminToken == "" {
		return exitError{code: 2, msg: fmt.Sprintf("-admin %s is not a loopback address: set admin.token (or admin.token_file) in the configuration - the deliverer's /status and /metrics then need it, as the gateways' admin does - or bind to 127.0.0.1", *adminAddr)}
	}
	var asyncRoutes []string
	for name, r := range cfg.Routes {
		if r.Async != nil {
			asyncRoutes = append(asyncRoutes, name)
		}
	}

	client, err := queue.Connect(queue.Options{URLs: cfg.Queue.URL, Name: "floodgate-deliver", Logger: logger, Stream: streamConfig(cfg)})
	if err != nil {
		return err
	}
	defer client.Close()

	ln, err := net.Listen("tcp", *adminAddr)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", *adminAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *cfgPath != "" {
		fsrc := &gateway.FileSource{Path: *cfgPath}
		fsrc.Notify() // before anything else: an early SIGHUP must reload, not kill
		go fsrc.Run(ctx, up)
	}
	var watcher *consul.Watcher
	if *consulAddr != "" {
		// the deliverer composes the layers as the gateways do, but serves no traffic: it
		// neither registers in the catalog nor splits limits
		cl, err := consul.NewClient(consul.ClientOptions{Addr: *consulAddr, TokenFile: *consulToken})
		if err != nil {
			ln.Close()
			return fmt.Errorf("consul: %w", err)
		}
		snap := *snapshot
		if snap == "" {
			snap = consul.DefaultSnapshotPath("deliver-" + ln.Addr().String())
		}
		watcher = consul.StartSource(ctx, up, consul.SourceOptions{
			Options: consul.Options{Client: cl, Prefix: *consulPrefix, Logger: logger, SnapshotPath: snap},
		}).Watcher
	}

	d := deliver.New(deliver.Options{Client: client, Config: gw.Config, ID: *id, Logger: logger})
	var recMu sync.Mutex
	var lastRec *reconcile.Result
	var lastRecErr string
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !client.Connected() {
			http.Error(w, "queue not connected", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	protect := func(h http.Handler) http.Handler {
		if adminToken == "" {
			return h
		}
		return admin.RequireBearer(adminToken, logger, h)
	}
	mux.Handle("/metrics", protect(promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{})))
	mux.Handle("/status", protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recMu.Lock()
		st := map[string]any{"deliverer": d.Status(), "queue_connected": client.Connected(), "generation": gw.Generation(), "reconcile": lastRec, "reconcile_error": lastRecErr}
		recMu.Unlock()
		if watcher != nil {
			st["consul"] = watcher.Status()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	if *every > 0 {
		go func() {
			// A reconciliation reads the whole stream and ledger: on a large backlog it
			// takes a while, and then runs at most a tenth of the time.
			wait := *every
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				began := time.Now()
				res, err := reconcile.Run(ctx, reconcile.Options{Client: client, Config: gw.Config(), SettledOnly: true, Logger: logger})
				took := time.Since(began)
				wait = max(*every, 10*took)
				recMu.Lock()
				if err != nil {
					lastRecErr = err.Error()
					if ctx.Err() == nil {
						logger.Warn("periodic reconciliation failed", zap.Error(err))
					}
				} else {
					lastRec, lastRecErr = res, ""
					reconcile.Export(res)
					if !res.Clean() {
						logger.Warn("reconciliation found problems", zap.String("result", res.JSON()), zap.Strings("missing_examples", res.MissingIDs))
					} else {
						logger.Debug("reconciliation clean", zap.String("result", res.JSON()), zap.Duration("took", took))
					}
				}
				recMu.Unlock()
			}
		}()
	}
	logger.Info("floodgate deliver running",
		zap.String("id", d.ID()), zap.String("queue", cfg.Queue.URL), zap.String("stream", cfg.Queue.Stream),
		zap.Strings("async_routes", asyncRoutes), zap.String("admin", "http://"+ln.Addr().String()),
		zap.String("config", doc.Name), zap.Duration("reconcile_every", *every))

	s := <-sig
	logger.Info("shutting down: finishing the calls in flight", zap.String("signal", s.String()))
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		logger.Warn("calls still in flight after 30s; exiting (their grants are redelivered after ack_wait)")
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	return nil
}

// refusingJournal is the journal of the deliverer's never-serving gateway: it stores
// nothing.
type refusingJournal struct{}

func (refusingJournal) Append(...[]byte) error {
	return errors.New("floodgate deliver accepts no grants")
}
func (refusingJournal) Pending(int) ([][]byte, func() error, error) {
	return nil, func() error { return nil }, nil
}
func (refusingJournal) PendingRecords() int64 { return 0 }

// streamConfig is the grants stream as the configuration sets it.
func streamConfig(cfg *config.Config) queue.StreamConfig {
	return queue.StreamConfig{Name: cfg.Queue.Stream, Replicas: cfg.Queue.Replicas, MaxAge: time.Duration(cfg.Queue.MaxAge), MaxBytes: int64(cfg.Queue.MaxBytes)}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
