package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/backend"
	"go.uber.org/zap"
)

func init() {
	register(command{
		name:    "backend",
		summary: "run a lightweight backend: query, delivery (prize ledger) or packs (number packs)",
		run:     runBackend,
	})
}

const backendExamples = `  floodgate backend -kind query -listen 127.0.0.1:8081
  floodgate backend -kind query -latency 20ms -jitter 10ms -error-rate 0.01
  floodgate backend -kind query -latency 10ms -workers 40 -slow-latency 100ms   # kill -USR1: 10x slower, -USR2: back
  floodgate backend -kind delivery -listen 127.0.0.1:8082 -ledger /var/lib/floodgate/grants.jsonl
  floodgate backend -kind packs -listen 127.0.0.1:8083 -packs ./packs -reload-every 5s`

// backendKindFlags names the flags that only one kind takes.
var backendKindFlags = map[string]string{
	"ledger":       "delivery",
	"packs":        "packs",
	"reload-every": "packs",
}

// backendShutdownTimeout bounds how long in-flight requests may take after a signal.
const backendShutdownTimeout = 10 * time.Second

func runBackend(args []string) error {
	fs := newFlagSet("backend", "-kind query|delivery|packs [flags]", backendExamples)
	kind := fs.String("kind", "", "backend kind: query, delivery or packs (required)")
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	var faults backend.Faults
	fs.DurationVar(&faults.Latency, "latency", 0, "added `delay` before each business answer")
	fs.DurationVar(&faults.Jitter, "jitter", 0, "uniform random extra delay in [0, `max`] on top of -latency")
	fs.Float64Var(&faults.ErrorRate, "error-rate", 0, "probability in [0, 1] of answering 500 instead")
	fs.IntVar(&faults.Workers, "workers", 0, "business requests worked on at once (the -latency wait is the work); the rest queue (0: no limit)")
	slow := fs.Duration("slow-latency", 0, "latency `delay` switched on by SIGUSR1 (SIGUSR2 goes back to -latency): a live slowdown for drills")
	ledger := fs.String("ledger", "", "delivery: ledger `file` (default: floodgate-delivery-<port>.jsonl in the OS temp dir)")
	packsDir := fs.String("packs", "", "packs: `dir` of <pack>.txt / <pack>.txt.gz files (required for -kind packs)")
	reloadEvery := fs.Duration("reload-every", 5*time.Second, "packs: how often to poll the pack files for changes (0: only on SIGHUP)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "console", "log format: console or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	switch *kind {
	case "query", "delivery", "packs":
	case "":
		return exitError{code: 2, msg: "-kind is required: query, delivery or packs"}
	default:
		return exitError{code: 2, msg: fmt.Sprintf("-kind %q is not a backend kind; want query, delivery or packs", *kind)}
	}
	var misplaced error
	fs.Visit(func(f *flag.Flag) {
		if k, ok := backendKindFlags[f.Name]; ok && k != *kind && misplaced == nil {
			misplaced = exitError{code: 2, msg: fmt.Sprintf("-%s applies only to -kind %s, not %s", f.Name, k, *kind)}
		}
	})
	if misplaced != nil {
		return misplaced
	}
	if err := faults.Validate(); err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	if *slow < 0 {
		return exitError{code: 2, msg: fmt.Sprintf("-slow-latency %v is negative", *slow)}
	}
	if *kind == "packs" && *packsDir == "" {
		return exitError{code: 2, msg: "-kind packs needs -packs DIR"}
	}

	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	defer log.Sync()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	fields := []zap.Field{zap.String("kind", *kind), zap.String("addr", addr),
		zap.Duration("latency", faults.Latency), zap.Duration("jitter", faults.Jitter),
		zap.Float64("error_rate", faults.ErrorRate), zap.Int("workers", faults.Workers), zap.Duration("slow_latency", *slow)}

	var srv *backend.Server
	var packs *backend.Packs
	switch *kind {
	case "query":
		q, err := backend.NewQuery(backend.QueryConfig{Faults: faults, Logger: log})
		if err != nil {
			ln.Close()
			return err
		}
		srv = q.Server
	case "delivery":
		path := *ledger
		if path == "" {
			_, port, _ := net.SplitHostPort(addr)
			path = filepath.Join(os.TempDir(), "floodgate-delivery-"+port+".jsonl")
		}
		d, err := backend.NewDelivery(backend.DeliveryConfig{LedgerPath: path, Faults: faults, Logger: log})
		if err != nil {
			ln.Close()
			return err
		}
		srv = d.Server
		fields = append(fields, zap.String("ledger", path), zap.Int("grants", len(d.Grants())))
	case "packs":
		p, err := backend.NewPacks(backend.PacksConfig{Dir: *packsDir, ReloadEvery: *reloadEvery, Faults: faults, Logger: log})
		if err != nil {
			ln.Close()
			return err
		}
		srv, packs = p.Server, p
		fields = append(fields, zap.String("packs_dir", *packsDir), zap.Int("packs", len(p.List())),
			zap.Duration("reload_every", *reloadEvery))
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("backend listening", fields...)

	for {
		select {
		case err := <-served:
			srv.Shutdown()
			return fmt.Errorf("serving %s: %w", addr, err)
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				srv.SetLatency(*slow)
				continue
			case syscall.SIGUSR2:
				srv.SetLatency(faults.Latency)
				continue
			}
			if sig == syscall.SIGHUP {
				if packs == nil {
					log.Info("SIGHUP ignored: nothing to reload", zap.String("kind", *kind))
				} else {
					packs.Reload() // logs its outcome
				}
				continue
			}
			log.Info("backend shutting down", zap.String("kind", *kind), zap.Stringer("signal", sig),
				zap.Uint64("served", srv.Served()))
			ctx, cancel := context.WithTimeout(context.Background(), backendShutdownTimeout)
			err := srv.ShutdownWithContext(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("shutting down: %w", err)
			}
			<-served
			log.Info("backend stopped", zap.String("kind", *kind))
			return nil
		}
	}
}
