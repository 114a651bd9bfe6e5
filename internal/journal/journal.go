// Package journal is the gateway's local write-ahead journal for accepted grants: an
// append-only set of segment files where every record carries a CRC-32C, appends are
// acknowledged only after an fsync that covers them (group commit across concurrent
// callers), and a replayer reads what has not been replayed yet (Pending) and moves a
// durable checkpoint past it once it is stored elsewhere (Commit).
//
// The format is described in format.go and README.md. Payloads are opaque bytes of at
// most MaxRecord each. What Open does with what it finds on disk:
//
//   - A torn tail (the newest segment ends in a partial or invalid record with nothing
//     valid after it: a crash mid-append, never acknowledged) is truncated away, logged
//     and counted in Report.TornBytes.
//   - Damage (an invalid record followed by valid ones, or invalid bytes at the end of a
//     segment that is not the newest) is never returned as a record: the scanner
//     resynchronises at the next valid record, the damaged range is logged and listed in
//     Report.Quarantined, and the segment is copied to Dir/quarantine/ before anything
//     else happens to it. The damaged bytes stay in place (readers skip them) until
//     the segment is committed and deleted; appends go to a fresh segment. Open does not
//     fail for damage.
//   - A missing or damaged checkpoint makes replay start at the oldest segment: records
//     replayed before may be replayed again (delivery is idempotent by grant id), none
//     is lost.
//
// What a failed Append leaves: its records (and those of every other call in the same
// group commit) are not acknowledged, are never returned by Pending of this Journal, and
// are cut from the segment (truncated back to the last fsynced offset) right away. If
// that truncation does not reach the disk (crash right after, or the truncate itself
// fails), they can reappear as complete records after a reopen: they were real requests
// that were answered with an error, so this is a possible extra delivery, never an
// invented or lost one. A failed fsync makes the Journal sticky-failed: every later
// Append returns that error (the page cache state after a failed fsync is unknown, so
// it is never retried); reopening is the way back. A failed write (e.g. ENOSPC) is not
// sticky when the truncation back succeeds.
package journal

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"go.uber.org/zap"
)

// ErrFull is returned (wrapped, with the directory and the figures) by Append when the
// journal holds MaxBytes of un-replayed records, or the disk is full (ENOSPC).
var ErrFull = errors.New("journal full")

// ErrTooLarge is returned (wrapped) by Append for a payload over MaxRecord bytes.
var ErrTooLarge = errors.New("journal record too large")

// ErrClosed is returned by operations on a closed Journal.
var ErrClosed = errors.New("journal closed")

// Options configure Open.
type Options struct {
	Dir          string               // created if missing (0o700)
	SegmentBytes int64                // rotate segments at this size (default 64 MiB)
	MaxBytes     int64                // cap on un-replayed bytes on disk; Append fails with ErrFull beyond it (0 = no cap)
	Logger       *zap.Logger          // nil = nop
	Fsync        func(*os.File) error // nil = (*os.File).Sync; tests inject failures
	// Fsync is called for segment files (after each group write, and by Open after
	// cutting a torn tail) and for checkpoint.tmp; f.Name() tells them apart.
	// Directories are fsynced directly.
}

// DefaultSegmentBytes is the segment size when Options.SegmentBytes is 0.
const DefaultSegmentBytes = 64 << 20

// Entry is one record returned by Pending or ReadDir.
type Entry struct {
	Payload []byte // a copy; the caller may keep it
	Segment uint64 // the segment's sequence number
	Offset  int64  // the record's byte offset in its segment
}

// Cursor is a position returned by Pending, to pass to Commit. Its zero value commits
// nothing.
type Cursor struct {
	Segment uint64 // replay resumes at this segment...
	Offset  int64  // ...at this byte offset

	epoch uint64 // the Journal that made it
	recs  int64  // records from the Journal's opening checkpoint up to here
	bytes int64  // their bytes
}

// Damage is a range of bytes in a segment that does not hold valid records.
type Damage struct {
	Segment string // file name
	Offset  int64
	Bytes   int64
	Reason  string
}

func (d Damage) String() string {
	return fmt.Sprintf("%s@%d+%d: %s", d.Segment, d.Offset, d.Bytes, d.Reason)
}

