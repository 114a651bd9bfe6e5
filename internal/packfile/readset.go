package packfile

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
)

// ReadSet reads the pack file into a Set with workers goroutines and returns it with the
// file's content hash (Hasher). Nothing but the Set's own arrays is held: 100M numbers
// load in about 3.2 bytes each, not the 8 of a []uint64 of them.
//
// It reads the file twice (three times for the sorted-buckets layout): pass 1 finds the
// range and count, pass 3 puts each number in its line. A plain file is read in parallel
// chunks (chunks.go) in both passes; pass 3 then partitions each chunk's numbers by
// line, and each worker fills its own range of lines from every chunk, in line order -
// no two workers write one line, and the writes move through the set instead of
// jumping across it (at 100M numbers the lines are 320 MB: a write per number to a
// random line is a cache miss each). A gzip file, or one the chunk reader does not take,
// is read as one stream.
//
// check (nil: none) gets every number of pass 1, in batches, from several goroutines at
// once (a number may come twice when a file turns out not to be for the chunk reader); stop (nil: none) is asked between batches of both passes. An error from either
// ends the read and is returned unchanged. A file whose bytes differ between the passes
// is an error wrapping ErrChanged; the caller checks Unchanged after.
func ReadSet(f *File, workers int, check func(nums []uint64) error, stop func() error) (*Set, uint64, error) {
	if check == nil {
		check = func([]uint64) error { return nil }
	}
	if stop == nil {
		stop = func() error { return nil }
	}
	workers = max(1, workers)
	b := NewSetBuilder()
	type stat struct {
		min, max uint64
		_        [48]byte // a cache line each
	}
	stats := make([]stat, workers)
	for i := range stats {
		stats[i].min = ^uint64(0)
	}
	hash, count, err := f.chunks(workers, func(w int, nums []uint64) error {
		if err := stop(); err != nil {
			return err
		}
		if err := check(nums); err != nil {
			return err
		}
		s := &stats[w]
		for _, n := range nums {
			s.min = min(s.min, n)
			s.max = max(s.max, n)
		}
		return nil
	})
	if errors.Is(err, errNotParallel) {
		return readSetStream(f, b, check, stop)
	}
	if err != nil {
		return nil, 0, err
	}
	for _, s := range stats {
		b.s.min = min(b.s.min, s.min)
		b.s.max = max(b.s.max, s.max)
	}
	b.count = count
	if err := b.Size(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", f.path, err)
	}
	if !b.direct { // sorted buckets: the stream passes 2 and 3
		return b.finishStream(f, hash, stop)
	}
	h3, err := b.fillLines(f, workers, stop)
	if errors.Is(err, errNotParallel) || errors.Is(err, ErrSetChanged) || (err == nil && h3 != hash) {
		return nil, 0, f.changed()
	}
	if err != nil {
		return nil, 0, err
	}
	set, err := b.finishLines()
	if err != nil {
		return nil, 0, f.changed()
	}
	return set, hash, nil
}

// streamReads counts ReadSet's stream reads (for the tests).
var streamReads atomic.Int64

// readSetStream is ReadSet on one stream (a gzip file).
func readSetStream(f *File, b *SetBuilder, check func([]uint64) error, stop func() error) (*Set, uint64, error) {
	streamReads.Add(1)
	h := NewHasher()
	var batch [1 << 12]uint64
	k := 0
	_, err := f.Numbers(h, func(n uint64) error {
		batch[k] = n
		if k++; k == len(batch) {
			k = 0
			if err := stop(); err != nil {
				return err
			}
			if err := check(batch[:]); err != nil {
				return err
			}
		}
		b.Scan(n)
		return nil
	})
	if err == nil {
		err = check(batch[:k])
	}
	if err != nil {
		return nil, 0, err
	}
	hash := h.Sum64()
	if err := b.Size(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", f.path, err)
	}
	return b.finishStream(f, hash, stop)
}

