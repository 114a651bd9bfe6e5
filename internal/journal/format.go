package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// On-disk format, version 1 (README.md in this folder says the same).
//
// A journal directory holds segment files and one checkpoint file:
//
//	00000000000000000001.seg   segments, named by a 20-digit decimal sequence number;
//	00000000000000000002.seg   records are appended to the newest one only
//	checkpoint                 where replay starts (segment, offset), see below
//	LOCK                       flock(2)-ed by the Journal that has the directory open
//	quarantine/                copies of segments in which Open found damage
//
// A segment is a plain concatenation of records, with no file header:
//
//	offset  size  field
//	0       2     magic 0xF7 0x4A
//	2       1     format version (1)
//	3       1     flags (0; reserved)
//	4       4     payload length n, little endian, at most MaxRecord (1 MiB)
//	8       4     CRC-32C (Castagnoli), little endian, over bytes 2..7 and the payload
//	12      n     payload
//
// The checkpoint file is 28 bytes: magic "FGCK", version (1), three zero bytes,
// segment (u64 LE), offset (i64 LE), CRC-32C of the first 24 bytes (u32 LE). It is
// replaced atomically (write checkpoint.tmp, fsync, rename, fsync the directory).
const (
	magic0, magic1 = 0xF7, 0x4A
	formatVersion  = 1
	headerSize     = 12

	// MaxRecord is the largest payload one record may carry.
	MaxRecord = 1 << 20

	checkpointName  = "checkpoint"
	checkpointSize  = 28
	checkpointMagic = "FGCK"
	segmentSuffix   = ".seg"
	quarantineDir   = "quarantine"
	lockName        = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends p encoded as one record to dst.
func appendRecord(dst, p []byte) []byte {
	start := len(dst)
	dst = append(dst, magic0, magic1, formatVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(dst[start+4:], uint32(len(p)))
	crc := crc32.Update(0, castagnoli, dst[start+2:start+8])
	crc = crc32.Update(crc, castagnoli, p)
	binary.LittleEndian.PutUint32(dst[start+8:], crc)
	return append(dst, p...)
}

func recordSize(p []byte) int64 { return headerSize + int64(len(p)) }

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentSuffix) }

// parseSegmentName returns the sequence number of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(base) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(base, 10, 64)
	return seq, err == nil && seq > 0
}

// listSegments returns the sequence numbers of the segments in dir, oldest first.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range ents {
		if seq, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
	return seqs, nil
}

// position is a place in the journal: a segment and a byte offset in it.
type position struct {
	seg uint64
	off int64
}

func (p position) less(q position) bool {
	return p.seg < q.seg || p.seg == q.seg && p.off < q.off
}

func encodeCheckpoint(p position) []byte {
	b := make([]byte, checkpointSize)
	copy(b, checkpointMagic)
	b[4] = formatVersion
	binary.LittleEndian.PutUint64(b[8:], p.seg)
	binary.LittleEndian.PutUint64(b[16:], uint64(p.off))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return b
}

// readCheckpoint reads dir's checkpoint. missing is true when there is none; any other
// problem is an error saying what is wrong with it.
func readCheckpoint(dir string) (p position, missing bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if errors.Is(err, os.ErrNotExist) {
		return position{}, true, nil
	}
	if err != nil {
		return position{}, false, err
	}
	switch {
	case len(b) != checkpointSize:
		return position{}, false, fmt.Errorf("checkpoint is %d bytes, want %d", len(b), checkpointSize)
	case string(b[:4]) != checkpointMagic:
		return position{}, false, fmt.Errorf("checkpoint has bad magic %q", b[:4])
	case b[4] != formatVersion:
		return position{}, false, fmt.Errorf("checkpoint has unknown format version %d", b[4])
	case crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]):
		return position{}, false, errors.New("checkpoint CRC does not match its content")
	}
	p = position{seg: binary.LittleEndian.Uint64(b[8:]), off: int64(binary.LittleEndian.Uint64(b[16:]))}
	if p.seg == 0 || p.off < 0 {
		return position{}, false, fmt.Errorf("checkpoint names an impossible position %d:%d", p.seg, p.off)
	}
	return p, false, nil
}

// window reads a byte range of a segment through a buffer, so that scanning (and
// resynchronising byte by byte after damage) does not issue one read per record.
type window struct {
	r    io.ReaderAt
	end  int64 // bytes past end are not looked at
	buf  []byte
	base int64 // file offset of buf[0]
}

const windowChunk = 256 << 10