// Report is what Open or ReadDir found on disk.
type Report struct {
	Records     int      // un-replayed records (from the checkpoint on)
	Bytes       int64    // their size on disk, headers included
	Segments    int      // segment files
	TornBytes   int64    // bytes of a torn tail (Open: truncated away; ReadDir: ignored)
	Quarantined []Damage // damaged ranges; Open copied their segments to Dir/quarantine/
	Checkpoint  Cursor   // where replay starts
	// CheckpointProblem says why the checkpoint was not used ("" when it was, or when
	// there was none and nothing to replay); replay then starts at the oldest segment.
	CheckpointProblem string
	Deleted           int // segments Open deleted because they were entirely before the checkpoint
}

// Stats are the Journal's counters.
type Stats struct {
	PendingRecords int64  // durable records not yet committed
	PendingBytes   int64  // their bytes on disk
	Segments       int    // segment files
	Appends        uint64 // Append calls acknowledged
	Records        uint64 // records acknowledged
	Fsyncs         uint64 // fsyncs of segment files by the append path
	Failed         bool   // sticky failure: Append refuses everything
	LastError      string // the last Append/Commit error
	Quarantined    int    // damaged ranges found by Open that are still on disk
}

type segment struct {
	seq    uint64
	size   int64 // durable bytes (for the active segment: what has been fsynced)
	damage int   // damaged ranges Open found in it
}

// Journal is an open journal directory. Its methods are safe for concurrent use.
type Journal struct {
	dir      string
	segBytes int64
	maxBytes int64
	log      *zap.Logger
	fsync    func(*os.File) error
	lock     *os.File
	epoch    uint64

	mu            sync.Mutex
	cond          sync.Cond // on mu; broadcast when a write+fsync round ends
	segs          []segment // oldest first; the last one is active
	f             *os.File  // the active segment
	queued        []byte    // encoded records waiting for the next round
	spare         []byte
	queuedN       int64  // records in queued
	next          *round // the round that will take queued
	inflightBytes int64  // size of the round being written
	syncing       bool
	err           error // sticky failure or ErrClosed
	lastErr       string
	stats         Stats
	durRecs       int64 // durable records since the opening checkpoint
	durBytes      int64
	ckRecs        int64 // records from the opening checkpoint to the current one
	ckBytes       int64
	ck            position

	readMu sync.Mutex // serialises Pending and Commit (Commit deletes segments)
}

