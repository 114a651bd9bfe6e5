package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDiskFull fills a real 1 MiB tmpfs: Append fails with ErrFull naming the
// directory and the disk-full cause, is not sticky (space freed elsewhere lets appends
// continue), and every acknowledged record survives a reopen byte for byte. Needs
// permission to mount (root in the test container); skipped otherwise.
func TestDiskFull(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs to provoke ENOSPC (%v); needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 128<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "journal")
	opts := Options{Dir: dir, SegmentBytes: 256 << 10, Fsync: (*os.File).Sync}
	j, _ := open(t, opts)
	var acked [][]byte
	var err error
	for i := 0; i < 10000; i++ {
		p := payload(i, 1000)
		if err = j.Append(p); err != nil {
			break
		}
		acked = append(acked, p)
	}
	if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Append on a full disk: %v; want ErrFull wrapping ENOSPC and naming %s", err, dir)
	}
	t.Logf("disk full after %d records: %v", len(acked), err)
	if st := j.Stats(); st.Failed || st.Records != uint64(len(acked)) {
		t.Fatalf("stats %+v: a failed write must not be sticky; want %d records", st, len(acked))
	}
	es, _ := all(t, j)
	equalPayloads(t, payloads(es), acked)

	// Space comes back: appends continue.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		p := payload(20000+i, 1000)
		if err := j.Append(p); err != nil {
			t.Fatalf("Append after space was freed: %v", err)
		}
		acked = append(acked, p)
	}
	// Fill it up again, then reopen while full.
	for i := 0; ; i++ {
		p := payload(30000+i, 1000)
		if err := j.Append(p); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatalf("second fill: %v", err)
			}
			break
		}
		acked = append(acked, p)
	}
	j.Close()
	j, rep := open(t, opts)
	defer j.Close()
	if rep.TornBytes != 0 || len(rep.Quarantined) != 0 {
		t.Fatalf("reopen on a full disk: report %+v, want nothing torn or damaged", rep)
	}
	es, _ = all(t, j)
	equalPayloads(t, payloads(es), acked)
}