// finishStream reads passes 2 (when needed) and 3 as one stream each and finishes the
// set; every pass must see the bytes of hash.
func (b *SetBuilder) finishStream(f *File, hash uint64, stop func() error) (*Set, uint64, error) {
	for pass := 2; pass <= 3; pass++ {
		if pass == 2 && !b.NeedsCounts() {
			continue
		}
		h := NewHasher()
		k := 0
		_, err := f.Numbers(h, func(n uint64) error {
			if k++; k&0xffff == 0 {
				if err := stop(); err != nil {
					return err
				}
			}
			if pass == 2 {
				return b.CountNumber(n)
			}
			return b.Add(n)
		})
		if errors.Is(err, ErrSetChanged) {
			return nil, 0, f.changed()
		}
		if err != nil {
			return nil, 0, err
		}
		if h.Sum64() != hash {
			return nil, 0, f.changed()
		}
		if pass == 2 {
			b.Place()
		}
	}
	set, err := b.Finish()
	if err != nil {
		return nil, 0, f.changed()
	}
	return set, hash, nil
}

// partsPerWorker is how many partitions of the lines each worker of fillLines owns: a
// partition of a 100M-number set is ~1.2 MB of lines, which the CPU caches hold while a
// chunk's numbers for it are written.
const partsPerWorker = 128

// fillLines is pass 3 of a direct build in parallel: the chunk readers partition each
// chunk's numbers by line (a counting sort) and hand each worker's partitions to it; each
// worker writes only its own lines. It returns the content hash of what it read.
func (b *SetBuilder) fillLines(f *File, workers int, stop func() error) (uint64, error) {
	s := b.s
	nb := uint64(len(s.lines)) / s.slots
	parts := uint64(workers * partsPerWorker)
	// part of a line: line*parts/nb, monotonic, so each worker's parts are a run of lines
	partOf := func(line uint64) uint64 { hi, lo := bits.Mul64(line, parts); q, _ := bits.Div64(hi, lo, nb); return q }
	type piece struct {
		nums []uint64
		done *sync.WaitGroup
	}
	inbox := make([]chan piece, workers)
	type result struct {
		inserted int
		spill    []uint64
		_        [32]byte
	}
	results := make([]result, workers)
	var fill sync.WaitGroup
	for o := range workers {
		inbox[o] = make(chan piece, 2*workers)
		fill.Add(1)
		go func() {
			defer fill.Done()
			r := &results[o]
			for p := range inbox[o] {
				for _, n := range p.nums {
					switch s.putLine(n) {
					case lineAdded:
						r.inserted++
					case lineFull:
						r.spill = append(r.spill, n)
					}
				}
				p.done.Done()
			}
		}()
	}
	type scratch struct {
		sorted []uint64
		lines  []uint64
		counts []int
		done   sync.WaitGroup
	}
	scratches := make([]scratch, workers)
	hash, count, err := f.chunks(workers, func(w int, nums []uint64) error {
		if err := stop(); err != nil {
			return err
		}
		sc := &scratches[w]
		sc.done.Wait() // the workers are done with this reader's previous chunk
		if cap(sc.sorted) < len(nums) {
			sc.sorted = make([]uint64, len(nums), len(nums)+len(nums)/4)
			sc.lines = make([]uint64, len(nums), cap(sc.sorted))
		}
		sc.sorted, sc.lines = sc.sorted[:len(nums)], sc.lines[:len(nums)]
		if sc.counts == nil {
			sc.counts = make([]int, parts+1)
		}
		clear(sc.counts)
		for i, n := range nums {
			if n < s.min || n > s.max {
				return ErrSetChanged
			}
			line, _ := bits.Mul64(n-s.min, s.mult)
			p := partOf(line)
			sc.lines[i] = p
			sc.counts[p+1]++
		}
		for p := uint64(1); p <= parts; p++ {
			sc.counts[p] += sc.counts[p-1]
		}
		for i, n := range nums {
			p := sc.lines[i]
			sc.sorted[sc.counts[p]] = n
			sc.counts[p]++
		}
		// counts[p] is now the end of part p; worker o owns parts [o*ppw, (o+1)*ppw)
		from := 0
		for o := range workers {
			to := sc.counts[(o+1)*partsPerWorker-1]
			if to > from {
				sc.done.Add(1)
				inbox[o] <- piece{nums: sc.sorted[from:to], done: &sc.done}
			}
			from = to
		}
		return nil
	})
	for o := range workers {
		close(inbox[o])
	}
	fill.Wait()
	if err != nil {
		return 0, err
	}
	if count != b.count {
		return 0, ErrSetChanged
	}
	b.added = count
	for _, r := range results {
		b.inserted += r.inserted
		b.spill = append(b.spill, r.spill...)
	}
	return hash, nil
}
