package backend

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Grant is one prize grant as the delivery backend records it. Its ledger line (also
// what GET /grants lists) is the Grant's JSON plus a "crc" field, e.g.
//
//	{"seq":7,"id":"g-42","user":"10001","prize":"red","time":"2026-01-28T16:00:00.123Z","crc":"9a0b1c2d"}
//
// Seq numbers the ledger's records from 1 without gaps; crc is the CRC-32C (Castagnoli),
// in hex, of the line's bytes before the crc digits, so that any damaged byte is caught
// on replay rather than read back as a different grant.
type Grant struct {
	Seq   uint64    `json:"seq"`
	ID    string    `json:"id"`
	User  string    `json:"user"`
	Prize string    `json:"prize"`
	Time  time.Time `json:"time"`
}

var (
	errConflict     = errors.New("grant id already used for another user or prize")
	errLedgerClosed = errors.New("ledger closed")
)

// ledger is the delivery backend's journal: an append-only file of Grant JSON lines and
// its in-memory index. A grant is acknowledged only after the fsync that covers its line;
// concurrent grants share fsyncs (group commit): the first waiter becomes the leader,
// writes everything pending in one write, fsyncs once and wakes all it covered, while
// later grants queue up for the next round.
type ledger struct {
	path  string
	f     *os.File
	fsync func(*os.File) error // (*os.File).Sync; tests replace it
	log   *zap.Logger

	mu      sync.Mutex
	cond    sync.Cond // on mu; signalled when a write+fsync round ends
	byID    map[string]*Grant
	all     []*Grant // seq order; all[:synced] are durable, the rest are in pending
	synced  int      // durable records
	size    int64    // durable bytes in the file
	pending []byte   // encoded records of all[synced:], not yet written
	spare   []byte   // the other buffer, reused
	syncing bool     // a leader is writing and fsyncing
	syncs   uint64   // fsyncs done
	err     error    // sticky: a failed write or fsync, or Close
}

// openLedger opens (creating if needed) the ledger at path and replays it. A torn last
// line - bytes after the last newline, left by a crash mid-write and therefore never
// acknowledged - is truncated away and logged. Any complete line that is not a valid
// record in sequence is damage: an error naming path:line, and the file is left as is.
func openLedger(path string, log *zap.Logger) (*ledger, error) {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l := &ledger{
		path:  path,
		f:     f,
		fsync: (*os.File).Sync,
		log:   log,
		byID:  make(map[string]*Grant),
	}
	l.cond.L = &l.mu
	if err := l.replay(); err != nil {
		f.Close()
		return nil, err
	}
	if created {
		syncDir(filepath.Dir(path)) // make the new file's name durable too
	}
	return l, nil
}

// replay loads the file into the index; see openLedger.
func (l *ledger) replay() error {
	r := bufio.NewReaderSize(l.f, 64<<10)
	var off int64
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return l.truncateTorn(lineNo, off, line)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("ledger %s:%d: %w", l.path, lineNo, err)
		}
		g, why := decodeGrant(line, uint64(len(l.all))+1)
		if why == "" && l.byID[g.ID] != nil {
			why = fmt.Sprintf("grant id %q repeats line %d", g.ID, l.byID[g.ID].Seq)
		}
		if why != "" {
			return fmt.Errorf("ledger %s:%d: damaged record (%s): %q; the file is left untouched, "+
				"repair or move it before starting", l.path, lineNo, why, preview(line))
		}
		l.all = append(l.all, g)
		l.byID[g.ID] = g
		off += int64(len(line))
	}
	l.synced = len(l.all)
	l.size = off
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	crcField = `,"crc":"`
	crcTail  = len(`01234567"}` + "\n") // the crc digits and what follows them
)

// appendRecord appends g's ledger line (see Grant) to dst.
func appendRecord(dst []byte, g *Grant) []byte {
	b, err := json.Marshal(g)
	if err != nil { // a Grant always encodes
		panic(err)
	}
	start := len(dst)
	dst = append(dst, b[:len(b)-1]...) // without the closing brace
	dst = append(dst, crcField...)
	sum := crc32.Checksum(dst[start:], castagnoli)
	dst = append(dst, hexDigits[sum>>28], hexDigits[sum>>24&0xf], hexDigits[sum>>20&0xf], hexDigits[sum>>16&0xf],
		hexDigits[sum>>12&0xf], hexDigits[sum>>8&0xf], hexDigits[sum>>4&0xf], hexDigits[sum&0xf])
	return append(dst, "\"}\n"...)
}

