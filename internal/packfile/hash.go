package packfile

import (
	"encoding/binary"
	"io"
	"os"

	"github.com/cespare/xxhash/v2"
)

// blockSize is the unit of the content hash and of the parallel reader's chunks.
var blockSize = 8 << 20 // a variable for the tests, which cut small files into many chunks

// Hasher computes a pack file's content hash: the xxhash64 of the little-endian
// xxhash64s of its 8 MiB blocks. It is one function of the bytes, computed the same
// whether a file is read in one stream (Hasher as the io.Writer of Numbers) or in
// parallel chunks (ReadSet), so that a reader can tell a new version of a file from a
// touched one by comparing hashes.
type Hasher struct {
	d    *xxhash.Digest
	n    int // bytes of the current block
	sums []byte
}

// NewHasher returns a Hasher of no bytes yet.
func NewHasher() *Hasher { return &Hasher{d: xxhash.New()} }

// Write implements io.Writer; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(len(p), blockSize-h.n)
		h.d.Write(p[:k])
		h.n += k
		p = p[k:]
		if h.n == blockSize {
			h.sums = binary.LittleEndian.AppendUint64(h.sums, h.d.Sum64())
			h.d.Reset()
			h.n = 0
		}
	}
	return total, nil
}

// Sum64 is the hash of the bytes written so far.
func (h *Hasher) Sum64() uint64 {
	sums := h.sums
	if h.n > 0 {
		sums = binary.LittleEndian.AppendUint64(sums[:len(sums):len(sums)], h.d.Sum64())
	}
	return xxhash.Sum64(sums)
}

// combine is Sum64 from the blocks' own hashes.
func combine(blocks []uint64) uint64 {
	b := make([]byte, 0, 8*len(blocks))
	for _, s := range blocks {
		b = binary.LittleEndian.AppendUint64(b, s)
	}
	return xxhash.Sum64(b)
}

// HashFile returns the content hash (Hasher) of the file at path.
func HashFile(path string) (uint64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	h := NewHasher()
	if _, err := io.Copy(h, fh); err != nil {
		return 0, err
	}
	return h.Sum64(), nil
}
