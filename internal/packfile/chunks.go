package packfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// The parallel reader. A plain (not gzip) pack file is cut into blockSize chunks at fixed
// offsets; a line belongs to the chunk its first byte is in. Workers take chunks in turn,
// read each with ReadAt (and the end of its last line from the next chunk), hash the
// chunk's bytes and parse its lines. It takes only what the stream reader takes, and
// less: a gzip file, a byte-order mark, a line longer than maxChunkLine or a malformed
// line end it with errNotParallel, and the caller reads the file with the stream reader,
// which accepts the same files and reports errors with their line numbers.

// errNotParallel: read this file with the stream reader (Numbers).
var errNotParallel = errors.New("packfile: not for the parallel reader")

// maxChunkLine is the longest line the parallel reader takes.
const maxChunkLine = 4096

// chunks reads the file's numbers in workers goroutines: fn(w, nums) gets each chunk's
// numbers (w is the worker, 0 to workers-1; one worker's calls never overlap, different
// workers' do). nums is valid only during the call. It returns the file's content hash
// (Hasher) and how many numbers it read. An error from fn stops the read and is
// returned unchanged.
func (f *File) chunks(workers int, fn func(w int, nums []uint64) error) (hash uint64, count int, err error) {
	size := f.info.Size()
	var magic [3]byte
	if m, _ := f.f.ReadAt(magic[:], 0); (m >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) || (m == 3 && bytes.Equal(magic[:], bom)) {
		return 0, 0, errNotParallel
	}
	bs := int64(blockSize)
	n := int((size + bs - 1) / bs)
	sums := make([]uint64, n)
	var next, total atomic.Int64
	var stop atomic.Bool
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, blockSize+maxChunkLine+1)
			var nums []uint64
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				var err error
				buf, nums, sums[i], err = f.chunk(int64(i), size, buf, nums[:0])
				if err == nil {
					total.Add(int64(len(nums)))
					err = fn(w, nums)
				}
				if err != nil {
					errs[w] = err
					stop.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs { // fn's errors first: a stop is not "not parallel"
		if err != nil && !errors.Is(err, errNotParallel) {
			return 0, 0, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	return combine(sums), int(total.Load()), nil
}

// chunk reads chunk i of a file of size bytes into buf and appends its numbers to nums.
func (f *File) chunk(i, size int64, buf []byte, nums []uint64) ([]byte, []uint64, uint64, error) {
	start := i * int64(blockSize)
	end := min(start+int64(blockSize), size)
	buf = buf[:end-start]
	if _, err := f.f.ReadAt(buf, start); err != nil {
		if errors.Is(err, io.EOF) {
			return buf, nums, 0, f.changed()
		}
		return buf, nums, 0, fmt.Errorf("%s: %w", f.path, err)
	}
	sum := xxhash.Sum64(buf)
	lines := buf
	if i > 0 { // the first line that starts here: after the line the previous chunk ends in
		var prev [1]byte
		if _, err := f.f.ReadAt(prev[:], start-1); err != nil {
			return buf, nums, 0, fmt.Errorf("%s: %w", f.path, err)
		}
		if prev[0] != '\n' {
			j := bytes.IndexByte(lines, '\n')
			if j < 0 {
				return buf, nums, sum, nil // no line starts in this chunk
			}
			lines = lines[j+1:]
		}
	}
	if len(lines) > 0 && lines[len(lines)-1] != '\n' && end < size { // the last line ends in the next chunk
		var tail [maxChunkLine]byte
		m, err := f.f.ReadAt(tail[:min(int64(len(tail)), size-end)], end)
		if err != nil && !errors.Is(err, io.EOF) {
			return buf, nums, 0, fmt.Errorf("%s: %w", f.path, err)
		}
		j := bytes.IndexByte(tail[:m], '\n')
		if j < 0 {
			if end+int64(m) < size {
				return buf, nums, 0, errNotParallel // a long line
			}
			j = m - 1 // the file's last line, unterminated
		}
		off := len(buf) - len(lines)
		buf = append(buf, tail[:j+1]...)
		lines = buf[off:]
	}
	for len(lines) > 0 {
		j := bytes.IndexByte(lines, '\n')
		line := lines
		if j >= 0 {
			line, lines = lines[:j], lines[j+1:]
		} else {
			lines = nil
		}
		if len(line) >= maxChunkLine {
			return buf, nums, 0, errNotParallel
		}
		t := trim(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		n, ok := ParseNumber(t)
		if !ok {
			return buf, nums, 0, errNotParallel // the stream reader names the line
		}
		nums = append(nums, n)
	}
	return buf, nums, sum, nil
}

// changed is the error of a file that is not what Open saw.
func (f *File) changed() error { return fmt.Errorf("%s %w", f.path, ErrChanged) }
