package main

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the process logger: structured, levelled; console encoding for people,
// json for log shippers. No line per request is ever logged at info.
func newLogger(level, format string) (*zap.Logger, error) {
	l, _, err := newSwitchableLogger(level, format)
	return l, err
}

// logSwitch changes the level and the format of a logger made by newSwitchableLogger,
// for every logger derived from it (With, Named), while the process runs: the gateway
// applies the configuration's log section at start and on every reload.
type logSwitch struct {
	mu       sync.Mutex
	level    zap.AtomicLevel
	core     *atomic.Pointer[zapcore.Core]
	format   string
	defLevel string
	defFmt   string
}

// newSwitchableLogger is newLogger with its switch; level and format are the defaults
// that an empty configuration value returns to.
func newSwitchableLogger(level, format string) (*zap.Logger, *logSwitch, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	s := &logSwitch{level: zap.NewAtomicLevelAt(lvl), core: &atomic.Pointer[zapcore.Core]{}, defLevel: level, defFmt: format}
	if err := s.setFormat(format); err != nil {
		return nil, nil, fmt.Errorf("-log-format %q: want console or json", format)
	}
	return zap.New(&switchCore{cur: s.core}, zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(os.Stderr))), s, nil
}

func (s *logSwitch) setFormat(format string) error {
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	case "console":
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	default:
		return fmt.Errorf("log format %q: want console or json", format)
	}
	c := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), s.level)
	s.core.Store(&c)
	s.format = format
	return nil
}

// apply sets level and format ("" = the command line's). It reports what changed.
func (s *logSwitch) apply(level, format string) (changed []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if level == "" {
		level = s.defLevel
	}
	if format == "" {
		format = s.defFmt
	}
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	if format != s.format {
		if err := s.setFormat(format); err != nil {
			return nil, err
		}
		changed = append(changed, "format="+format)
	}
	if s.level.Level() != lvl {
		s.level.SetLevel(lvl)
		changed = append(changed, "level="+level)
	}
	return changed, nil
}

// switchCore writes through the core currently in the switch, with the fields its
// logger was given by With.
type switchCore struct {
	cur    *atomic.Pointer[zapcore.Core]
	fields []zapcore.Field
}

func (c *switchCore) Enabled(l zapcore.Level) bool { return (*c.cur.Load()).Enabled(l) }

func (c *switchCore) With(fs []zapcore.Field) zapcore.Core {
	return &switchCore{cur: c.cur, fields: append(slices.Clip(c.fields), fs...)}
}

func (c *switchCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *switchCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	core := *c.cur.Load()
	if len(c.fields) == 0 {
		return core.Write(e, fs)
	}
	return core.Write(e, append(slices.Clip(c.fields), fs...))
}

func (c *switchCore) Sync() error { return (*c.cur.Load()).Sync() }

// shutdownSignals starts taking SIGINT and SIGTERM and returns where they arrive. The
// long-running commands call it before they start anything: a signal that arrives
// while a command starts (a supervisor stopping it at once, a test harness) waits in
// the channel and is handled as a clean shutdown once the command runs, instead of
// killing the process with the default action half started.
func shutdownSignals() chan os.Signal {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	return sig
}
