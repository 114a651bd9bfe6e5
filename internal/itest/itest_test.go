package itest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRemoveStaleBinaries: the binary directory of a test process that has ended is
// removed; those of running processes (this one) stay.
func TestRemoveStaleBinaries(t *testing.T) {
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Skipf("no 'true' to make an ended process: %v", err)
	}
	dead := filepath.Join(os.TempDir(), fmt.Sprintf("floodgate-itest-%d-test", done.Process.Pid))
	alive := filepath.Join(os.TempDir(), fmt.Sprintf("floodgate-itest-%d-test", os.Getpid()))
	for _, d := range []string{dead, alive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	removeStaleBinaries()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the directory of ended process %d is still there (%v)", done.Process.Pid, err)
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("the directory of this running process was removed: %v", err)
	}
}
