package packfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// File is one pack file opened for reading, once or in several passes. It is the one
// reader of the format for every user of packs (the number_pack filter, the packs
// backend): each pass reads the file from its start, hands the caller the numbers (or
// keys) and every byte of the file to a hash of the caller's choice - the bytes after a
// gzip stream's end included, so that the hash is the file's whole content - and
// Unchanged tells whether the file was replaced or modified while it was read.
type File struct {
	f    *os.File
	path string
	info os.FileInfo // at Open
}

// Open opens the pack file at path.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &File{f: f, path: path, info: info}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Info is the file's stat when it was opened.
func (f *File) Info() os.FileInfo { return f.info }

// Numbers reads the file from its start as a number pack: fn gets each number in file
// order, h (nil: none) every byte of the file. It returns how many numbers were read; an
// error from fn stops the read and is returned unchanged, any other error names the file
// (and line).
func (f *File) Numbers(h io.Writer, fn func(n uint64) error) (int, error) {
	r, err := f.rewind(h)
	if err != nil {
		return 0, err
	}
	count, err := ReadFrom(r, f.path, fn)
	if err != nil {
		return count, err
	}
	return count, f.drain(h)
}

// Keys is Numbers for a string pack (see ReadKeysFrom); the key slice is valid only
// during the call.
func (f *File) Keys(h io.Writer, fn func(key []byte) error) (int, error) {
	r, err := f.rewind(h)
	if err != nil {
		return 0, err
	}
	count, err := ReadKeysFrom(r, f.path, fn)
	if err != nil {
		return count, err
	}
	return count, f.drain(h)
}

// rewind starts a pass: the file from its first byte, teed into h.
func (f *File) rewind(h io.Writer) (io.Reader, error) {
	if _, err := f.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	if h == nil {
		return f.f, nil
	}
	return io.TeeReader(f.f, h), nil
}

// drain feeds h what the reader left unread: the bytes after a gzip stream's end.
func (f *File) drain(h io.Writer) error {
	if h == nil {
		return nil
	}
	if _, err := io.Copy(h, f.f); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	return nil
}

// ErrChanged is returned by Unchanged for a file replaced or modified since Open.
var ErrChanged = errors.New("changed while it was read")

// Unchanged returns the file's current stat (by path), or an error wrapping ErrChanged
// when its size, mtime or identity (device and inode) differ from Open's: the file was
// modified or replaced (an atomic rename counts) while it was read.
func (f *File) Unchanged() (os.FileInfo, error) {
	after, err := os.Stat(f.path)
	if err != nil {
		return nil, err
	}
	if !SameVersion(f.info, after) {
		return nil, fmt.Errorf("%s %w", f.path, ErrChanged)
	}
	return after, nil
}

// SameVersion reports whether two stats of a file are one version of it: the same size,
// mtime and identity (device and inode). Both must be non-nil.
func SameVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}
