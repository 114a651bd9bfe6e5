package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// payload returns the i-th test payload: its index in text, then n bytes derived from
// i (including the record magic, so resynchronisation has decoys to skip).
func payload(i, n int) []byte {
	b := fmt.Appendf(nil, "grant-%08d|", i)
	for k := 0; len(b) < n; k++ {
		switch k % 7 {
		case 0:
			b = append(b, magic0)
		case 1:
			b = append(b, magic1)
		default:
			b = append(b, byte(i*31+k*7))
		}
	}
	return b
}

func noSync(*os.File) error { return nil }

func open(t *testing.T, opts Options) (*Journal, Report) {
	t.Helper()
	if opts.Fsync == nil {
		opts.Fsync = noSync
	}
	j, rep, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	return j, rep
}

// all returns every pending record.
func all(t *testing.T, j *Journal) ([]Entry, Cursor) {
	t.Helper()
	es, c, err := j.Pending(1 << 30)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return es, c
}

func payloads(es []Entry) [][]byte {
	out := make([][]byte, len(es))
	for i, e := range es {
		out[i] = e.Payload
	}
	return out
}

func equalPayloads(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: got %q, want %q", i, trim(got[i]), trim(want[i]))
		}
	}
}

func trim(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAppendReopen(t *testing.T) {
	tests := []struct {
		desc     string
		sizes    []int // payload sizes, one Append call each
		segBytes int64
	}{
		{desc: "one record", sizes: []int{300}},
		{desc: "empty payload", sizes: []int{0, 0, 20}},
		{desc: "largest payload", sizes: []int{MaxRecord, 30}},
		{desc: "rotation every record", sizes: []int{100, 200, 300, 400}, segBytes: 1},
		{desc: "mixed sizes", sizes: []int{100, 2000, 15, 1 << 16, 700}, segBytes: 4096},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			j, _ := open(t, Options{Dir: dir, SegmentBytes: tc.segBytes})
			var want [][]byte
			for i, n := range tc.sizes {
				p := payload(i, n)
				want = append(want, p)
				if err := j.Append(p); err != nil {
					t.Fatal(err)
				}
			}
			es, _ := all(t, j)
			equalPayloads(t, payloads(es), want)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j, rep := open(t, Options{Dir: dir, SegmentBytes: tc.segBytes})
			defer j.Close()
			if rep.Records != len(want) || rep.TornBytes != 0 || len(rep.Quarantined) != 0 {
				t.Fatalf("reopen report %+v, want %d records, nothing torn or damaged", rep, len(want))
			}
			es, _ = all(t, j)
			equalPayloads(t, payloads(es), want)
			if st := j.Stats(); st.PendingRecords != int64(len(want)) {
				t.Fatalf("PendingRecords %d, want %d", st.PendingRecords, len(want))
			}
		})
	}
}

func TestAppendRefusesOversizedPayload(t *testing.T) {
	j, _ := open(t, Options{Dir: t.TempDir()})
	defer j.Close()
	err := j.Append(payload(0, 10), make([]byte, MaxRecord+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of %d bytes: %v, want ErrTooLarge", MaxRecord+1, err)
	}
	if es, _ := all(t, j); len(es) != 0 {
		t.Fatalf("%d records after a refused Append, want 0", len(es))
	}
}

func TestOpenIsExclusive(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, Options{Dir: dir})
	defer j.Close()
	if _, _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("second Open: %v, want 'already open'", err)
	}
}

// writeRecords makes a journal in dir holding sizes' payloads in one segment and
// returns the segment's bytes and each record's offset.
func writeRecords(t *testing.T, dir string, sizes []int) (seg []byte, offs []int64, want [][]byte) {
	t.Helper()
	j, _ := open(t, Options{Dir: dir})
	for i, n := range sizes {
		p := payload(i, n)
		want = append(want, p)
		if err := j.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	es, _ := all(t, j)
	for _, e := range es {
		offs = append(offs, e.Offset)
	}
	j.Close()
	files := segFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("%d segments, want 1", len(files))
	}
	seg, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return seg, offs, want
}