// decodeGrant parses one ledger line strictly; why says what is wrong, "" if nothing.
func decodeGrant(line []byte, wantSeq uint64) (g *Grant, why string) {
	n := len(line)
	if n < crcTail+len(crcField) || string(line[n-3:]) != "\"}\n" ||
		string(line[n-crcTail-len(crcField):n-crcTail]) != crcField {
		return nil, "no crc at the end"
	}
	want, err := strconv.ParseUint(string(line[n-crcTail:n-3]), 16, 32)
	if err != nil {
		return nil, "bad crc"
	}
	if got := crc32.Checksum(line[:n-crcTail], castagnoli); got != uint32(want) {
		return nil, fmt.Sprintf("crc %08x does not match its content (%08x)", want, got)
	}
	var rec struct {
		Grant
		CRC string `json:"crc"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, "not a JSON record: " + err.Error()
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, "data after the record"
	}
	g = &rec.Grant
	switch {
	case g.Seq != wantSeq:
		return nil, fmt.Sprintf("seq %d, want %d", g.Seq, wantSeq)
	case checkField("id", g.ID) != "":
		return nil, checkField("id", g.ID)
	case checkField("user", g.User) != "":
		return nil, checkField("user", g.User)
	case checkField("prize", g.Prize) != "":
		return nil, checkField("prize", g.Prize)
	case g.Time.IsZero():
		return nil, "no time"
	}
	return g, ""
}

func (l *ledger) truncateTorn(lineNo int, off int64, tail []byte) error {
	if err := l.f.Truncate(off); err != nil {
		return fmt.Errorf("ledger %s:%d: truncating torn last line: %w", l.path, lineNo, err)
	}
	if err := l.fsync(l.f); err != nil {
		return fmt.Errorf("ledger %s: fsync after truncation: %w", l.path, err)
	}
	l.log.Warn("ledger: truncated a torn last line (crash mid-write; it was never acknowledged)",
		zap.String("path", l.path), zap.Int("line", lineNo), zap.Int64("offset", off),
		zap.Int("bytes", len(tail)), zap.ByteString("text", preview(tail)))
	l.synced = len(l.all)
	l.size = off
	return nil
}

func preview(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// syncDir fsyncs a directory so that a newly created entry in it survives a crash.
// Best effort: not every platform can fsync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// grant records a new grant for id, or finds the one already recorded. It returns once
// the record is durable. dup reports that id was granted before; the error is
// errConflict (with the original record) when that earlier grant had another user or
// prize, or the ledger's sticky error.
func (l *ledger) grant(id, user, prize string, now time.Time) (g *Grant, dup bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, false, l.err
	}
	if old := l.byID[id]; old != nil {
		if err := l.waitLocked(old.Seq); err != nil {
			return nil, true, err
		}
		if old.User != user || old.Prize != prize {
			return old, true, errConflict
		}
		return old, true, nil
	}
	g = &Grant{Seq: uint64(len(l.all)) + 1, ID: id, User: user, Prize: prize, Time: now.UTC()}
	l.pending = appendRecord(l.pending, g)
	l.all = append(l.all, g)
	l.byID[id] = g
	return g, false, l.waitLocked(g.Seq)
}

// waitLocked returns when record seq is durable, leading a write+fsync round itself when
// none is running. Called with l.mu held; releases it while writing.
func (l *ledger) waitLocked(seq uint64) error {
	for uint64(l.synced) < seq {
		if l.err != nil {
			return l.err
		}
		if l.syncing {
			l.cond.Wait()
			continue
		}
		l.syncing = true
		buf, upTo := l.pending, len(l.all)
		l.pending = l.spare[:0]
		l.mu.Unlock()

		_, err := l.f.Write(buf)
		if err == nil {
			err = l.fsync(l.f)
		}

		l.mu.Lock()
		l.syncing = false
		l.syncs++
		if err != nil {
			l.failLocked(err)
		} else {
			l.synced = upTo
			l.size += int64(len(buf))
		}
		l.spare = buf[:0]
		l.cond.Broadcast()
	}
	return nil
}

// failLocked makes a write or fsync error sticky: the file's state past the last
// acknowledged record is unknown, so nothing more is appended. The unacknowledged
// records are forgotten (their callers get the error) and cut from the file if possible.
func (l *ledger) failLocked(err error) {
	l.err = fmt.Errorf("ledger %s: %w", l.path, err)
	for _, g := range l.all[l.synced:] {
		delete(l.byID, g.ID)
	}
	clear(l.all[l.synced:])
	l.all = l.all[:l.synced]
	l.pending = nil
	if terr := l.f.Truncate(l.size); terr != nil {
		l.log.Error("ledger: cannot cut unacknowledged records; a restart truncates or refuses them",
			zap.String("path", l.path), zap.Error(terr))
	}
	l.log.Error("ledger: write failed; refusing further grants until restart",
		zap.String("path", l.path), zap.Error(err))
}

// close waits for a running write+fsync round, then closes the file. Grants after it
// fail with errLedgerClosed.
func (l *ledger) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing {
		l.cond.Wait()
	}
	if errors.Is(l.err, errLedgerClosed) {
		return nil
	}
	l.err = errLedgerClosed
	l.cond.Broadcast()
	return l.f.Close()
}

// lookup returns the durable record for id.
func (l *ledger) lookup(id string) (Grant, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.byID[id]
	if g == nil || g.Seq > uint64(l.synced) {
		return Grant{}, false
	}
	return *g, true
}

// durable returns the durable records in seq order. Records never change once made, so
// the pointers are safe to read without the lock.
func (l *ledger) durable() []*Grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all[:l.synced:l.synced]
}

func (l *ledger) fsyncs() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncs
}
