package packfile

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// smallBlocks cuts files into chunks of a few bytes for the test, so that chunk
// boundaries fall everywhere: inside numbers, on line ends, inside comments.
func smallBlocks(t *testing.T, size int) {
	old := blockSize
	blockSize = size
	t.Cleanup(func() { blockSize = old })
}

// ReadSet gives the set the stream reader gives, and the same content hash, for every
// shape of file and any number of workers; the files it does not read in parallel (gzip,
// a byte-order mark, long lines) go through the stream reader, and a bad line is
// reported with its line number.
func TestReadSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var many strings.Builder
	var manyNums []uint64
	for i := range 6_000 {
		n := 1e9 + rng.Uint64N(9e9)
		if i%500 == 7 {
			n = manyNums[rng.IntN(len(manyNums))] // duplicates
		}
		manyNums = append(manyNums, n)
		switch i % 97 {
		case 0:
			fmt.Fprintf(&many, "# comment %d\n", i)
		case 1:
			many.WriteString("\n  \t\n")
		case 2:
			fmt.Fprintf(&many, "  %d\t\r\n", n)
			continue
		}
		fmt.Fprintf(&many, "%d\n", n)
	}
	var dense strings.Builder // lines that overflow into the overflow set
	var denseNums []uint64
	for range 5_000 {
		n := rng.Uint64N(7_000)
		denseNums = append(denseNums, n)
		fmt.Fprintf(&dense, "%d\n", n)
	}
	tests := []struct {
		desc    string
		content string
		want    []uint64
		wantErr string
		stream  bool // read by the stream reader, not in chunks
	}{
		{"empty", "", nil, "", false},
		{"only comments", "# a\n\n# b", nil, "", false},
		{"one number, no newline", "42", []uint64{42}, "", false},
		{"6K numbers with comments, blanks, CRLF, spaces and duplicates", many.String(), manyNums, "", false},
		{"the same without its last newline", strings.TrimSuffix(many.String(), "\n"), manyNums, "", false},
		{"dense: lines overflow", dense.String(), denseNums, "", false},
		{"byte-order mark (the stream reader)", "\xef\xbb\xbf5\n6\n", []uint64{5, 6}, "", true},
		{"gzip (the stream reader)", gz(t, many.String()), manyNums, "", true},
		{"a long comment line (the stream reader)", "1\n# " + strings.Repeat("x", 5000) + "\n2\n", []uint64{1, 2}, "", true},
		{"bad line named", "1\n2\n3x\n", nil, "p.txt:3: malformed number \"3x\"", true},
		{"bad line in gzip named", gz(t, "1\nx\n"), nil, "p.txt:2: malformed number \"x\"", true},
		{"line over MaxLineLen", "1\n" + strings.Repeat("9", MaxLineLen+1) + "\n", nil, "p.txt:2: line longer than", true},
	}
	dir := t.TempDir()
	for _, block := range []int{8 << 20, 4096, 37, 11} {
		for _, tc := range tests {
			for _, workers := range []int{1, 2, 3} {
				t.Run(fmt.Sprintf("%s/block %d/%d workers", tc.desc, block, workers), func(t *testing.T) {
					smallBlocks(t, block)
					p := filepath.Join(dir, "p.txt")
					if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
						t.Fatal(err)
					}
					f, err := Open(p)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					var checked []uint64
					mu := make(chan struct{}, 1)
					streams := streamReads.Load()
					s, hash, err := ReadSet(f, workers, func(nums []uint64) error {
						mu <- struct{}{}
						checked = append(checked, nums...)
						<-mu
						return nil
					}, nil)
					if streamed := streamReads.Load() > streams; streamed != tc.stream {
						t.Errorf("read as one stream: %v, want %v", streamed, tc.stream)
					}
					if tc.wantErr != "" {
						if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
							t.Fatalf("err = %v, want %q", err, tc.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					want := slices.Compact(slices.Sorted(slices.Values(tc.want)))
					if s.Len() != len(want) {
						t.Fatalf("Len %d, want %d", s.Len(), len(want))
					}
					for _, n := range want {
						if !s.Contains(n) {
							t.Fatalf("member %d missing", n)
						}
					}
					for range 2000 {
						n := rng.Uint64N(1e10)
						if _, in := slices.BinarySearch(want, n); in != s.Contains(n) {
							t.Fatalf("Contains(%d) = %v", n, !in)
						}
					}
					// (a number may be checked twice when the chunks give way to the stream)
					if got := slices.Compact(slices.Sorted(slices.Values(checked))); !slices.Equal(got, want) {
						t.Fatalf("check saw %d distinct numbers, want the file's %d", len(got), len(want))
					}
					if h, _ := HashFile(p); h != hash {
						t.Fatalf("hash %x, HashFile %x", hash, h)
					}
				})
			}
		}
	}
}

// An error from check or stop ends the read, unchanged.
func TestReadSetStops(t *testing.T) {
	smallBlocks(t, 64)
	var b strings.Builder
	for i := range 1000 {
		b.WriteString(strconv.Itoa(1_000_000+i) + "\n")
	}
	p := filepath.Join(t.TempDir(), "p.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	halt := errors.New("halt")
	for _, tc := range []struct {
		desc        string
		check, stop func() error
	}{
		{"check", func() error { return halt }, nil},
		{"stop", nil, func() error { return halt }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var check func([]uint64) error
			if tc.check != nil {
				check = func([]uint64) error { return tc.check() }
			}
			if _, _, err := ReadSet(f, 2, check, tc.stop); err != halt {
				t.Fatalf("err = %v, want halt", err)
			}
		})
	}
}

// The content hash is one function of the bytes, however they are written.
func TestHasher(t *testing.T) {
	smallBlocks(t, 16)
	data := bytes.Repeat([]byte("0123456789abcdefghij"), 10)
	for _, n := range []int{0, 1, 15, 16, 17, 32, len(data)} {
		whole := NewHasher()
		whole.Write(data[:n])
		bytewise := NewHasher()
		for i := range n {
			bytewise.Write(data[i : i+1])
		}
		var sums []uint64
		for i := 0; i < n; i += 16 {
			sums = append(sums, xxhashSum(data[i:min(i+16, n)]))
		}
		if whole.Sum64() != bytewise.Sum64() || whole.Sum64() != combine(sums) {
			t.Fatalf("%d bytes: %x, bytewise %x, by blocks %x", n, whole.Sum64(), bytewise.Sum64(), combine(sums))
		}
	}
	a, b := NewHasher(), NewHasher()
	a.Write([]byte("12\n"))
	b.Write([]byte("13\n"))
	if a.Sum64() == b.Sum64() {
		t.Fatal("two contents, one hash")
	}
}

func xxhashSum(b []byte) uint64 { h := NewHasher(); h.d.Write(b); return h.d.Sum64() }