// TestTornTailEveryOffset cuts the segment at every byte offset - inside the last
// record, and anywhere in the records before it, as a crash in the middle of one group
// write of several records would: Open must keep exactly the complete records before
// the cut, byte for byte, truncate the rest, and append normally afterwards.
func TestTornTailEveryOffset(t *testing.T) {
	tests := []struct {
		desc  string
		sizes []int
	}{
		{desc: "small records", sizes: []int{300, 40, 120}},
		{desc: "empty last record", sizes: []int{300, 0}},
		{desc: "only record", sizes: []int{77}},
		{desc: "large last record", sizes: []int{10, 600}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			seg, offs, want := writeRecords(t, t.TempDir(), tc.sizes)
			ends := append(offs[1:], int64(len(seg)))
			dir := t.TempDir()
			for cut := int64(0); cut < int64(len(seg)); cut++ {
				keep, kept := 0, int64(0) // complete records before the cut, and their end
				for keep < len(ends) && ends[keep] <= cut {
					kept = ends[keep]
					keep++
				}
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				j, rep := open(t, Options{Dir: dir})
				if rep.TornBytes != cut-kept || rep.Records != keep || len(rep.Quarantined) != 0 {
					t.Fatalf("cut at %d: report %+v, want %d torn bytes, %d records, no damage",
						cut, rep, cut-kept, keep)
				}
				es, _ := all(t, j)
				equalPayloads(t, payloads(es), want[:keep])
				extra := payload(999, 50)
				if err := j.Append(extra); err != nil {
					t.Fatalf("cut at %d: Append after repair: %v", cut, err)
				}
				j.Close()
				j, rep = open(t, Options{Dir: dir})
				es, _ = all(t, j)
				j.Close()
				if rep.TornBytes != 0 {
					t.Fatalf("cut at %d: second Open found %d torn bytes", cut, rep.TornBytes)
				}
				equalPayloads(t, payloads(es), append(append([][]byte(nil), want[:keep]...), extra))
			}
		})
	}
}

func TestTornTailVariants(t *testing.T) {
	seg, offs, want := writeRecords(t, t.TempDir(), []int{100, 200, 50})
	end := int64(len(seg))
	hugeLen := append([]byte(nil), seg[offs[2]:offs[2]+headerSize]...)
	binary.LittleEndian.PutUint32(hugeLen[4:], MaxRecord+1)
	pastEOF := append([]byte(nil), seg[offs[2]:]...)
	binary.LittleEndian.PutUint32(pastEOF[4:], 5000)
	tests := []struct {
		desc string
		data []byte
		torn int64
		keep int
	}{
		{desc: "zeros after the last record", data: append(append([]byte(nil), seg...), make([]byte, 4096)...), torn: 4096, keep: 3},
		{desc: "length over the limit at the tail", data: append(append([]byte(nil), seg[:offs[2]]...), hugeLen...), torn: headerSize, keep: 2},
		{desc: "length past EOF at the tail", data: append(append([]byte(nil), seg[:offs[2]]...), pastEOF...), torn: end - offs[2], keep: 2},
		{desc: "last record's payload flipped", data: flip(seg, end-1), torn: end - offs[2], keep: 2},
		{desc: "last record's CRC flipped", data: flip(seg, offs[2]+9), torn: end - offs[2], keep: 2},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, segmentName(1)), tc.data, 0o600)
			j, rep := open(t, Options{Dir: dir})
			defer j.Close()
			if rep.TornBytes != tc.torn || len(rep.Quarantined) != 0 {
				t.Fatalf("report %+v, want %d torn bytes and no damage", rep, tc.torn)
			}
			es, _ := all(t, j)
			equalPayloads(t, payloads(es), want[:tc.keep])
			fi, _ := os.Stat(filepath.Join(dir, segmentName(1)))
			if fi.Size() != int64(len(tc.data))-tc.torn {
				t.Fatalf("segment is %d bytes after Open, want %d", fi.Size(), int64(len(tc.data))-tc.torn)
			}
		})
	}
}

