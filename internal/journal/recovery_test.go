package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestDamageInTheMiddle corrupts one record that has valid records after it: that
// record is reported and never returned, every other record is, the segment is copied
// to quarantine/ as it was, and Open does not fail.
func TestDamageInTheMiddle(t *testing.T) {
	sizes := []int{120, 300, 64, 500, 90}
	seg, offs, want := writeRecords(t, t.TempDir(), sizes)
	const bad = 2 // the damaged record
	at := offs[bad]
	tests := []struct {
		desc   string
		mutate func(b []byte)
		reason string
	}{
		{desc: "payload byte", mutate: func(b []byte) { b[at+headerSize+10] ^= 1 }, reason: "CRC"},
		{desc: "last payload byte", mutate: func(b []byte) { b[offs[bad+1]-1] ^= 0x80 }, reason: "CRC"},
		{desc: "magic", mutate: func(b []byte) { b[at] = 0 }, reason: "bad magic"},
		{desc: "version", mutate: func(b []byte) { b[at+2] = 9 }, reason: "version"},
		{desc: "flags", mutate: func(b []byte) { b[at+3] = 1 }, reason: "flags"},
		{desc: "length smaller", mutate: func(b []byte) { b[at+4] = 10 }, reason: "CRC"},
		{desc: "length larger", mutate: func(b []byte) { b[at+5] = 1 }, reason: "CRC"},
		{desc: "length past EOF", mutate: func(b []byte) { binary.LittleEndian.PutUint32(b[at+4:], 100000) }, reason: "past the end"},
		{desc: "length over the limit", mutate: func(b []byte) { binary.LittleEndian.PutUint32(b[at+4:], MaxRecord+1) }, reason: "limit"},
		{desc: "CRC", mutate: func(b []byte) { b[at+8] ^= 0xff }, reason: "CRC"},
		{desc: "whole record zeroed", mutate: func(b []byte) { clear(b[at:offs[bad+1]]) }, reason: "bad magic"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			damaged := append([]byte(nil), seg...)
			tc.mutate(damaged)
			path := filepath.Join(dir, segmentName(1))
			os.WriteFile(path, damaged, 0o600)
			core, logs := observer.New(zap.ErrorLevel)
			j, rep := open(t, Options{Dir: dir, Logger: zap.New(core)})
			if len(rep.Quarantined) != 1 || rep.TornBytes != 0 {
				t.Fatalf("report %+v, want exactly one damaged range and nothing torn", rep)
			}
			d := rep.Quarantined[0]
			if d.Segment != segmentName(1) || d.Offset != at || d.Bytes != offs[bad+1]-at || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("damage %v, want %s@%d+%d (%s)", d, segmentName(1), at, offs[bad+1]-at, tc.reason)
			}
			if logs.FilterMessageSnippet("DAMAGED").Len() != 1 {
				t.Fatalf("want one error log line for the damage, got %v", logs.All())
			}
			wantLeft := append(append([][]byte(nil), want[:bad]...), want[bad+1:]...)
			es, _ := all(t, j)
			equalPayloads(t, payloads(es), wantLeft)
			if rep.Records != len(wantLeft) || j.Stats().Quarantined != 1 {
				t.Fatalf("report says %d records, stats %d quarantined; want %d and 1", rep.Records, j.Stats().Quarantined, len(wantLeft))
			}
			copyPath := filepath.Join(dir, quarantineDir, segmentName(1)+"."+strconv.Itoa(len(damaged)))
			if got, err := os.ReadFile(copyPath); err != nil || !bytes.Equal(got, damaged) {
				t.Fatalf("quarantine copy %s: err %v, identical %v", copyPath, err, bytes.Equal(got, damaged))
			}
			// Appends go to a fresh segment; the damaged one is untouched.
			extra := payload(77, 33)
			if err := j.Append(extra); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, damaged) {
				t.Fatal("the damaged segment was modified")
			}
			j.Close()

			j, rep = open(t, Options{Dir: dir})
			es, cur := all(t, j)
			equalPayloads(t, payloads(es), append(wantLeft, extra))
			if len(rep.Quarantined) != 1 {
				t.Fatalf("reopen: %d damaged ranges, want 1 (still on disk)", len(rep.Quarantined))
			}
			if q, _ := os.ReadDir(filepath.Join(dir, quarantineDir)); len(q) != 1 {
				t.Fatalf("%d quarantine copies after two Opens, want 1", len(q))
			}
			// Committing past it deletes the damaged segment.
			if err := j.Commit(cur); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("damaged segment still there after Commit past it: %v", err)
			}
			if st := j.Stats(); st.Quarantined != 0 || st.PendingRecords != 0 {
				t.Fatalf("stats after Commit %+v, want nothing quarantined or pending", st)
			}
			j.Close()
		})
	}
}

