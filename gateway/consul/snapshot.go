package consul

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	f := snapshotFile{Version: 1, Saved: time.Now().UTC(), Prefix: prefix, Fingerprint: s.Fingerprint, Keys: s.Keys,
		Overrides: s.Overrides, ActivePlan: s.ActivePlan, Plan: s.Plan()}
	b, err := json.Marshal(f) // not indented: written after every update, 50,000 keys and more
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".floodgate-lkg-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
