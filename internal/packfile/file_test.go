package packfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A File reads in passes, each from the start, and hashes every byte of the file.
func TestFilePasses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc    string
		content string
		nums    []uint64
		keys    []string
	}{
		{"plain", "# c\n1\n2\n\n3", []uint64{1, 2, 3}, []string{"1", "2", "3"}},
		{"gzip", gz(t, "5\n6\n"), []uint64{5, 6}, []string{"5", "6"}},
		{"two gzip streams", gz(t, "7\n") + gz(t, "8\n"), []uint64{7, 8}, []string{"7", "8"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(dir, "p.txt")
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for pass := 1; pass <= 2; pass++ {
				var got []uint64
				var h bytes.Buffer
				n, err := f.Numbers(&h, func(n uint64) error { got = append(got, n); return nil })
				if err != nil || n != len(tc.nums) || !slices.Equal(got, tc.nums) {
					t.Fatalf("pass %d: got %v (%d), %v; want %v", pass, got, n, err, tc.nums)
				}
				if h.String() != tc.content {
					t.Fatalf("pass %d: hashed %q, want the whole file %q", pass, h.String(), tc.content)
				}
			}
			var keys []string
			var h bytes.Buffer
			if _, err := f.Keys(&h, func(k []byte) error { keys = append(keys, string(k)); return nil }); err != nil || !slices.Equal(keys, tc.keys) {
				t.Fatalf("keys %v, %v; want %v", keys, err, tc.keys)
			}
			if h.String() != tc.content {
				t.Fatalf("keys pass hashed %q, want the whole file", h.String())
			}
			if _, err := f.Numbers(nil, func(uint64) error { return nil }); err != nil {
				t.Fatalf("no hash: %v", err)
			}
			if info, err := f.Unchanged(); err != nil || !SameVersion(info, f.Info()) {
				t.Fatalf("Unchanged = %v, %v", info, err)
			}
		})
	}
}

// Unchanged tells a file modified or replaced since Open.
func TestFileUnchanged(t *testing.T) {
	tests := []struct {
		desc   string
		change func(t *testing.T, p string)
	}{
		{"appended", func(t *testing.T, p string) {
			fh, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.WriteString("9\n")
			fh.Close()
		}},
		{"mtime moved", func(t *testing.T, p string) {
			if err := os.Chtimes(p, time.Now(), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced by a rename", func(t *testing.T, p string) {
			q := p + ".new"
			st, _ := os.Stat(p)
			if err := os.WriteFile(q, []byte("1\n2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(q, st.ModTime(), st.ModTime()) // same size and mtime: only the inode differs
			if err := os.Rename(q, p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "p.txt")
			if err := os.WriteFile(p, []byte("1\n2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tc.change(t, p)
			if _, err := f.Unchanged(); !errors.Is(err, ErrChanged) {
				t.Fatalf("Unchanged after the file was %s: %v, want ErrChanged", tc.desc, err)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing file: %v", err)
	}
}
