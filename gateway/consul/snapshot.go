package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
)

// snapshotFile is the on-disk last-known-good state of the Consul layers.
type snapshotFile struct {
	Version     int               `json:"version"`
	Saved       time.Time         `json:"saved"`
	Prefix      string            `json:"prefix"`
	Fingerprint string            `json:"fingerprint"`
	Keys        int               `json:"keys"`
	Overrides   []config.Override `json:"overrides"`
	ActivePlan  string            `json:"active_plan,omitempty"`
	Plan        []config.Override `json:"plan,omitempty"`
}

// WriteSnapshot stores the applied Consul layers durably: a temporary file in the same
// directory, fsync, rename over the old one, fsync the directory. A crash at any point
// leaves either the old or the new snapshot, never a torn one.
func WriteSnapshot(path, prefix string, s *Snapshot) error {
	_, err := writeSnapshot(path, prefix, s, nil)
	return err
}

// writeSnapshot is WriteSnapshot encoding into buf (returned for the next write).
func writeSnapshot(path, prefix string, s *Snapshot, buf []byte) ([]byte, error) {
	b := appendSnapshot(buf[:0], snapshotFile{Version: 1, Saved: time.Now().UTC(), Prefix: prefix, Fingerprint: s.Fingerprint, Keys: s.Keys,
		Overrides: s.Overrides, ActivePlan: s.ActivePlan, Plan: s.Plan()})
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, err
	}
	tmp, err := os.CreateTemp(dir, ".floodgate-lkg-*")
	if err != nil {
		return b, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return b, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return b, err
	}
	if err := tmp.Close(); err != nil {
		return b, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return b, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return b, err
	}
	defer d.Close()
	return b, d.Sync()
}

// appendSnapshot appends f as compact JSON and a newline - what json.Marshal writes
// (TestSnapshotEncoding), without its garbage: the snapshot is written after every
// update, 50,000 keys and more, and encoding/json allocated about twice its size.
func appendSnapshot(b []byte, f snapshotFile) []byte {
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(f.Version), 10)
	b = append(b, `,"saved":`...)
	b = appendJSONString(b, f.Saved.Format(time.RFC3339Nano))
	b = append(b, `,"prefix":`...)
	b = appendJSONString(b, f.Prefix)
	b = append(b, `,"fingerprint":`...)
	b = appendJSONString(b, f.Fingerprint)
	b = append(b, `,"keys":`...)
	b = strconv.AppendInt(b, int64(f.Keys), 10)
	b = append(b, `,"overrides":`...)
	b = appendOverrides(b, f.Overrides)
	if f.ActivePlan != "" {
		b = append(b, `,"active_plan":`...)
		b = appendJSONString(b, f.ActivePlan)
	}
	if len(f.Plan) > 0 {
		b = append(b, `,"plan":`...)
		b = appendOverrides(b, f.Plan)
	}
	return append(b, "}\n"...)
}

func appendOverrides(b []byte, ovs []config.Override) []byte {
	if ovs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, o := range ovs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"path":`...)
		b = appendJSONString(b, o.Path)
		b = append(b, `,"value":`...)
		b = appendJSONString(b, o.Value)
		b = append(b, `,"origin":`...)
		b = appendJSONString(b, o.Origin)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendJSONString appends s quoted as encoding/json quotes it: a string of printable
// ASCII without a quote, a backslash, <, > or & as it is, any other through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// snapshotWriter writes the last-known-good snapshot off the watcher's path: save hands
// it the latest applied snapshot and returns at once; its goroutine writes the newest it
// has been handed (a snapshot replaced before it was written is never written: only the
// last counts). Each write is WriteSnapshot's (a crash mid-write leaves the previous
// snapshot). When the watcher stops, a snapshot not yet written is written before the
// goroutine ends.
type snapshotWriter struct {
	path, prefix string
	logger       *zap.Logger

	mu   sync.Mutex
	next *Snapshot
	kick chan struct{}
	done chan struct{} // closed when run has returned
	// wrote counts finished writes (tests wait on it)
	wrote atomic.Int64
}

func newSnapshotWriter(path, prefix string, logger *zap.Logger) *snapshotWriter {
	return &snapshotWriter{path: path, prefix: prefix, logger: logger, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// save asks for s to be written.
func (sw *snapshotWriter) save(s *Snapshot) {
	sw.mu.Lock()
	sw.next = s
	sw.mu.Unlock()
	select {
	case sw.kick <- struct{}{}:
	default:
	}
}

// run writes what save hands it until ctx is done, then what is left.
func (sw *snapshotWriter) run(ctx context.Context) {
	defer close(sw.done)
	var buf []byte
	write := func() {
		sw.mu.Lock()
		s := sw.next
		sw.next = nil
		sw.mu.Unlock()
		if s == nil {
			return
		}
		var err error
		if buf, err = writeSnapshot(sw.path, sw.prefix, s, buf); err != nil {
			sw.logger.Error("cannot write the last-known-good snapshot", zap.String("path", sw.path), zap.Error(err))
		}
		sw.wrote.Add(1)
	}
	for {
		select {
		case <-ctx.Done():
			write()
			return
		case <-sw.kick:
			write()
		}
	}
}

// ReadSnapshot loads a snapshot written by WriteSnapshot. It returns (nil, time, nil)
// when the file does not exist.
func ReadSnapshot(path, prefix string) (*Snapshot, time.Time, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, time.Time{}, fmt.Errorf("snapshot %s is damaged: %v", path, err)
	}
	if f.Version != 1 {
		return nil, time.Time{}, fmt.Errorf("snapshot %s: unknown version %d", path, f.Version)
	}
	if f.Prefix != prefix {
		return nil, time.Time{}, fmt.Errorf("snapshot %s is for prefix %q, not %q", path, f.Prefix, prefix)
	}
	s := &Snapshot{Overrides: f.Overrides, ActivePlan: f.ActivePlan, Keys: f.Keys, Fingerprint: f.Fingerprint, Plans: map[string][]config.Override{}}
	if f.ActivePlan != "" {
		s.Plans[f.ActivePlan] = f.Plan
	}
	return s, f.Saved, nil
}
