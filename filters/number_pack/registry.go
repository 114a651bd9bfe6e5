package numberpack

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/packfile"
)

// The process-wide registry of loaded pack files. Every route that names the same file
// (absolute path) at the same version (size, mtime, device and inode) holds the same
// Set: two routes on one 10M-number file hold it once. Entries are reference-counted:
// each generation that uses a set holds one reference, and the last release (a reload
// that swapped in a new version, a filter closed) drops the entry, so the memory goes
// when the last reader is gone. Concurrent loads of one version are loaded once: the
// second route waits for the first's load.
var registry = struct {
	sync.Mutex
	m map[setKey]*sharedSet
}{m: map[setKey]*sharedSet{}}

// setKey is a pack file at one version.
type setKey struct {
	path     string
	strings  bool // a string pack (keys: string) of the same file is another entry
	size     int64
	mtime    int64
	dev, ino uint64
}

func keyOf(path string, strs bool, st os.FileInfo) setKey {
	k := setKey{path: path, strings: strs, size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		k.dev, k.ino = uint64(sys.Dev), sys.Ino
	}
	return k
}

// sharedSet is one loaded pack file. set, fv, err and took are written once before
// ready is closed; refs is guarded by the registry's lock.
type sharedSet struct {
	key   setKey
	refs  int
	ready chan struct{}
	set   *packfile.Set // a number pack
	keys  *keySet       // a string pack
	fv    fileVersion
	took  time.Duration
	err   error
}

// acquireSet returns the set of the file at path at its current version, loading it if
// no route holds that version, with one reference the caller must release.
func acquireSet(path string, strs bool, stop <-chan struct{}) (*sharedSet, error) {
	for {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		k := keyOf(path, strs, st)
		registry.Lock()
		e := registry.m[k]
		if e == nil {
			e = &sharedSet{key: k, refs: 1, ready: make(chan struct{})}
			registry.m[k] = e
			registry.Unlock()
			start := time.Now()
			if strs {
				e.keys, e.fv, e.err = readKeySet(path, stop)
			} else {
				e.set, e.fv, e.err = readPackSet(path, stop)
			}
			e.took = time.Since(start)
			if e.err == nil && keyOf(path, strs, e.fv.info) != k {
				e.err = errChanged(path)
			}
			if e.err != nil {
				registry.Lock()
				if registry.m[k] == e {
					delete(registry.m, k)
				}
				registry.Unlock()
			}
			close(e.ready)
			if e.err != nil {
				return nil, e.err
			}
			return e, nil
		}
		e.refs++
		registry.Unlock()
		select {
		case <-e.ready:
		case <-stop:
			e.release()
			return nil, errStopped
		}
		if e.err != nil {
			e.release()
			if errors.Is(e.err, errStopped) { // the loading route was closed: load it here
				continue
			}
			return nil, e.err
		}
		return e, nil
	}
}

func (e *sharedSet) len() int {
	if e.keys != nil {
		return e.keys.Len()
	}
	return e.set.Len()
}

// release drops one reference; the last drops the entry from the registry.
func (e *sharedSet) release() {
	registry.Lock()
	defer registry.Unlock()
	if e.refs--; e.refs == 0 && registry.m[e.key] == e {
		delete(registry.m, e.key)
	}
}
