//go:build linux

package hugepage

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

const (
	madvHugePage = 14 // MADV_HUGEPAGE
	madvCollapse = 25 // MADV_COLLAPSE (Linux 6.1): back the range with huge pages now
)

// advise marks [p, p+size) for huge pages. Memory the Go runtime had already used (and
// zeroed, so faulted in as 4 KiB pages) is collapsed at once where the kernel supports
// MADV_COLLAPSE; fresh memory gets huge pages at its first touch. Errors are ignored: the
// array works the same on ordinary pages.
func advise(p unsafe.Pointer, size int) {
	b := unsafe.Slice((*byte)(p), size)
	if syscall.Madvise(b, madvHugePage) == nil {
		_ = syscall.Madvise(b, madvCollapse)
	}
}

// Map returns a zeroed array of n Ts outside the Go heap, in a private anonymous mapping
// marked for huge pages, and the mapping, which the caller unmaps (Unmap) once no reader
// can reach the array: an array that lives as long as an immutable owner (a number pack)
// and is read through it, so that its memory neither counts towards the garbage
// collector's heap goal nor waits for a collection to be given back. Arrays under min
// bytes, and any failure, get a plain make and a nil mapping.
func Map[T any](n, min int) ([]T, *Mapping) {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if size < min || size == 0 {
		return make([]T, n), nil
	}
	mem, err := syscall.Mmap(-1, 0, roundUp(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]T, n), nil
	}
	_ = syscall.Madvise(mem, madvHugePage)
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[0])), n), &Mapping{mem: mem}
}

// Mapping is one array made by Map.
type Mapping struct{ mem []byte }

// Unmap gives the mapping back (once; later calls do nothing).
func (m *Mapping) Unmap() {
	if m.mem != nil {
		_ = syscall.Munmap(m.mem)
		m.mem = nil
	}
}

// Addr is where the mapping starts (0 once unmapped) and Size its length in bytes.
func (m *Mapping) Addr() uintptr {
	if m.mem == nil {
		return 0
	}
	return uintptr(unsafe.Pointer(&m.mem[0]))
}

// Size is the mapping's length in bytes (0 once unmapped).
func (m *Mapping) Size() int { return len(m.mem) }

// Region reports, from /proc/self/smaps, the mapping of this process that holds address
// p: where it starts (the kernel merges adjacent mappings of the same kind into one), the
// bytes of it backed by transparent huge pages (AnonHugePages) and its VmFlags ("hg":
// marked MADV_HUGEPAGE). ok is false when no mapping holds p.
func Region(p uintptr) (start uintptr, huge int64, flags []string, ok bool, err error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, 0, nil, false, err
	}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			if ok {
				break // the mapping that held p has ended
			}
			lo, hi, _ := strings.Cut(f[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			b, _ := strconv.ParseUint(hi, 16, 64)
			in = uint64(p) >= a && uint64(p) < b
			if in {
				start, ok = uintptr(a), true
			}
			continue
		}
		switch {
		case in && strings.HasPrefix(line, "AnonHugePages:") && len(f) == 3:
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			huge = kb << 10
		case in && strings.HasPrefix(line, "VmFlags:"):
			flags = f[1:]
		}
	}
	return start, huge, flags, ok, nil
}