// Open opens (creating if needed) the journal in opts.Dir, repairs a torn tail,
// reports damage and positions replay at the checkpoint. Only one Journal may have a
// directory open at a time (an flock on Dir/LOCK); ReadDir may read it meanwhile.
func Open(opts Options) (*Journal, Report, error) {
	var rep Report
	if opts.Dir == "" {
		return nil, rep, errors.New("journal: no directory")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.MaxBytes < 0 {
		return nil, rep, fmt.Errorf("journal: MaxBytes %d is negative", opts.MaxBytes)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Fsync == nil {
		opts.Fsync = (*os.File).Sync
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, rep, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, rep, err
	}
	j := &Journal{
		dir:      opts.Dir,
		segBytes: opts.SegmentBytes,
		maxBytes: opts.MaxBytes,
		log:      opts.Logger.With(zap.String("journal", opts.Dir)),
		fsync:    opts.Fsync,
		lock:     lock,
		epoch:    rand.Uint64() | 1,
	}
	j.cond.L = &j.mu
	j.next = &round{}
	if err := j.recover(&rep); err != nil {
		lock.Close()
		if j.f != nil {
			j.f.Close()
		}
		return nil, rep, err
	}
	j.stats.Quarantined = len(rep.Quarantined)
	rep.Checkpoint = Cursor{Segment: j.ck.seg, Offset: j.ck.off, epoch: j.epoch}
	j.log.Info("journal opened", zap.Int("records", rep.Records), zap.Int64("bytes", rep.Bytes),
		zap.Int("segments", rep.Segments), zap.Int64("torn_bytes", rep.TornBytes),
		zap.Int("damaged_ranges", len(rep.Quarantined)), zap.Uint64("checkpoint_segment", j.ck.seg),
		zap.Int64("checkpoint_offset", j.ck.off))
	return j, rep, nil
}

// recover scans the directory; see Open.
func (j *Journal) recover(rep *Report) error {
	os.Remove(filepath.Join(j.dir, checkpointName+".tmp")) // a Commit that did not finish
	seqs, err := listSegments(j.dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	ck, missing, ckErr := readCheckpoint(j.dir)
	switch {
	case rep.CheckpointProblem != "": // a second pass, without the checkpoint
		missing = true
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
	// Segments entirely before the checkpoint: a Commit wrote the checkpoint but did
	// not get to delete them.
	for len(seqs) > 0 && seqs[0] < ck.seg {
		name := filepath.Join(j.dir, segmentName(seqs[0]))
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("journal: removing committed segment: %w", err)
		}
		rep.Deleted++
		seqs = seqs[1:]
	}
	if len(seqs) > 0 && ck.seg < seqs[0] {
		ck = position{seg: seqs[0]}
	}

	for i, seq := range seqs {
		last := i == len(seqs)-1
		name := segmentName(seq)
		path := filepath.Join(j.dir, name)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("journal: %w", err)
		}
		var (
			recs, bytes int64
			ckAligned   = seq != ck.seg || ck.off == 0
		)
		res, err := scanSegment(name, f, 0, fi.Size(), func(off int64, p []byte) bool {
			if seq == ck.seg && (off == ck.off || off+headerSize+int64(len(p)) == ck.off) {
				ckAligned = true
			}
			if seq > ck.seg || off >= ck.off {
				recs++
				bytes += headerSize + int64(len(p))
			}
			return true
		})
		if err != nil {
			f.Close()
			return fmt.Errorf("journal: reading %s: %w", path, err)
		}
		size := fi.Size()
		if res.tail != nil && !last {
			// Invalid bytes at the end of a segment that was complete when the next
			// one was started: damage, not a torn write.
			res.damage = append(res.damage, *res.tail)
			res.tail = nil
		}
		if seq == ck.seg && ck.off > 0 && (!ckAligned || ck.off > size-tailBytes(res.tail)) {
			f.Close()
			if rep.CheckpointProblem == "" {
				rep.CheckpointProblem = fmt.Sprintf("checkpoint %s@%d is not at a record boundary", name, ck.off)
			}
			return j.restartRecovery(rep)
		}
		if len(res.damage) > 0 {
			// Copied before anything (the torn-tail cut below) touches the file.
			j.quarantine(path, name, fi.Size(), res.damage)
			rep.Quarantined = append(rep.Quarantined, res.damage...)
		}
		if res.tail != nil {
			// Torn tail of the newest segment: never acknowledged. Cut it.
			if err := f.Truncate(res.tail.Offset); err != nil {
				f.Close()
				return fmt.Errorf("journal: truncating torn tail of %s: %w", path, err)
			}
			if err := j.fsync(f); err != nil {
				f.Close()
				return fmt.Errorf("journal: fsync after truncating %s: %w", path, err)
			}
			rep.TornBytes += res.tail.Bytes
			size = res.tail.Offset
			j.log.Warn("journal: truncated a torn tail (crash mid-append; it was never acknowledged)",
				zap.String("segment", name), zap.Int64("offset", res.tail.Offset),
				zap.Int64("bytes", res.tail.Bytes), zap.String("reason", res.tail.Reason))
		}
		rep.Records += int(recs)
		rep.Bytes += bytes
		j.segs = append(j.segs, segment{seq: seq, size: size, damage: len(res.damage)})
		if last && len(res.damage) == 0 {
			j.f = f
		} else {
			f.Close()
		}
	}
	if rep.CheckpointProblem != "" {
		j.log.Error("journal: checkpoint not usable; replaying from the oldest segment (records may be replayed twice, none lost)",
			zap.String("problem", rep.CheckpointProblem), zap.Int("records", rep.Records))
	}
	if ck.seg == 0 && len(j.segs) > 0 {
		ck = position{seg: j.segs[0].seq}
	}
	j.ck = ck
	j.durRecs, j.durBytes = int64(rep.Records), rep.Bytes
	if j.f == nil {
		// No segment yet, or the newest one is damaged: append to a fresh one.
		next := uint64(1)
		if len(j.segs) > 0 {
			next = j.segs[len(j.segs)-1].seq + 1
		}
		if err := j.createSegment(next); err != nil {
			return err
		}
		if j.ck.seg == 0 {
			j.ck = position{seg: next}
		}
	}
	rep.Segments = len(j.segs)
	return nil
}

func tailBytes(d *Damage) int64 {
	if d == nil {
		return 0
	}
	return d.Bytes
}

// restartRecovery runs recover again without the checkpoint.
func (j *Journal) restartRecovery(rep *Report) error {
	*rep = Report{CheckpointProblem: rep.CheckpointProblem, TornBytes: rep.TornBytes, Deleted: rep.Deleted}
	j.segs = nil
	if err := os.Rename(filepath.Join(j.dir, checkpointName), filepath.Join(j.dir, checkpointName+".bad")); err != nil {
		return fmt.Errorf("journal: moving a bad checkpoint aside: %w", err)
	}
	return j.recover(rep)
}

// quarantine logs every damaged range and copies the segment to Dir/quarantine/
// (once per segment and size). A failed copy is logged, not fatal: the damaged bytes
// stay in place in the segment anyway, and the gateway must start.
func (j *Journal) quarantine(path, name string, size int64, damage []Damage) {
	qdir := filepath.Join(j.dir, quarantineDir)
	dst := filepath.Join(qdir, fmt.Sprintf("%s.%d", name, size))
	for _, d := range damage {
		j.log.Error("journal: DAMAGED RECORDS skipped (never replayed); segment copied for forensics",
			zap.String("segment", d.Segment), zap.Int64("offset", d.Offset), zap.Int64("bytes", d.Bytes),
			zap.String("reason", d.Reason), zap.String("copy", dst))
	}
	if _, err := os.Stat(dst); err == nil {
		return
	}
	err := os.MkdirAll(qdir, 0o700)
	if err == nil {
		err = copyFile(path, dst)
	}
	if err != nil {
		j.log.Error("journal: cannot copy a damaged segment to quarantine; it stays in place, unmodified",
			zap.String("segment", path), zap.Error(err))
		return
	}
	syncDir(qdir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// createSegment creates segment seq and makes it the active one.
func (j *Journal) createSegment(seq uint64) error {
	f, err := j.newSegmentFile(seq)
	if err != nil {
		return j.wrapWriteErr(err)
	}
	j.f = f
	j.segs = append(j.segs, segment{seq: seq})
	return nil
}

func syncDirErr(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) { _ = syncDirErr(dir) }

// wrapWriteErr names the directory and turns ENOSPC into ErrFull.
func (j *Journal) wrapWriteErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("journal %s: disk full: %w: %w", j.dir, ErrFull, err)
	}
	return fmt.Errorf("journal %s: %w", j.dir, err)
}

// Append writes every payload as one record and returns once one fsync covering all of
// them (and whatever other callers queued meanwhile) is done. On error none of them is
// acknowledged; see the package comment for what a failure leaves on disk.
func (j *Journal) Append(payloads ...[]byte) error {
	var n int64
	for i, p := range payloads {
		if len(p) > MaxRecord {
			return fmt.Errorf("journal %s: payload %d is %d bytes: %w (limit %d)", j.dir, i, len(p), ErrTooLarge, MaxRecord)
		}
		n += recordSize(p)
	}
	if len(payloads) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if j.maxBytes > 0 {
		held := j.durBytes - j.ckBytes + int64(len(j.queued)) + j.inflightBytes
		if held+n > j.maxBytes {
			err := fmt.Errorf("journal %s: %w: %d un-replayed bytes held, %d more would pass the cap of %d",
				j.dir, ErrFull, held, n, j.maxBytes)
			j.lastErr = err.Error()
			return err
		}
	}
	for _, p := range payloads {
		j.queued = appendRecord(j.queued, p)
	}
	j.queuedN += int64(len(payloads))
	r := j.next
	for !r.done {
		switch {
		case j.syncing:
			j.cond.Wait()
		case j.err != nil:
			// Failed (or closed) while we waited, and no round took our records.
			j.failQueuedLocked(j.err)
		default:
			j.leadRoundLocked()
		}
	}
	if r.err != nil {
		return r.err
	}
	j.stats.Appends++
	return nil
}

// round is one group commit: the records queued until its leader took them.
type round struct {
	done bool
	err  error
}

// failQueuedLocked fails the records queued for the next round.
func (j *Journal) failQueuedLocked(err error) {
	j.next.done, j.next.err = true, err
	j.next = &round{}
	j.queued, j.queuedN = j.queued[:0], 0
	j.cond.Broadcast()
}

// leadRoundLocked writes and fsyncs everything queued. Called with j.mu held and
// j.syncing false; releases j.mu meanwhile.
func (j *Journal) leadRoundLocked() {
	j.syncing = true
	r := j.next
	j.next = &round{}
	buf, recs := j.queued, j.queuedN
	j.queued, j.queuedN = j.spare[:0], 0
	j.inflightBytes = int64(len(buf))
	active := j.segs[len(j.segs)-1]
	f, size := j.f, active.size
	rotate := size > 0 && size+int64(len(buf)) > j.segBytes
	j.mu.Unlock()

	var (
		err     error
		sticky  bool
		newF    *os.File
		wrote   bool
		fsynced bool
	)
	if rotate {
		newF, err = j.newSegmentFile(active.seq + 1)
		if err == nil {
			f, size = newF, 0
		}
	}
	if err == nil {
		_, err = f.WriteAt(buf, size)
		wrote = true
		if err == nil {
			fsynced = true
			if err = j.fsync(f); err != nil {
				sticky = true
				err = fmt.Errorf("fsync of %s: %w", filepath.Base(f.Name()), err)
			}
		} else {
			err = fmt.Errorf("write to %s: %w", filepath.Base(f.Name()), err)
		}
	}
	if err != nil && wrote {
		// Cut what this round wrote; the bytes before size are durable.
		if terr := f.Truncate(size); terr != nil {
			sticky = true
			j.log.Error("journal: cannot cut unacknowledged records; a reopen truncates or replays them",
				zap.String("segment", f.Name()), zap.Error(terr))
		}
	}

	j.mu.Lock()
	j.syncing = false
	j.inflightBytes = 0
	if fsynced {
		j.stats.Fsyncs++
	}
	if newF != nil {
		// The new segment exists on disk (empty after a cut): it is the active one now.
		j.f.Close()
		j.f = newF
		j.segs = append(j.segs, segment{seq: active.seq + 1})
	}
	if err == nil {
		j.segs[len(j.segs)-1].size += int64(len(buf))
		j.durRecs += recs
		j.durBytes += int64(len(buf))
		j.stats.Records += uint64(recs)
	} else {
		werr := j.wrapWriteErr(err)
		j.lastErr = werr.Error()
		if sticky {
			werr = fmt.Errorf("%w (journal failed; every append is refused until it is reopened)", werr)
			j.err = werr
			j.stats.Failed = true
			j.log.Error("journal: fsync failed; refusing further appends until reopened", zap.Error(err))
		} else {
			j.log.Error("journal: write failed; this group of records is refused", zap.Error(err))
		}
		r.err = werr
	}
	r.done = true
	j.spare = buf[:0]
	j.cond.Broadcast()
}

// newSegmentFile creates segment seq and makes its name durable.
func (j *Journal) newSegmentFile(seq uint64) (*os.File, error) {
	path := filepath.Join(j.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating segment: %w", err)
	}
	if err := syncDirErr(j.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("fsync of the directory after creating %s: %w", segmentName(seq), err)
	}
	return f, nil
}

// Pending returns up to max durable records that have not been committed, in append
// order from the checkpoint, and the Cursor just past the last one.
func (j *Journal) Pending(max int) ([]Entry, Cursor, error) {
	j.readMu.Lock()
	defer j.readMu.Unlock()
	j.mu.Lock()
	if errors.Is(j.err, ErrClosed) {
		j.mu.Unlock()
		return nil, Cursor{}, ErrClosed
	}
	segs := append([]segment(nil), j.segs...)
	pos := j.ck
	cur := Cursor{Segment: pos.seg, Offset: pos.off, epoch: j.epoch, recs: j.ckRecs, bytes: j.ckBytes}
	j.mu.Unlock()

	var out []Entry
	for i, s := range segs {
		if s.seq < pos.seg {
			continue
		}
		if len(out) >= max {
			break
		}
		start := int64(0)
		if s.seq == pos.seg {
			start = pos.off
		}
		if start < s.size {
			name := segmentName(s.seq)
			f, err := os.Open(filepath.Join(j.dir, name))
			if err != nil {
				return nil, Cursor{}, fmt.Errorf("journal %s: %w", j.dir, err)
			}
			res, err := scanSegment(name, f, start, s.size, func(off int64, p []byte) bool {
				if len(out) >= max {
					return false
				}
				out = append(out, Entry{Payload: append([]byte(nil), p...), Segment: s.seq, Offset: off})
				cur.Offset = off + headerSize + int64(len(p))
				cur.recs++
				cur.bytes += headerSize + int64(len(p))
				return true
			})
			f.Close()
			if err != nil {
				return nil, Cursor{}, fmt.Errorf("journal %s: reading %s: %w", j.dir, name, err)
			}
			if res.validEnd < s.size && len(out) >= max {
				break // stopped inside this segment
			}
		}
		// This segment is done: continue at the next one if there is one.
		if i+1 < len(segs) {
			cur.Segment, cur.Offset = segs[i+1].seq, 0
		} else {
			cur.Offset = s.size
		}
	}
	return out, cur, nil
}

// Commit durably moves the checkpoint to c (a Cursor from Pending of this Journal) and
// deletes the segments entirely before it. A cursor at or behind the checkpoint is a
// no-op.
func (j *Journal) Commit(c Cursor) error {
	if c.Segment == 0 && c.epoch == 0 {
		return nil
	}
	j.readMu.Lock()
	defer j.readMu.Unlock()
	j.mu.Lock()
	if errors.Is(j.err, ErrClosed) {
		j.mu.Unlock()
		return ErrClosed
	}
	if c.epoch != j.epoch {
		j.mu.Unlock()
		return fmt.Errorf("journal %s: Commit with a cursor from another Journal", j.dir)
	}
	to := position{seg: c.Segment, off: c.Offset}
	if !j.ck.less(to) {
		j.mu.Unlock()
		return nil
	}
	j.mu.Unlock()

	if err := j.writeCheckpoint(to); err != nil {
		err = j.wrapWriteErr(fmt.Errorf("writing checkpoint: %w", err))
		j.mu.Lock()
		j.lastErr = err.Error()
		j.mu.Unlock()
		return err
	}

	j.mu.Lock()
	j.ck = to
	j.ckRecs, j.ckBytes = c.recs, c.bytes
	var drop []segment
	for len(j.segs) > 1 && j.segs[0].seq < to.seg {
		drop = append(drop, j.segs[0])
		j.segs = j.segs[1:]
	}
	for _, s := range drop {
		j.stats.Quarantined -= s.damage
	}
	j.mu.Unlock()
	for _, s := range drop {
		if err := os.Remove(filepath.Join(j.dir, segmentName(s.seq))); err != nil {
			j.log.Warn("journal: cannot delete a committed segment; the next Open deletes it",
				zap.Uint64("segment", s.seq), zap.Error(err))
		}
	}
	return nil
}

func (j *Journal) writeCheckpoint(p position) error {
	tmp := filepath.Join(j.dir, checkpointName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeCheckpoint(p))
	if err == nil {
		err = j.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(j.dir, checkpointName))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDirErr(j.dir)
}

// Stats returns the Journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.stats
	s.PendingRecords = j.durRecs - j.ckRecs
	s.PendingBytes = j.durBytes - j.ckBytes
	s.Segments = len(j.segs)
	s.LastError = j.lastErr
	return s
}

// Dir returns the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// Close waits for a running write+fsync round, then closes the files. Appends queued
// behind it fail with ErrClosed.
func (j *Journal) Close() error {
	j.readMu.Lock()
	defer j.readMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	if errors.Is(j.err, ErrClosed) {
		return nil
	}
	j.err = ErrClosed
	if j.queuedN > 0 {
		j.failQueuedLocked(ErrClosed)
	}
	j.cond.Broadcast()
	err := j.f.Close()
	if lerr := j.lock.Close(); err == nil {
		err = lerr
	}
	return err
}
