package hugepage

import (
	"os"
	"strings"
	"testing"
	"unsafe"
)

func thpMode(t *testing.T) string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		t.Skipf("no transparent huge pages here: %v", err)
	}
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		t.Skipf("cannot read the THP mode from %q", s)
	}
	return s[i+1 : j]
}

// TestSliceMarksHugePages: a large array starts at a 2 MiB boundary, its memory is marked
// MADV_HUGEPAGE (the "hg" flag the kernel shows for the mapping) and, once written, the
// kernel backs it with huge pages (logged: backing is the kernel's choice and can fail on
// fragmented memory, the mark cannot).
func TestSliceMarksHugePages(t *testing.T) {
	if thpMode(t) == "never" {
		t.Skip("transparent huge pages are off on this machine")
	}
	s := Slice[uint64](1 << 20) // 8 MiB
	if len(s) != 1<<20 || cap(s) != 1<<20 {
		t.Fatalf("len %d cap %d, want %d", len(s), cap(s), 1<<20)
	}
	for i := range s {
		if s[i] != 0 {
			t.Fatalf("s[%d] = %d, want a zeroed array", i, s[i])
		}
		s[i] = uint64(i)
	}
	p := uintptr(unsafe.Pointer(&s[0]))
	if p%Size != 0 {
		t.Fatalf("array at %#x, not at a 2 MiB boundary", p)
	}
	_, huge, flags, ok, err := Region(p)
	if err != nil {
		t.Skipf("no /proc/self/smaps here: %v", err)
	}
	if !ok {
		t.Fatalf("no mapping holds %#x", p)
	}
	hg := false
	for _, f := range flags {
		hg = hg || f == "hg"
	}
	if !hg {
		t.Fatalf("the array's mapping is not marked for huge pages: VmFlags %v", flags)
	}
	t.Logf("array of 8 MiB: %d bytes of its mapping on huge pages", huge)
}

// TestSliceSmallArraysArePlain: below one huge page nothing is gained; the array is a
// plain make, with no extra memory.
func TestSliceSmallArraysArePlain(t *testing.T) {
	s := Slice[uint64](1000)
	if len(s) != 1000 || cap(s) != 1000 {
		t.Fatalf("len %d cap %d, want 1000", len(s), cap(s))
	}
	if Extra(8000) != 0 || Extra(8<<20) != Size {
		t.Fatalf("Extra(8000) = %d, Extra(8 MiB) = %d; want 0 and %d", Extra(8000), Extra(8<<20), Size)
	}
}

// TestMapMarksHugePages: Map puts a large array in a mapping of its own, marked for huge
// pages, zeroed and writable, which Unmap gives back; a small one is a plain make.
func TestMapMarksHugePages(t *testing.T) {
	if thpMode(t) == "never" {
		t.Skip("transparent huge pages are off on this machine")
	}
	a, m := Map[uint32](2<<20, 4<<20) // 8 MiB
	if m == nil || len(a) != 2<<20 || m.Size() < 8<<20 {
		t.Fatalf("no mapping for 8 MiB (len %d)", len(a))
	}
	for i := range a {
		if a[i] != 0 {
			t.Fatalf("a[%d] = %d, want a zeroed array", i, a[i])
		}
		a[i] = uint32(i)
	}
	start, _, flags, ok, err := Region(m.Addr())
	if err != nil || !ok || start != m.Addr() {
		t.Fatalf("region of the mapping: start %#x ok %v err %v, want %#x", start, ok, err, m.Addr())
	}
	if !strings.Contains(" "+strings.Join(flags, " ")+" ", " hg ") {
		t.Fatalf("the mapping is not marked for huge pages: VmFlags %v", flags)
	}
	m.Unmap()
	if m.Addr() != 0 || m.Size() != 0 {
		t.Fatal("the mapping is still there after Unmap")
	}
	if small, m := Map[uint32](1000, 4<<20); m != nil || len(small) != 1000 {
		t.Fatalf("a small array got a mapping")
	}
}