// TestDamageAtTheEndOfAnOlderSegment: invalid bytes at the end of a segment that is
// not the newest are damage (that segment was complete when the next one started), not
// a torn tail: reported, kept, and the newer segment's records still returned.
func TestDamageAtTheEndOfAnOlderSegment(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, Options{Dir: dir, SegmentBytes: 1})
	var want [][]byte
	for i := range 3 {
		p := payload(i, 200)
		want = append(want, p)
		if err := j.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	p2 := filepath.Join(dir, segmentName(2))
	b, _ := os.ReadFile(p2)
	os.WriteFile(p2, b[:len(b)-5], 0o600)
	j, rep := open(t, Options{Dir: dir, SegmentBytes: 1})
	defer j.Close()
	if rep.TornBytes != 0 || len(rep.Quarantined) != 1 || rep.Quarantined[0].Segment != segmentName(2) {
		t.Fatalf("report %+v, want one damaged range in %s and nothing torn", rep, segmentName(2))
	}
	es, _ := all(t, j)
	equalPayloads(t, payloads(es), [][]byte{want[0], want[2]})
	if fi, _ := os.Stat(p2); fi.Size() != int64(len(b)-5) {
		t.Fatal("an older segment was truncated")
	}
}

// TestCheckpoint: missing or damaged checkpoints replay from the oldest segment
// (duplicates, never a loss); a good one resumes exactly.
func TestCheckpoint(t *testing.T) {
	tests := []struct {
		desc    string
		mutate  func(t *testing.T, dir string)
		problem string // "" = checkpoint used
	}{
		{desc: "intact", mutate: func(*testing.T, string) {}},
		{desc: "missing", mutate: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, checkpointName)) }, problem: "no checkpoint"},
		{desc: "bad CRC", mutate: func(t *testing.T, dir string) { flipFile(t, filepath.Join(dir, checkpointName), 17) }, problem: "CRC"},
		{desc: "bad magic", mutate: func(t *testing.T, dir string) { flipFile(t, filepath.Join(dir, checkpointName), 0) }, problem: "magic"},
		{desc: "truncated", mutate: func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, checkpointName), 10) }, problem: "10 bytes"},
		{desc: "offset inside a record", mutate: func(t *testing.T, dir string) {
			c, _, _ := readCheckpoint(dir)
			os.WriteFile(filepath.Join(dir, checkpointName), encodeCheckpoint(position{seg: c.seg, off: c.off + 3}), 0o600)
		}, problem: "record boundary"},
		{desc: "segment newer than all", mutate: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, checkpointName), encodeCheckpoint(position{seg: 99, off: 0}), 0o600)
		}, problem: "newer than every segment"},
		{desc: "stale temp file", mutate: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, checkpointName+".tmp"), []byte("junk"), 0o600)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: 1000}
			j, _ := open(t, opts)
			var want [][]byte
			for i := range 12 {
				p := payload(i, 150)
				want = append(want, p)
				if err := j.Append(p); err != nil {
					t.Fatal(err)
				}
			}
			es, cur, _ := j.Pending(8) // 8 of 12, across segments
			equalPayloads(t, payloads(es), want[:8])
			if err := j.Commit(cur); err != nil {
				t.Fatal(err)
			}
			segsLeft := len(segFiles(t, dir))
			j.Close()
			tc.mutate(t, dir)
			rdEntries, rdRep, err := ReadDir(dir) // before Open repairs anything
			if err != nil {
				t.Fatal(err)
			}
			var scanned [][]byte
			if _, err := ScanDir(dir, func(e Entry) error {
				scanned = append(scanned, append([]byte(nil), e.Payload...))
				return nil
			}); err != nil {
				t.Fatal(err)
			}

			j, rep := open(t, opts)
			defer j.Close()
			es, _ = all(t, j)
			equalPayloads(t, payloads(rdEntries), payloads(es))
			equalPayloads(t, scanned, payloads(es))
			if rdRep.CheckpointProblem != rep.CheckpointProblem {
				t.Fatalf("ReadDir says checkpoint problem %q, Open %q", rdRep.CheckpointProblem, rep.CheckpointProblem)
			}
			if tc.problem == "" {
				if rep.CheckpointProblem != "" {
					t.Fatalf("checkpoint problem %q, want none", rep.CheckpointProblem)
				}
				equalPayloads(t, payloads(es), want[8:])
				return
			}
			if !strings.Contains(rep.CheckpointProblem, tc.problem) {
				t.Fatalf("checkpoint problem %q, want it to mention %q", rep.CheckpointProblem, tc.problem)
			}
			// From the oldest segment still there: everything not committed, plus
			// some committed records again, in order.
			got := payloads(es)
			if len(got) < 4 || len(segFiles(t, dir)) != segsLeft {
				t.Fatalf("%d records, %d segments; want at least the 4 uncommitted and no segment deleted", len(got), segsLeft)
			}
			equalPayloads(t, got, want[len(want)-len(got):])
		})
	}
}

