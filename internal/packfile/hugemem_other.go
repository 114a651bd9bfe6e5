//go:build !linux

package packfile

func hugeAlloc[T any](owner *Set, n int) []T { return make([]T, n) }

type mapping struct{}
