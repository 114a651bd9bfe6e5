//go:build linux

package hugepage

import (
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