func flipFile(t *testing.T, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0x40
	os.WriteFile(path, b, 0o600)
}

// TestPendingCommitRotation walks a journal in small Pending batches across many
// segments, committing each batch: committed segments are deleted, nothing is
// returned twice or skipped, and after a reopen replay resumes where Commit left it.
func TestPendingCommitRotation(t *testing.T) {
	tests := []struct {
		desc     string
		segBytes int64
		batch    int
	}{
		{desc: "one record per segment, batch 1", segBytes: 1, batch: 1},
		{desc: "several per segment, batch 3", segBytes: 700, batch: 3},
		{desc: "batch larger than a segment", segBytes: 500, batch: 7},
		{desc: "one segment", segBytes: 1 << 20, batch: 4},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: tc.segBytes}
			j, _ := open(t, opts)
			var want [][]byte
			for i := range 20 {
				p := payload(i, 100+i)
				want = append(want, p)
				if err := j.Append(p); err != nil {
					t.Fatal(err)
				}
			}
			var got [][]byte
			for len(got) < 10 {
				es, cur, err := j.Pending(tc.batch)
				if err != nil || len(es) == 0 || len(es) > tc.batch {
					t.Fatalf("Pending(%d): %d entries, %v", tc.batch, len(es), err)
				}
				again, _, _ := j.Pending(tc.batch) // no Commit yet: the same records
				equalPayloads(t, payloads(again), payloads(es))
				got = append(got, payloads(es)...)
				if err := j.Commit(cur); err != nil {
					t.Fatal(err)
				}
				if err := j.Commit(cur); err != nil { // repeated: no-op
					t.Fatal(err)
				}
				for _, f := range segFiles(t, dir) {
					seq, _ := parseSegmentName(filepath.Base(f))
					if seq < cur.Segment {
						t.Fatalf("segment %d still there after Commit to %d:%d", seq, cur.Segment, cur.Offset)
					}
				}
			}
			st := j.Stats()
			if st.PendingRecords != int64(20-len(got)) || st.Segments != len(segFiles(t, dir)) {
				t.Fatalf("stats %+v after committing %d of 20 (%d segment files)", st, len(got), len(segFiles(t, dir)))
			}
			j.Close()

			j, rep := open(t, opts)
			if rep.CheckpointProblem != "" || rep.Records != 20-len(got) {
				t.Fatalf("reopen report %+v, want %d records and a good checkpoint", rep, 20-len(got))
			}
			for {
				es, cur, err := j.Pending(tc.batch)
				if err != nil {
					t.Fatal(err)
				}
				if len(es) == 0 {
					break
				}
				got = append(got, payloads(es)...)
				if err := j.Commit(cur); err != nil {
					t.Fatal(err)
				}
			}
			equalPayloads(t, got, want)
			if st := j.Stats(); st.PendingRecords != 0 || st.PendingBytes != 0 || st.Segments != 1 {
				t.Fatalf("stats %+v after committing everything, want 0 pending and only the active segment", st)
			}
			j.Close()
			j, rep = open(t, opts)
			defer j.Close()
			if rep.Records != 0 {
				t.Fatalf("reopen after committing everything: %d records, want 0", rep.Records)
			}
		})
	}
}

func TestCommitRefusesForeignCursor(t *testing.T) {
	j1, _ := open(t, Options{Dir: t.TempDir()})
	defer j1.Close()
	j2, _ := open(t, Options{Dir: t.TempDir()})
	defer j2.Close()
	j1.Append(payload(1, 10))
	_, cur, _ := j1.Pending(10)
	if err := j2.Commit(cur); err == nil {
		t.Fatal("Commit accepted a cursor from another Journal")
	}
}

