package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/admin"
	"github.com/floodgate/floodgate/configs"
	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/gateway/consul"
	"github.com/floodgate/floodgate/internal/metrics"

	_ "github.com/floodgate/floodgate/filters/all" // the built-in filters register themselves
)

func init() {
	register(command{name: "gateway", summary: "serve traffic through the filter chain", run: runGateway})
}

const gatewayExamples = `  floodgate gateway                              # the embedded demo configuration (configs/demo.yaml)
  floodgate gateway -config configs/demo.yaml    # a file; reloaded on SIGHUP (kill -HUP <pid>)`

func runGateway(args []string) error {
	fs := newFlagSet("gateway", "[-config FILE] [flags]", gatewayExamples)
	cfgPath := fs.String("config", "", "configuration file (YAML); empty = the embedded demo configuration")
	consulAddr := fs.String("consul", os.Getenv("CONSUL_HTTP_ADDR"), "Consul HTTP address to watch for live switches (default $CONSUL_HTTP_ADDR; empty = file only)")
	consulPrefix := fs.String("consul-prefix", consul.DefaultPrefix, "Consul KV prefix of the switches")
	consulToken := fs.String("consul-token-file", "", "file holding a Consul ACL token with read on the prefix (default: $CONSUL_HTTP_TOKEN / $CONSUL_HTTP_TOKEN_FILE)")
	snapshot := fs.String("snapshot", "", "last-known-good snapshot of the Consul layers (default: in the user cache dir, per listen address)")
	instanceID := fs.String("instance-id", "", "ID of this instance in Consul's catalog (default: hostname-port)")
	register := fs.Bool("register", true, "register in Consul's catalog, so that global limits are split across live instances")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "console", "log format: console or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, logs, err := newSwitchableLogger(*logLevel, *logFormat)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	defer logger.Sync()
	// Signals are taken before anything starts: a SIGTERM (or SIGUSR1) that arrives while
	// the gateway starts is handled once it serves, instead of killing it half started.
	sig := shutdownSignals()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	var doc *config.Document
	if *cfgPath == "" {
		doc, err = config.Parse("embedded:configs/demo.yaml", configs.Demo)
	} else {
		doc, err = config.ParseFile(*cfgPath)
	}
	if err != nil {
		printConfigErrors(err)
		return exitError{code: 1, msg: "configuration not loaded"}
	}

	// The file alone decides whether this gateway serves async routes (the queue and the
	// journal are opened at start); Consul overrides come later.
	first, err := config.Load(doc)
	if err != nil {
		printConfigErrors(err)
		return exitError{code: 1, msg: "configuration not loaded"}
	}
	// the file's log section applies from the start, and again on every applied update
	logs.apply(first.Log.Level, first.Log.Format)
	instance := *instanceID
	if instance == "" {
		instance = defaultInstanceID(first.Server.Listen)
	}
	async, err := startAsync(first, instance, logger)
	if err != nil {
		return err
	}
	gopts := gateway.Options{Logger: logger, InstanceID: instance}
	if async != nil {
		defer async.close()
		gopts.Acceptor = async.acc
	}
	gw := gateway.New(gopts)
	up := gateway.NewUpdater(gw, logger)
	up.OnApplied(func(c *config.Config, _ uint64) {
		if changed, err := logs.apply(c.Log.Level, c.Log.Format); err != nil {
			logger.Error("log settings not changed", zap.Error(err))
		} else if len(changed) > 0 {
			logger.Info("log settings changed", zap.Strings("changed", changed))
		}
	})
	source := "file:" + doc.Name
	if _, err := up.Apply(gateway.Update{Source: source, Doc: doc, Note: "start"}); err != nil {
		printConfigErrors(err)
		return exitError{code: 1, msg: "configuration not loaded"}
	}
	cfg := gw.Config()

	adm := admin.New(gw, up, cfg.Admin.Token, logger)
	if async != nil {
		adm.Handle("/async", async)
		admin.RegisterSection("async", async.console)
	}
	metrics.Registry.MustRegister(gw.Collector())
	adm.Handle("/overload", admin.JSON(func() any { return map[string]any{"window": gateway.OverloadWindow.String(), "pools": gw.Overload()} }))
	admin.RegisterSection("overload", gw.OverloadSummary)
	aln, err := adm.Listen(cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		aln.Close()
		return fmt.Errorf("traffic listener %s: %w", cfg.Server.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *cfgPath != "" {
		fsrc := &gateway.FileSource{Path: *cfgPath}
		fsrc.Notify() // before serving: an early SIGHUP must reload, not kill
		go fsrc.Run(ctx, up)
	}
	var inst *consul.Instance
	if *consulAddr != "" {
		inst, err = startConsul(ctx, consulSetup{
			addr: *consulAddr, prefix: *consulPrefix, tokenFile: *consulToken, snapshot: *snapshot,
			instanceID: *instanceID, register: *register, traffic: ln.Addr().String(), admin: aln.Addr().String(),
		}, gw, up, adm, logger)
		if err != nil {
			ln.Close()
			aln.Close()
			return err
		}
	}

	errc := make(chan error, 2)
	go func() { errc <- adm.Serve(aln) }()
	go func() { errc <- gw.Serve(ln) }()
	logger.Info("floodgate gateway serving",
		zap.String("traffic", "http://"+ln.Addr().String()),
		zap.String("admin", "http://"+aln.Addr().String()),
		zap.Uint64("generation", gw.Generation()),
		zap.Int("routes", len(cfg.Routes)),
		zap.String("config", doc.Name))

	// SIGUSR1 reopens the access log file (logrotate: move the file, then signal)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				path, err := gw.ReopenAccessLog()
				switch {
				case err != nil:
					logger.Error("access log not reopened; still writing to the old file", zap.String("path", path), zap.Error(err))
				case path == "":
					logger.Info("SIGUSR1: no access log to reopen")
				default:
					logger.Info("access log reopened", zap.String("path", path))
				}
			}
		}
	}()

	select {
	case s := <-sig:
		logger.Info("shutting down", zap.String("signal", s.String()))
		// Drain: /readyz turns 503 and every answer says Connection: close, so load
		// balancers and clients move away while this process still serves; then the
		// listener closes and in-flight requests finish (shutdown_timeout).
		adm.SetDraining()
		gw.Drain()
		if d := gw.DrainDelay(); d > 0 {
			logger.Info("draining: /readyz answers 503, still serving until the drain delay ends", zap.Duration("drain_delay", d))
			select {
			case <-time.After(d):
			case s := <-sig:
				logger.Info("second signal: closing the listener now", zap.String("signal", s.String()))
			}
		}
	case err := <-errc:
		if err != nil {
			logger.Error("listener failed", zap.Error(err))
			return err
		}
	}
	cancel()
	if inst != nil {
		if err := inst.Deregister(); err != nil {
			logger.Warn("consul deregistration failed", zap.Error(err))
		}
	}
	if err := gw.Shutdown(); err != nil {
		logger.Warn("traffic shutdown", zap.Error(err))
	}
	gw.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	adm.Shutdown(sctx)
	return nil
}

// printConfigErrors prints every configuration problem on its own line.
func printConfigErrors(err error) {
	var ces config.Errors
	if errors.As(err, &ces) {
		for _, e := range ces {
			fmt.Fprintln(os.Stderr, e.Error())
		}
		return
	}
	fmt.Fprintln(os.Stderr, err)
}