func flip(b []byte, at int64) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x5a
	return c
}

// TestGroupCommit: concurrent appenders share fsyncs, every acknowledged record is
// durable, and the payloads of one call stay together and in order.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	var fsyncs atomic.Int64
	slowSync := func(f *os.File) error { // a real fsync: rounds take time, so callers pile up
		fsyncs.Add(1)
		return f.Sync()
	}
	j, _ := open(t, Options{Dir: dir, Fsync: slowSync, SegmentBytes: 256 << 10})
	const writers, calls, per = 32, 20, 3
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				var ps [][]byte
				for k := range per {
					ps = append(ps, payload((w*calls+c)*per+k, 100+k))
				}
				if err := j.Append(ps...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := j.Stats()
	j.Close()
	appends := uint64(writers * calls)
	if st.Appends != appends || st.Records != appends*per {
		t.Fatalf("stats %+v, want %d appends, %d records", st, appends, appends*per)
	}
	if st.Fsyncs >= appends/2 {
		t.Fatalf("%d fsyncs for %d concurrent appends, want fewer than half", st.Fsyncs, appends)
	}
	t.Logf("%d appends, %d fsyncs", appends, st.Fsyncs)

	j, rep := open(t, Options{Dir: dir})
	defer j.Close()
	es, _ := all(t, j)
	if rep.Records != len(es) || len(es) != int(appends*per) {
		t.Fatalf("reopened: %d records (report %d), want %d", len(es), rep.Records, appends*per)
	}
	seen := make(map[int]bool)
	for i := 0; i < len(es); i += per {
		var first int
		fmt.Sscanf(string(es[i].Payload), "grant-%08d|", &first)
		if first%per != 0 || seen[first] {
			t.Fatalf("record %d is payload %d: calls are split or repeated", i, first)
		}
		seen[first] = true
		for k := range per {
			if !bytes.Equal(es[i+k].Payload, payload(first+k, 100+k)) {
				t.Fatalf("record %d: the call starting with payload %d is not kept together in order", i+k, first)
			}
		}
	}
}

// TestFsyncFailure: the failing Append errors, every later one errors (sticky, with
// no further fsync), nothing of the failed call is returned by Pending, and after a
// reopen exactly the records acknowledged before the failure are there: the failed
// call's records were cut from the file.
func TestFsyncFailure(t *testing.T) {
	tests := []struct {
		desc      string
		failAt    int // the n-th fsync of a segment fails
		okBefore  int // Appends acknowledged before it
		batchSize int
	}{
		{desc: "first append fails", failAt: 1, okBefore: 0, batchSize: 1},
		{desc: "fifth append fails", failAt: 5, okBefore: 4, batchSize: 1},
		{desc: "batch of three fails", failAt: 3, okBefore: 2, batchSize: 3},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			var n atomic.Int64
			boom := errors.New("injected EIO")
			fsync := func(f *os.File) error {
				if strings.HasSuffix(f.Name(), segmentSuffix) && n.Add(1) == int64(tc.failAt) {
					return boom
				}
				return nil
			}
			core, logs := observer.New(zap.ErrorLevel)
			j, _ := open(t, Options{Dir: dir, Fsync: fsync, Logger: zap.New(core)})
			var acked [][]byte
			var i int
			for ; i < tc.okBefore; i++ {
				var ps [][]byte
				for k := range tc.batchSize {
					ps = append(ps, payload(i*10+k, 64))
				}
				if err := j.Append(ps...); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				acked = append(acked, ps...)
			}
			err := j.Append(payload(500, 64), payload(501, 64))
			if !errors.Is(err, boom) {
				t.Fatalf("failing Append: %v, want the injected error", err)
			}
			for range 3 {
				if err := j.Append(payload(600, 64)); !errors.Is(err, boom) {
					t.Fatalf("Append after the failure: %v, want the sticky error", err)
				}
			}
			st := j.Stats()
			if !st.Failed || !strings.Contains(st.LastError, "injected EIO") || st.Fsyncs != uint64(tc.failAt) {
				t.Fatalf("stats %+v: want Failed, the error, and %d fsyncs (never retried)", st, tc.failAt)
			}
			if logs.FilterMessageSnippet("fsync failed").Len() == 0 {
				t.Fatal("no log line for the failed fsync")
			}
			es, _ := all(t, j)
			equalPayloads(t, payloads(es), acked)
			j.Close()

			j, rep := open(t, Options{Dir: dir})
			defer j.Close()
			if rep.TornBytes != 0 {
				t.Fatalf("reopen found %d torn bytes; the failed call should have been cut already", rep.TornBytes)
			}
			es, _ = all(t, j)
			equalPayloads(t, payloads(es), acked)
			if err := j.Append(payload(700, 64)); err != nil {
				t.Fatalf("Append after reopen: %v", err)
			}
		})
	}
}

