package numberpack

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/floodgate/floodgate/internal/packfile"
)

// fileVersion is what a pack file was when it was read.
type fileVersion struct {
	info os.FileInfo
	hash uint64 // the file's content hash (packfile.Hasher)
}

var errStopped = errors.New("number_pack: loader stopped")

// loadGeneration takes every pack file's set from the registry (loading the files that
// no route holds at their current version) and builds a new generation beside whatever
// is serving. A load checks stop between files and between chunks of a file (8 MiB of
// text, or 64Ki numbers of a gzip stream).
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

// readPackSet reads a pack file into a Set (packfile.ReadSet: two passes over the file,
// in parallel chunks on loadWorkers goroutines unless the file is gzip-compressed;
// nothing but the Set's own arrays is held). A file whose bytes differ between the
// passes, or whose size, mtime or inode changed while it was read, is an error (the next
// check retries).
func readPackSet(path string, stop <-chan struct{}) (*packfile.Set, fileVersion, error) {
	f, err := packfile.Open(path)
	if err != nil {
		return nil, fileVersion{}, err
	}
	defer f.Close()
	set, hash, err := packfile.ReadSet(f, loadWorkers(), func(nums []uint64) error {
		if slices.Contains(nums, reservedNumber) {
			return fmt.Errorf("%s: number %d is reserved (not a user number)", path, uint64(reservedNumber))
		}
		return nil
	}, func() error {
		if stopped(stop) {
			return errStopped
		}
		return nil
	})
	if err != nil {
		return nil, fileVersion{}, err
	}
	after, err := f.Unchanged()
	if err != nil {
		return nil, fileVersion{}, err
	}
	return set, fileVersion{info: after, hash: hash}, nil
}

// loadWorkers is how many goroutines read a pack file: every CPU. A load at start-up
// has the machine to itself; a reload during traffic shares it with the requests, which
// the Go scheduler interleaves with the load (a 10M-number pack is ~1 CPU-second).
var loadWorkers = func() int { return runtime.GOMAXPROCS(0) }
