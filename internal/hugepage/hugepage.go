// Package hugepage allocates large arrays that are read at random (hash tables, number
// packs) so that the kernel can back them with 2 MiB transparent huge pages.
//
// Why: a random read of an 8 MiB table touches a new 4 KiB page almost every time, and
// on a virtual machine a TLB miss walks two sets of page tables (the guest's and the
// host's). Measured on the bench machine (bench/RESULTS.md, "Huge pages"): the
// token_bucket table of 1M keys was 7.8% of the gateway's CPU under make bench, nearly
// all of it the first load of a set. With huge pages an 8 MiB table takes 4 TLB entries.
//
// The kernel here runs THP in "madvise" mode (the default of most distributions), where
// only memory marked MADV_HUGEPAGE gets huge pages, and Go's runtime marks none of its
// heap. Two forms: Slice returns ordinary Go memory (the garbage collector owns it: no
// lifetime to manage, nothing to unmap) with the 2 MiB-aligned part that holds the array
// marked - the token_bucket tables; Map returns memory outside the Go heap that the
// caller unmaps - number packs of hundreds of MiB, which would otherwise raise the
// collector's heap goal by as much and wait for a collection to be given back.
package hugepage

import "unsafe"

// Size is the size of a transparent huge page on x86-64 and arm64 (4 KiB base pages).
const Size = 2 << 20

// Min is the smallest array worth marking: below one huge page there is nothing to gain.
const Min = Size

// Slice returns a zeroed slice of n Ts. When the array takes at least Min bytes, it is
// placed at a 2 MiB boundary inside a Go allocation one huge page larger, and that
// memory is marked for huge pages (best effort: any error leaves ordinary pages). The
// extra memory is at most one huge page per array; Extra reports it.
func Slice[T any](n int) []T {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if size < Min || unsafe.Sizeof(zero) == 0 || Size%unsafe.Sizeof(zero) != 0 {
		return make([]T, n)
	}
	per := Size / int(unsafe.Sizeof(zero))
	buf := make([]T, n+per)
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	skip := int((Size-addr%Size)%Size) / int(unsafe.Sizeof(zero))
	s := buf[skip : skip+n : skip+n]
	advise(unsafe.Pointer(unsafe.SliceData(s)), roundUp(size))
	return s
}

// Extra is the memory Slice adds to an array of size bytes.
func Extra(size int) int {
	if size < Min {
		return 0
	}
	return Size
}

func roundUp(size int) int { return (size + Size - 1) &^ (Size - 1) }