// TestFailedRoundFailsEveryCaller: callers whose records were in the round whose fsync
// failed, and callers queued behind it, all get the error; the fsync is not retried.
func TestFailedRoundFailsEveryCaller(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	boom := errors.New("injected EIO")
	var calls atomic.Int64
	fsync := func(f *os.File) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return boom
	}
	j, _ := open(t, Options{Dir: t.TempDir(), Fsync: fsync})
	defer j.Close()
	errs := make(chan error, 10)
	go func() { errs <- j.Append(payload(0, 10)) }()
	<-entered // the first round is in its fsync
	for i := 1; i < 10; i++ {
		go func() { errs <- j.Append(payload(i, 10)) }()
	}
	for j.queuedLen() < 9 { // everyone queued behind the failing round
		runtime.Gosched()
	}
	close(release)
	for range 10 {
		if err := <-errs; !errors.Is(err, boom) {
			t.Fatalf("caller got %v, want the injected error", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d fsyncs, want 1: a failed fsync is never retried", n)
	}
	if es, _ := all(t, j); len(es) != 0 {
		t.Fatalf("%d records pending after the failure, want 0", len(es))
	}
}

// TestPendingSeesOnlyDurableRecords: records whose fsync has not finished are not
// returned by Pending (ReadDir may see them: it reads what is in the file).
func TestPendingSeesOnlyDurableRecords(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var gate atomic.Bool
	fsync := func(f *os.File) error {
		if gate.Load() {
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	dir := t.TempDir()
	j, _ := open(t, Options{Dir: dir, Fsync: fsync})
	defer j.Close()
	if err := j.Append(payload(0, 10)); err != nil {
		t.Fatal(err)
	}
	gate.Store(true)
	done := make(chan error)
	go func() { done <- j.Append(payload(1, 10)) }()
	<-entered
	es, _ := all(t, j)
	equalPayloads(t, payloads(es), [][]byte{payload(0, 10)})
	if st := j.Stats(); st.PendingRecords != 1 {
		t.Fatalf("PendingRecords %d during the fsync, want 1", st.PendingRecords)
	}
	gate.Store(false)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	es, _ = all(t, j)
	equalPayloads(t, payloads(es), [][]byte{payload(0, 10), payload(1, 10)})
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, Options{Dir: dir})
	j.Append(payload(0, 10))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := j.Append(payload(1, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if _, _, err := j.Pending(10); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pending after Close: %v, want ErrClosed", err)
	}
	j2, _ := open(t, Options{Dir: dir}) // the lock was released
	j2.Close()
}

// queuedLen is the number of records waiting for the next round (for tests).
func (j *Journal) queuedLen() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.queuedN
}
