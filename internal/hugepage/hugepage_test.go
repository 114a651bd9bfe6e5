package hugepage

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// mappingOf returns the VmFlags and AnonHugePages of the mapping of /proc/self/smaps
// that holds address p.
func mappingOf(t *testing.T, p uintptr) (flags []string, huge int64) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps here: %v", err)
	}
	in, found := false, false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			b, _ := strconv.ParseUint(hi, 16, 64)
			in = uint64(p) >= a && uint64(p) < b
			found = found || in
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
	if !found {
		t.Fatalf("no mapping holds %#x", p)
	}
	return flags, huge
}

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
	flags, huge := mappingOf(t, p)
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
