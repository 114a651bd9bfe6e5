package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/metrics"
)

var (
	configUpdates    = metrics.NewCounterVec("config_updates_total", "Configuration updates by result: applied, rejected, held, unchanged.", "result")
	configGeneration = metrics.NewGauge("config_generation", "Generation number of the configuration in force (increments on every applied update).")
	activePlan       = metrics.NewGaugeVec("active_plan_info", "Always 1, labelled with the name of the active contingency plan (empty: none).", "plan")
)

// maxLoggedChanges bounds the changes listed in one "configuration applied" line (all of
// them are in /events).
const maxLoggedChanges = 20

// changeList renders changes for the log: "path: old -> new (source)".
func changeList(changes []config.Change) []string {
	out := make([]string, 0, min(len(changes), maxLoggedChanges+1))
	for i, c := range changes {
		if i == maxLoggedChanges {
			out = append(out, fmt.Sprintf("... and %d more (see /events)", len(changes)-i))
			break
		}
		old, nw := c.Old, c.New
		if old == "" {
			old = "(unset)"
		}
		if nw == "" {
			nw = "(unset)"
		}
		line := c.Path + ": " + old + " -> " + nw
		if c.Source != "" {
			line += " (" + c.Source + ")"
		}
		out = append(out, line)
	}
	return out
}

func setActivePlan(name string) {
	activePlan.Reset()
	activePlan.WithLabelValues(name).Set(1)
}

// Source produces configuration layers and hands each new version to the Updater. The
// file (reloaded on SIGHUP) is one; the Consul watcher is another. A source never applies
// anything itself: the Updater validates, builds and swaps.
type Source interface {
	Name() string
	// Run delivers updates until ctx is done.
	Run(ctx context.Context, u *Updater) error
}

// Plan is the active contingency plan layer: its name and its overrides.
type Plan struct {
	Name      string
	Overrides []config.Override
}

// Update carries new versions of one or more layers; nil fields leave a layer as it is.
type Update struct {
	// Source names who sent it, for events and logs ("file:configs/demo.yaml", "consul").
	Source    string
	Doc       *config.Document
	Overrides *[]config.Override
	Plan      *Plan
	// Note is shown with the event (e.g. "SIGHUP").
	Note string
}

// Updater owns the configuration layers (file < per-key overrides < active plan) and
// turns every change of any of them into a new configuration: compose, decode, validate
// whole, build beside the running one, swap atomically - or reject whole, keeping the
// running configuration, with an event, a metric and a log line. Updates are serialized.
type Updater struct {
	gw     *Gateway
	logger *zap.Logger
	events *Events

	mu        sync.Mutex
	doc       *config.Document
	overrides []config.Override
	plan      Plan
	onApplied []func(*config.Config, uint64)
	// loader composes incrementally: an update decodes and validates only the routes
	// whose keys changed, and the gateway rebuilds only those
	loader config.Loader
}

// NewUpdater returns an Updater for gw.
func NewUpdater(gw *Gateway, logger *zap.Logger) *Updater {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Updater{gw: gw, logger: logger, events: NewEvents(200)}
}

// Events returns the log of recent applied and rejected updates.
func (u *Updater) Events() *Events { return u.events }

// OnApplied registers fn to run after every applied update (e.g. writing the
// last-known-good snapshot). It runs outside the request path, under the update lock.
func (u *Updater) OnApplied(fn func(*config.Config, uint64)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.onApplied = append(u.onApplied, fn)
}

// Layers returns the current layers (for /config and for sources that need a view).
func (u *Updater) Layers() (doc *config.Document, overrides []config.Override, plan Plan) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.doc, append([]config.Override(nil), u.overrides...), Plan{Name: u.plan.Name, Overrides: append([]config.Override(nil), u.plan.Overrides...)}
}

func (u *Updater) next(up Update) (*config.Document, []config.Override, Plan) {
	doc, ov, plan := u.doc, u.overrides, u.plan
	if up.Doc != nil {
		doc = up.Doc
	}
	if up.Overrides != nil {
		ov = *up.Overrides
	}
	if up.Plan != nil {
		plan = *up.Plan
	}
	return doc, ov, plan
}

