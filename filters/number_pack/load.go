package numberpack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/floodgate/floodgate/internal/packfile"
)

// fileVersion is what a pack file was when it was read.
type fileVersion struct {
	info os.FileInfo
	hash uint64 // xxhash64 of the file's bytes
}

var errStopped = errors.New("number_pack: loader stopped")

// loadGeneration takes every pack file's set from the registry (loading the files that
// no route holds at their current version) and builds a new generation beside whatever
// is serving. A load checks stop between files and every 64Ki numbers.
func loadGeneration(packs []packSpec, stop <-chan struct{}) (*generation, error) {
	start := time.Now()
	g := &generation{}
	for _, p := range packs {
		s, err := acquireSet(p.path, p.strings, stop)
		if err != nil {
			for _, s := range g.sets {
				s.release()
			}
			return nil, err
		}
		g.sets = append(g.sets, s)
		g.paths = append(g.paths, p.path)
		g.files = append(g.files, s.fv)
		g.counts = append(g.counts, s.len())
		g.total += s.len()
	}
	g.took = time.Since(start)
	return g, nil
}

// hashFile returns the xxhash64 of the file's bytes.
func hashFile(path string) (uint64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	h := xxhash.New()
	if _, err := io.Copy(h, fh); err != nil {
		return 0, err
	}
	return h.Sum64(), nil
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// packSpec is one pack of a filter: its name, absolute file path and whether its keys
// are strings (keys: string) rather than user numbers.
type packSpec struct {
	name, path string
	strings    bool
}

// errChanged is the error of a file that changed while it was read (the next check
// retries it).
func errChanged(path string) error { return fmt.Errorf("%s %w", path, packfile.ErrChanged) }

// readPackSet reads a pack file into a Set in three passes over the file (range and
// count, per-bucket counts, the numbers; two for the line layout, which needs no
// counts), so that nothing but the Set's own arrays is held: 100M numbers load in about
// 3.2 bytes each instead of the 8 a []uint64 of them would take before sorting. Each
// pass hashes the bytes; a file whose bytes differ between passes, or whose size, mtime
// or inode changed while it was read, is an error (the next check retries).
func readPackSet(path string, stop <-chan struct{}) (*packfile.Set, fileVersion, error) {
	f, err := packfile.Open(path)
	if err != nil {
		return nil, fileVersion{}, err
	}
	defer f.Close()
	b := packfile.NewSetBuilder()
	var hash uint64
	for pass := 1; pass <= 3; pass++ {
		if pass == 2 && !b.NeedsCounts() { // the line layout: no per-bucket counts
			continue
		}
		h := xxhash.New()
		k := 0
		_, err = f.Numbers(h, func(n uint64) error {
			if k++; k&0xffff == 0 && stopped(stop) {
				return errStopped
			}
			switch pass {
			case 1:
				if n == reservedNumber {
					return fmt.Errorf("%s: number %d is reserved (not a user number)", path, n)
				}
				b.Scan(n)
				return nil
			case 2:
				return b.CountNumber(n)
			default:
				return b.Add(n)
			}
		})
		if errors.Is(err, packfile.ErrSetChanged) {
			return nil, fileVersion{}, errChanged(path)
		}
		if err != nil {
			return nil, fileVersion{}, err
		}
		switch pass {
		case 1:
			hash = h.Sum64()
			if err := b.Size(); err != nil {
				return nil, fileVersion{}, fmt.Errorf("%s: %w", path, err)
			}
		case 2:
			b.Place()
		}
		if h.Sum64() != hash {
			return nil, fileVersion{}, errChanged(path)
		}
	}
	set, err := b.Finish()
	if err != nil {
		return nil, fileVersion{}, errChanged(path)
	}
	after, err := f.Unchanged()
	if err != nil {
		return nil, fileVersion{}, err
	}
	return set, fileVersion{info: after, hash: hash}, nil
}
