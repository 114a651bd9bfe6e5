package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ReadDir returns every un-replayed record in dir, in append order, without modifying
// anything; a Journal (of this or another process) may be appending and committing
// meanwhile, and then the result is still one unbroken run of the appended records,
// from at or before the checkpoint up to at least everything acknowledged before the
// call (possibly some records being written, not yet acknowledged). It is meant for
// reconciliation.
//
// What it finds is in the Report: a torn tail of the newest segment (possibly a record
// being written right now) is ignored and counted in TornBytes; damage is skipped and
// listed in Quarantined (but not copied: ReadDir writes nothing). With a missing or
// unusable checkpoint it reads from the oldest segment, as Open would.
func ReadDir(dir string) ([]Entry, Report, error) {
	var rep Report
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, rep, fmt.Errorf("journal: %w", err)
	}
	if !fi.IsDir() {
		return nil, rep, fmt.Errorf("journal: %s is not a directory", dir)
	}
	ck, missing, ckErr := readCheckpoint(dir)
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, rep, fmt.Errorf("journal: %w", err)
	}
	switch {
	case ckErr != nil:
		rep.CheckpointProblem = ckErr.Error()
	case missing && len(seqs) > 0:
		rep.CheckpointProblem = "no checkpoint file"
	case !missing && len(seqs) > 0 && ck.seg > seqs[len(seqs)-1]:
		rep.CheckpointProblem = fmt.Sprintf("checkpoint names segment %d, newer than every segment", ck.seg)
	}
	if rep.CheckpointProblem != "" || missing {
		ck = position{}
	}
	for {
		entries, again, err := readSegments(dir, seqs, ck, &rep)
		if err != nil {
			return nil, rep, err
		}
		if !again {
			rep.Checkpoint = Cursor{Segment: ck.seg, Offset: ck.off}
			return entries, rep, nil
		}
		// The checkpoint is not at a record boundary: read everything.
		problem := fmt.Sprintf("checkpoint %s@%d is not at a record boundary", segmentName(ck.seg), ck.off)
		rep = Report{CheckpointProblem: problem}
		ck = position{}
	}
}

// readSegments reads the segments seqs from ck on; again is true when ck turned out
// not to be at a record boundary.
func readSegments(dir string, seqs []uint64, ck position, rep *Report) (out []Entry, again bool, err error) {
	for i, seq := range seqs {
		if seq < ck.seg {
			continue
		}
		last := i == len(seqs)-1
		name := segmentName(seq)
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			// Committed and deleted since we listed it, and with it every older
			// segment: what was read so far is committed too. Drop it, so that the
			// result stays one unbroken run of records.
			out = out[:0]
			rep.Records, rep.Bytes, rep.Segments = 0, 0, 0
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("journal: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("journal: %w", err)
		}
		aligned := seq != ck.seg || ck.off == 0
		res, err := scanSegment(name, f, 0, fi.Size(), func(off int64, p []byte) bool {
			size := headerSize + int64(len(p))
			if seq == ck.seg && (off == ck.off || off+size == ck.off) {
				aligned = true
			}
			if seq > ck.seg || off >= ck.off {
				out = append(out, Entry{Payload: append([]byte(nil), p...), Segment: seq, Offset: off})
				rep.Records++
				rep.Bytes += size
			}
			return true
		})
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("journal: reading %s: %w", filepath.Join(dir, name), err)
		}
		if !aligned || seq == ck.seg && ck.off > fi.Size() {
			return nil, true, nil
		}
		rep.Segments++
		rep.Quarantined = append(rep.Quarantined, res.damage...)
		if res.tail != nil {
			if last {
				rep.TornBytes += res.tail.Bytes
			} else {
				rep.Quarantined = append(rep.Quarantined, *res.tail)
			}
		}
	}
	return out, false, nil
}
