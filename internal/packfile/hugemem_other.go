//go:build !linux

package packfile

func hugeAlloc[T any](owner *Set, n int) []T { return make([]T, n) }

type mapping struct{}

// HugePages reports no huge pages: the sets' arrays are on the Go heap here.
func (s *Set) HugePages() (huge, mapped int64, err error) { return 0, 0, nil }