// TestMaxBytes: Append fails with ErrFull, naming the directory, when the un-replayed
// bytes would pass the cap; Commit makes room again.
func TestMaxBytes(t *testing.T) {
	dir := t.TempDir()
	rec := recordSize(payload(0, 88)) // 100 bytes on disk
	j, _ := open(t, Options{Dir: dir, MaxBytes: 5 * rec, SegmentBytes: 2 * rec})
	defer j.Close()
	for i := range 5 {
		if err := j.Append(payload(i, 88)); err != nil {
			t.Fatalf("append %d of 5: %v", i, err)
		}
	}
	err := j.Append(payload(5, 88))
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("sixth Append: %v, want ErrFull naming %s", err, dir)
	}
	if err := j.Append(payload(6, 0)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append of a 12-byte record with 0 room: %v, want ErrFull", err)
	}
	es, cur, _ := j.Pending(2)
	if len(es) != 2 {
		t.Fatalf("Pending(2): %d records", len(es))
	}
	if err := j.Commit(cur); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(payload(5, 88), payload(6, 88)); err != nil {
		t.Fatalf("Append after Commit freed 2 records: %v", err)
	}
	if err := j.Append(payload(7, 88)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append past the cap again: %v, want ErrFull", err)
	}
	if st := j.Stats(); st.Failed || st.PendingBytes != 5*rec {
		t.Fatalf("stats %+v: ErrFull must not be sticky; want %d pending bytes", st, 5*rec)
	}
	rest, _ := all(t, j)
	var want [][]byte
	for i := 2; i < 7; i++ {
		want = append(want, payload(i, 88))
	}
	equalPayloads(t, payloads(rest), want)
}

// TestSeveralDamagedRanges: two damaged records in one segment, adjacent ones in
// another: each range is reported once, every intact record comes back in order.
func TestSeveralDamagedRanges(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1500}
	j, _ := open(t, opts)
	var want [][]byte
	for i := range 20 {
		p := payload(i, 200)
		want = append(want, p)
		if err := j.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	es, _ := all(t, j)
	j.Close()
	bad := map[int]bool{1: true, 3: true, 8: true, 9: true} // by record index
	files := map[uint64][]byte{}
	for i, e := range es {
		if !bad[i] {
			continue
		}
		path := filepath.Join(dir, segmentName(e.Segment))
		if files[e.Segment] == nil {
			files[e.Segment], _ = os.ReadFile(path)
		}
		files[e.Segment][e.Offset+headerSize+5] ^= 0xff
	}
	for seq, b := range files {
		os.WriteFile(filepath.Join(dir, segmentName(seq)), b, 0o600)
	}
	if es[1].Segment != es[3].Segment || es[8].Segment == es[1].Segment || es[8].Segment != es[9].Segment {
		t.Fatalf("layout changed: records 1,3 in %d,%d and 8,9 in %d,%d", es[1].Segment, es[3].Segment, es[8].Segment, es[9].Segment)
	}
	j, rep := open(t, opts)
	defer j.Close()
	// Records 8 and 9 are adjacent: the byte scan after 8 resynchronises at 10, so they
	// are one range. 1 and 3 are two.
	if len(rep.Quarantined) != 3 {
		t.Fatalf("damage %v, want 3 ranges", rep.Quarantined)
	}
	var left [][]byte
	for i, p := range want {
		if !bad[i] {
			left = append(left, p)
		}
	}
	got, _ := all(t, j)
	equalPayloads(t, payloads(got), left)
	if q, _ := os.ReadDir(filepath.Join(dir, quarantineDir)); len(q) != 2 {
		t.Fatalf("%d quarantine copies, want one per damaged segment (2)", len(q))
	}
}

// TestDamageAndTornTail: the newest segment has damage in the middle and a torn tail.
// The quarantine copy is the segment as found (torn tail included), the tail is cut,
// the damage reported, and the intact records returned.
func TestDamageAndTornTail(t *testing.T) {
	seg, offs, want := writeRecords(t, t.TempDir(), []int{100, 200, 300, 50})
	found := flip(seg, offs[1]+headerSize+3)
	found = found[:len(found)-20] // cut into the last record
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, segmentName(1)), found, 0o600)
	j, rep := open(t, Options{Dir: dir})
	defer j.Close()
	if len(rep.Quarantined) != 1 || rep.Quarantined[0].Offset != offs[1] || rep.TornBytes != int64(len(found))-offs[3] {
		t.Fatalf("report %+v, want damage at %d and %d torn bytes", rep, offs[1], int64(len(found))-offs[3])
	}
	es, _ := all(t, j)
	equalPayloads(t, payloads(es), [][]byte{want[0], want[2]})
	copyPath := filepath.Join(dir, quarantineDir, segmentName(1)+"."+strconv.Itoa(len(found)))
	if got, err := os.ReadFile(copyPath); err != nil || !bytes.Equal(got, found) {
		t.Fatalf("quarantine copy %s: %v; want the segment as found, torn tail included", copyPath, err)
	}
}
