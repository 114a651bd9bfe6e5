package numberpack

import (
	"math"

	"github.com/floodgate/floodgate/internal/packfile"
)

// numberHasher is the bigcache Hasher of the service's answer cache: keys are canonical decimal user
// numbers, hashed as a bijection of their value.
type numberHasher struct{}

func (numberHasher) Sum64(key string) uint64 {
	var n uint64
	for i := 0; i < len(key); i++ {
		n = n*10 + uint64(key[i]-'0')
	}
	return hashNumber(n)
}

// hashNumber is murmur3's fmix64 of n+1: a bijection on uint64 (each step is invertible),
// so distinct numbers never collide. fmix64(0) = 0 and bigcache reads a zero hash as
// "deleted", so the +1 moves the zero hash to n = MaxUint64, which is not a user number
// (reservedNumber).
func hashNumber(n uint64) uint64 {
	n++
	n ^= n >> 33
	n *= 0xff51afd7ed558ccd
	n ^= n >> 33
	n *= 0xc4ceb9fe1a85ec53
	n ^= n >> 33
	return n
}

// reservedNumber is the one number the caches cannot hold (its hash is 0).
const reservedNumber = math.MaxUint64

// canonical returns the user number in b as the caches key it - 1 to 20 digits, no sign
// or spaces, fitting a uint64, without leading zeros ("007" is 7) - and its value. It
// does not allocate: the result is a sub-slice of b.
func canonical(b []byte) ([]byte, uint64, bool) {
	n, ok := packfile.ParseNumber(b)
	if !ok || n == reservedNumber {
		return nil, 0, false
	}
	for len(b) > 1 && b[0] == '0' {
		b = b[1:]
	}
	return b, n, true
}
