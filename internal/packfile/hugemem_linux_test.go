//go:build linux

package packfile

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// The arrays of a big set live in their own mappings, and HugePages reads from the
// kernel how much of them is backed by huge pages (how much depends on the machine:
// THP's mode and free memory; logged, not asserted).
func TestHugePages(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	nums := make([]uint64, 2_000_000) // ~6.4 MB of lines: one mapping
	for i := range nums {
		nums[i] = 1e9 + rng.Uint64N(9e9)
	}
	s := buildSet(t, nums)
	huge, mapped, err := s.HugePages()
	if err != nil {
		t.Fatal(err)
	}
	if mapped < int64(2*len(s.lines)) || huge < 0 || huge > mapped {
		t.Fatalf("huge %d of mapped %d bytes; the lines take %d", huge, mapped, 2*len(s.lines))
	}
	mode, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	t.Logf("%d of %d mapped bytes in huge pages (THP: %s)", huge, mapped, strings.TrimSpace(string(mode)))
	if small := buildSet(t, nums[:1000]); small.maps != nil {
		t.Fatal("a small set got its own mapping")
	} else if h, m, _ := small.HugePages(); h != 0 || m != 0 {
		t.Fatalf("small set: %d of %d", h, m)
	}
}
