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
// reconciliation; ScanDir does the same without holding every record in memory.
//
// What it finds is in the Report: a torn tail of the newest segment (possibly a record
// being written right now) is ignored and counted in TornBytes; damage is skipped and
// listed in Quarantined (but not copied: ReadDir writes nothing). With a missing or
// unusable checkpoint it reads from the oldest segment, as Open would.
func ReadDir(dir string) ([]Entry, Report, error) {
	var out []Entry
	rep, err := scanDir(dir, func(e Entry) error {
		e.Payload = append([]byte(nil), e.Payload...)
		out = append(out, e)
		return nil
	}, func(rep *Report) {
		// A segment was committed and deleted since we listed it, and with it every
		// older one: what was read so far is committed too. Drop it, so that the
		// result stays one unbroken run of records.
		out = out[:0]
		rep.Records, rep.Bytes, rep.Segments = 0, 0, 0
	})
	if err != nil {
		return nil, rep, err
	}
	return out, rep, nil
}

// ScanDir is ReadDir calling fn for each record instead of returning them all; e.Payload
// is only valid during the call. An error from fn stops the scan and is returned. If a
// Commit deletes segments while ScanDir runs, fn may have seen some of their (committed)
// records and not others: the records fn sees are then not one unbroken run, but every
// record acknowledged before the call and not committed by its end is among them.
func ScanDir(dir string, fn func(e Entry) error) (Report, error) {
	return scanDir(dir, fn, func(*Report) {})
}

func scanDir(dir string, emit func(Entry) error, vanished func(*Report)) (Report, error) {
	var rep Report
	fi, err := os.Stat(dir)
	if err != nil {
		return rep, fmt.Errorf("journal: %w", err)
	}
	if !fi.IsDir() {
		return rep, fmt.Errorf("journal: %s is not a directory", dir)
	}
	ck, missing, ckErr := readCheckpoint(dir)
	seqs, err := listSegments(dir)
	if err != nil {
		return rep, fmt.Errorf("journal: %w", err)
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
		again, err := readSegments(dir, seqs, ck, &rep, emit, vanished)
		if err != nil {
			return rep, err
		}
		if !again {
			rep.Checkpoint = Cursor{Segment: ck.seg, Offset: ck.off}
			return rep, nil
		}
		// The checkpoint is not at a record boundary (found before anything was
		// emitted): read everything.
		problem := fmt.Sprintf("checkpoint %s@%d is not at a record boundary", segmentName(ck.seg), ck.off)
		rep = Report{CheckpointProblem: problem}
		ck = position{}
	}
}

// readSegments emits the records of the segments seqs from ck on; again is true when
// ck turned out not to be at a record boundary, which is found out before any record
// is emitted (the checkpoint's segment is the first one read).
func readSegments(dir string, seqs []uint64, ck position, rep *Report,
	emit func(Entry) error, vanished func(*Report)) (again bool, err error) {
	for i, seq := range seqs {
		if seq < ck.seg {
			continue
		}
		last := i == len(seqs)-1
		name := segmentName(seq)
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			vanished(rep)
			continue
		}
		if err != nil {
			return false, fmt.Errorf("journal: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return false, fmt.Errorf("journal: %w", err)
		}
		var (
			aligned    = seq != ck.seg || ck.off == 0
			misaligned bool
			emitErr    error
		)
		res, err := scanSegment(name, f, 0, fi.Size(), func(off int64, p []byte) bool {
			size := headerSize + int64(len(p))
			if seq == ck.seg && off < ck.off {
				if off+size == ck.off {
					aligned = true
				}
				return true
			}
			if !aligned {
				if off != ck.off {
					misaligned = true
					return false
				}
				aligned = true
			}
			if emitErr = emit(Entry{Payload: p, Segment: seq, Offset: off}); emitErr != nil {
				return false
			}
			rep.Records++
			rep.Bytes += size
			return true
		})
		f.Close()
		if err != nil {
			return false, fmt.Errorf("journal: reading %s: %w", filepath.Join(dir, name), err)
		}
		if emitErr != nil {
			return false, emitErr
		}
		if misaligned || !aligned {
			return true, nil
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
	return false, nil
}
