// Package packfile reads number-pack files: lists of user numbers that make a user
// eligible for a campaign ("number packs").
//
// The format is one user number per line, in decimal, up to 20 digits (it must fit a
// uint64). Blank lines and lines whose first non-space byte is '#' are ignored; spaces
// and tabs around a number are trimmed; CRLF line ends and a UTF-8 byte-order mark at
// the start are accepted. A file may be gzip-compressed: that is detected from its magic
// bytes, never from its name. Any other line is an error naming file:line and the text.
//
// Reading is allocation-free per line (no string conversions, no strconv), so a pack of
// ten million numbers reads in well under a second.
package packfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxLineLen is the longest line accepted; a longer line is malformed. A number has at
// most 20 digits, so this leaves ample room for surrounding spaces and comments.
const MaxLineLen = 64 << 10

// maxShown caps how much of a bad line an error message quotes.
const maxShown = 64

// Read reads the pack file at path and calls fn with each number in file order.
// It returns how many numbers were read. An error from fn stops the read and is returned
// unchanged; any other error names the file (and line, when a line is at fault).
func Read(path string, fn func(n uint64) error) (count int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return ReadFrom(f, path, fn)
}

// ReadFrom is Read on an open stream; name is used in error messages only.
func ReadFrom(r io.Reader, name string, fn func(n uint64) error) (count int, err error) {
	br, done, err := lines(r, name)
	if err != nil {
		return 0, err
	}
	defer done()
	return readLines(br, name, fn)
}

// lines returns the reader of r's lines: r itself, or its decompressed stream when r
// starts with gzip's magic bytes. done releases the decompressor.
func lines(r io.Reader, name string) (br *bufio.Reader, done func(), err error) {
	br = bufio.NewReaderSize(r, MaxLineLen)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		// The line reader reads to the end of the stream, which is where gzip checks the
		// trailer's CRC and length: a damaged or truncated stream is an error.
		return bufio.NewReaderSize(zr, MaxLineLen), func() { zr.Close() }, nil
	}
	return br, func() {}, nil
}

// MaxKeyLen is the longest key of a string pack.
const MaxKeyLen = 256

// ReadKeysFrom reads a string pack: one key per line (an openid, an account name), the
// same comments, blank lines, trimming and gzip detection as a number pack. A key is 1 to
// MaxKeyLen printable ASCII bytes without spaces. fn gets each key in file order; the
// slice is valid only during the call.
func ReadKeysFrom(r io.Reader, name string, fn func(key []byte) error) (count int, err error) {
	br, done, err := lines(r, name)
	if err != nil {
		return 0, err
	}
	defer done()
	return scanLines(br, name, func(line int, t []byte) error {
		if !ValidKey(t) {
			if len(t) > maxShown {
				t = t[:maxShown]
			}
			return fmt.Errorf("%s:%d: malformed key %q (want 1-%d printable ASCII bytes without spaces)", name, line, t, MaxKeyLen)
		}
		return fn(t)
	})
}

// ValidKey reports whether b is a string pack key: 1 to MaxKeyLen printable ASCII bytes
// without spaces.
func ValidKey(b []byte) bool {
	if len(b) == 0 || len(b) > MaxKeyLen {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func readLines(br *bufio.Reader, name string, fn func(n uint64) error) (count int, err error) {
	return scanLines(br, name, func(line int, t []byte) error {
		n, ok := ParseNumber(t)
		if !ok {
			if len(t) > maxShown {
				t = t[:maxShown]
			}
			return fmt.Errorf("%s:%d: malformed number %q", name, line, t)
		}
		return fn(n)
	})
}

// scanLines calls fn with each line's trimmed text that is not blank or a comment.
func scanLines(br *bufio.Reader, name string, fn func(line int, t []byte) error) (count int, err error) {
	for line := 1; ; line++ {
		b, rerr := br.ReadSlice('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			if errors.Is(rerr, bufio.ErrBufferFull) {
				return count, fmt.Errorf("%s:%d: line longer than %d bytes: %q...", name, line, MaxLineLen, b[:maxShown])
			}
			return count, fmt.Errorf("%s:%d: %w", name, line, rerr)
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, bom)
		}
		t := trim(b)
		if len(t) > 0 && t[0] != '#' {
			if err := fn(line, t); err != nil {
				return count, err
			}
			count++
		}
		if rerr != nil { // io.EOF: b was the last, unterminated line (maybe empty)
			return count, nil
		}
	}
}

var bom = []byte("\xef\xbb\xbf")

// trim drops spaces, tabs and line-end bytes (\n, \r) on both sides.
func trim(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// ParseNumber parses a user number: 1 to 20 decimal digits and nothing else (no sign,
// no spaces) whose value fits a uint64. It does not allocate.
func ParseNumber(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	if len(b) < 20 { // at most 19 digits cannot overflow
		for _, c := range b {
			d := c - '0'
			if d > 9 {
				return 0, false
			}
			n = n*10 + uint64(d)
		}
		return n, true
	}
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		if n > (^uint64(0)-uint64(d))/10 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	return n, true
}