// Apply composes the layers with up's changes and puts the result in force. On any
// error the running configuration is untouched and the error (config.Errors when the
// values are at fault) is returned, recorded as an event and counted.
func (u *Updater) Apply(up Update) (uint64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	doc, ov, plan := u.next(up)
	if doc == nil {
		err := errors.New("no configuration file loaded")
		u.rejected(up, err)
		return 0, err
	}
	cfg, err := u.loader.Load(doc, ov, plan.Overrides)
	if err != nil {
		u.rejected(up, err)
		return 0, err
	}
	old := u.gw.Config()
	if old != nil && slices.Equal(old.Sources, cfg.Sources) {
		u.doc, u.overrides, u.plan = doc, ov, plan
		setActivePlan(plan.Name)
		configUpdates.WithLabelValues("unchanged").Inc()
		return u.gw.Generation(), nil
	}
	gen, err := u.gw.apply(cfg)
	if err != nil {
		u.rejected(up, err)
		return 0, err
	}
	u.doc, u.overrides, u.plan = doc, ov, plan
	var changes []config.Change
	if old != nil {
		changes = config.Diff(old.Sources, cfg.Sources)
	}
	configUpdates.WithLabelValues("applied").Inc()
	configGeneration.Set(float64(gen))
	setActivePlan(plan.Name)
	u.events.Add(Event{Time: time.Now(), Generation: gen, Source: up.Source, Result: "applied", Note: up.Note, Changes: changes})
	u.logger.Info("configuration applied", zap.Uint64("generation", gen), zap.String("source", up.Source), zap.String("note", up.Note),
		zap.String("plan", plan.Name), zap.Int("changes", len(changes)), zap.Strings("changed", changeList(changes)))
	for _, fn := range u.onApplied {
		fn(cfg, gen)
	}
	return gen, nil
}

// Reject records an update that a source could not even turn into layers (e.g. a file
// that does not parse): counted and listed like any rejected update.
func (u *Updater) Reject(source, note string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rejected(Update{Source: source, Note: note}, err)
}

// Hold records an update a source is holding back (a suspicious read that needs an
// operator's confirmation): counted and listed as "held"; nothing changes.
func (u *Updater) Hold(source, msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	configUpdates.WithLabelValues("held").Inc()
	u.events.Add(Event{Time: time.Now(), Generation: u.gw.Generation(), Source: source, Result: "held", Errors: []string{msg}})
	u.logger.Warn("configuration update held", zap.String("source", source), zap.String("why", msg))
}

func (u *Updater) rejected(up Update, err error) {
	configUpdates.WithLabelValues("rejected").Inc()
	var msgs []string
	var ces config.Errors
	if errors.As(err, &ces) {
		for _, e := range ces {
			msgs = append(msgs, e.Error())
		}
	} else {
		msgs = []string{err.Error()}
	}
	u.events.Add(Event{Time: time.Now(), Generation: u.gw.Generation(), Source: up.Source, Result: "rejected", Note: up.Note, Errors: msgs})
	u.logger.Error("configuration rejected; the previous configuration keeps serving",
		zap.String("source", up.Source), zap.Uint64("serving_generation", u.gw.Generation()), zap.Strings("errors", msgs))
}

