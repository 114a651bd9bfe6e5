//go:build !linux

package hugepage

import "unsafe"

func advise(unsafe.Pointer, int) {}

// Map returns a plain array and no mapping here (no transparent huge pages).
func Map[T any](n, min int) ([]T, *Mapping) { return make([]T, n), nil }

// Mapping is one array made by Map (none here).
type Mapping struct{}

// Unmap does nothing here.
func (m *Mapping) Unmap() {}

// Addr is 0 here.
func (m *Mapping) Addr() uintptr { return 0 }

// Size is 0 here.
func (m *Mapping) Size() int { return 0 }

// Region reports no mapping here.
func Region(p uintptr) (start uintptr, huge int64, flags []string, ok bool, err error) {
	return 0, 0, nil, false, nil
}