// peek returns the n bytes at off, or nil when they reach past end.
func (w *window) peek(off int64, n int) ([]byte, error) {
	if off < 0 || off+int64(n) > w.end {
		return nil, nil
	}
	if off >= w.base && off+int64(n) <= w.base+int64(len(w.buf)) {
		return w.buf[off-w.base : off-w.base+int64(n)], nil
	}
	size := int64(max(n, windowChunk))
	size = min(size, w.end-off)
	if int64(cap(w.buf)) < size {
		w.buf = make([]byte, size)
	}
	w.buf = w.buf[:size]
	m, err := w.r.ReadAt(w.buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(m) >= int64(n)) {
		if errors.Is(err, io.EOF) { // the file shrank under us: treat as its end
			w.end = off + int64(m)
			w.buf = w.buf[:m]
			w.base = off
			return nil, nil
		}
		return nil, err
	}
	w.buf = w.buf[:m]
	w.base = off
	return w.buf[:n], nil
}

// check validates the record at off. It returns the record's payload (valid only until
// the next peek) and total size, or why it is not a valid record; short is true when
// the record cannot be judged because it reaches past the end of the window.
func (w *window) check(off int64) (payload []byte, size int64, why string, short bool, err error) {
	h, err := w.peek(off, headerSize)
	if err != nil {
		return nil, 0, "", false, err
	}
	if h == nil {
		return nil, 0, "partial record header", true, nil
	}
	switch {
	case h[0] != magic0 || h[1] != magic1:
		return nil, 0, "bad magic", false, nil
	case h[2] != formatVersion:
		return nil, 0, fmt.Sprintf("unknown format version %d", h[2]), false, nil
	case h[3] != 0:
		return nil, 0, fmt.Sprintf("unknown flags %#x", h[3]), false, nil
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > MaxRecord {
		return nil, 0, fmt.Sprintf("length %d over the %d-byte limit", n, MaxRecord), false, nil
	}
	want := binary.LittleEndian.Uint32(h[8:])
	rec, err := w.peek(off, headerSize+int(n))
	if err != nil {
		return nil, 0, "", false, err
	}
	if rec == nil {
		return nil, 0, fmt.Sprintf("length %d reaches past the end of the segment", n), true, nil
	}
	crc := crc32.Update(0, castagnoli, rec[2:8])
	crc = crc32.Update(crc, castagnoli, rec[headerSize:])
	if crc != want {
		return nil, 0, fmt.Sprintf("CRC %08x does not match the record (%08x)", want, crc), false, nil
	}
	return rec[headerSize:], headerSize + int64(n), "", false, nil
}

// scanResult is what scanning one segment found.
type scanResult struct {
	validEnd int64    // end of the last valid record (or the start offset when none)
	damage   []Damage // damaged ranges followed by valid records (or, for a segment that is not the last, by its end)
	tail     *Damage  // invalid bytes after the last valid record, up to end
}

// scanSegment reads the records of a segment in [start, end), calling visit for each
// valid one (the payload is only valid during the call; visit returns false to stop).
// After an invalid record it resynchronises: first at the position the damaged
// record's own length points to (damage confined to a payload keeps its length), then
// byte by byte at the next position where magic, version, flags, length and CRC all
// validate. Bytes that never resynchronise end up in tail.
func scanSegment(name string, r io.ReaderAt, start, end int64,
	visit func(off int64, payload []byte) bool) (scanResult, error) {
	w := &window{r: r, end: end}
	res := scanResult{validEnd: start}
	off := start
	for off < end {
		payload, size, why, _, err := w.check(off)
		if err != nil {
			return res, err
		}
		if why == "" {
			if visit != nil && !visit(off, payload) {
				res.validEnd = off // not consumed
				return res, nil
			}
			off += size
			res.validEnd = off
			continue
		}
		next, err := resync(w, off)
		if err != nil {
			return res, err
		}
		if next < 0 {
			res.tail = &Damage{Segment: name, Offset: off, Bytes: w.end - off, Reason: why}
			return res, nil
		}
		res.damage = append(res.damage, Damage{Segment: name, Offset: off, Bytes: next - off, Reason: why})
		off = next
	}
	return res, nil
}

// resync returns the offset of the next valid record after the invalid one at off,
// or -1 when there is none before the end of the window.
func resync(w *window, off int64) (int64, error) {
	if h, err := w.peek(off, headerSize); err != nil {
		return 0, err
	} else if h != nil && h[0] == magic0 && h[1] == magic1 {
		n := int64(binary.LittleEndian.Uint32(h[4:]))
		if n <= MaxRecord {
			if _, _, why, _, err := w.check(off + headerSize + n); err != nil {
				return 0, err
			} else if why == "" {
				return off + headerSize + n, nil
			}
		}
	}
	for q := off + 1; q+headerSize <= w.end; q++ {
		b, err := w.peek(q, 2)
		if err != nil {
			return 0, err
		}
		if b[0] != magic0 || b[1] != magic1 {
			continue
		}
		if _, _, why, _, err := w.check(q); err != nil {
			return 0, err
		} else if why == "" {
			return q, nil
		}
	}
	return -1, nil
}