// apply builds cfg beside the running state and swaps it in.
func (g *Gateway) apply(cfg *config.Config) (uint64, error) {
	prev := g.state.Load()
	if prev != nil && g.server != nil && !reflect.DeepEqual(restartOnly(prev.cfg), restartOnly(cfg)) {
		return 0, config.Errors{{Path: "server", Msg: "listener settings (listen, timeouts, buffer and body limits, concurrency, max_conns_per_ip) changed: they take effect only at restart; revert them or restart the gateway"}}
	}
	if prev != nil && g.server != nil && prev.cfg.Admin.Listen != cfg.Admin.Listen {
		return 0, config.Errors{{Path: "admin.listen", Msg: "changed: takes effect only at restart"}}
	}
	if prev != nil && g.acceptor != nil && !reflect.DeepEqual(prev.cfg.Queue, cfg.Queue) {
		return 0, config.Errors{{Path: "queue", Msg: "queue settings changed: the queue connection and the journal are opened at start; revert them or restart the gateway"}}
	}
	st, retire, err := g.build(cfg, prev)
	if err != nil {
		return 0, err
	}
	st.gen = 1
	if prev != nil {
		st.gen = prev.gen + 1
	}
	g.state.Store(st)
	retire()
	return st.gen, nil
}

// FileSource reloads the configuration file on SIGHUP.
type FileSource struct {
	Path string
	ch   chan os.Signal
}

// Notify starts catching SIGHUP at once (call it before serving): a SIGHUP that arrives
// before Run's goroutine has started would otherwise end the process (the signal's
// default action).
func (f *FileSource) Notify() {
	if f.ch == nil {
		f.ch = make(chan os.Signal, 1)
		signal.Notify(f.ch, syscall.SIGHUP)
	}
}

// Name implements Source.
func (f *FileSource) Name() string { return "file:" + f.Path }

// Run implements Source: every SIGHUP re-reads the file and applies it.
func (f *FileSource) Run(ctx context.Context, u *Updater) error {
	f.Notify()
	ch := f.ch
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			f.Reload(u, "SIGHUP")
		}
	}
}

// Reload reads and applies the file once.
func (f *FileSource) Reload(u *Updater, note string) (uint64, error) {
	doc, err := config.ParseFile(f.Path)
	if err != nil {
		u.Reject(f.Name(), note, err)
		return 0, err
	}
	return u.Apply(Update{Source: f.Name(), Doc: doc, Note: note})
}

// Event is one applied or rejected update.
type Event struct {
	Time       time.Time       `json:"time"`
	Generation uint64          `json:"generation"`
	Source     string          `json:"source"`
	Result     string          `json:"result"`
	Note       string          `json:"note,omitempty"`
	Errors     []string        `json:"errors,omitempty"`
	Changes    []config.Change `json:"changes,omitempty"`
	// ChangesOmitted and ErrorsOmitted count what the event does not keep beyond
	// MaxEventItems each (the updater's log line has the full count).
	ChangesOmitted int `json:"changes_omitted,omitempty"`
	ErrorsOmitted  int `json:"errors_omitted,omitempty"`
}

// MaxEventItems bounds the changes and the errors one event keeps: /events keeps 200
// events, and toggling a 12k-entry plan grew the process by about 9 MB a toggle.
const MaxEventItems = 100

func (e Event) String() string {
	return fmt.Sprintf("%s gen=%d %s %s", e.Time.Format(time.RFC3339), e.Generation, e.Source, e.Result)
}

// Events is a bounded log of recent updates, newest last.
type Events struct {
	mu   sync.Mutex
	max  int
	list []Event
}

// NewEvents keeps the last max events.
func NewEvents(max int) *Events { return &Events{max: max} }

// Add appends an event, dropping the oldest beyond the bound.
func (es *Events) Add(e Event) {
	if n := len(e.Changes); n > MaxEventItems {
		e.Changes, e.ChangesOmitted = append([]config.Change(nil), e.Changes[:MaxEventItems]...), e.ChangesOmitted+n-MaxEventItems
	}
	if n := len(e.Errors); n > MaxEventItems {
		e.Errors, e.ErrorsOmitted = append([]string(nil), e.Errors[:MaxEventItems]...), e.ErrorsOmitted+n-MaxEventItems
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	es.list = append(es.list, e)
	if len(es.list) > es.max {
		es.list = append([]Event(nil), es.list[len(es.list)-es.max:]...)
	}
}

// List returns a copy of the events, oldest first.
func (es *Events) List() []Event {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]Event(nil), es.list...)
}
