// Package grant is the record of one accepted asynchronous request ("grant", after the
// seed's prize delivery): what the gateway answered 202 for, as the queue and the local
// journal keep it, and what the deliverer sends to the delivery backend.
//
// A grant's id is derived from the route and the client's idempotency key (ID), so every
// gateway instance, before and after a restart, gives a resubmission the same id without
// any shared state; the delivery backend records each id once, which is what makes a
// repeated delivery (a resubmission, a re-published journal record, a redelivered queue
// message, a reconciliation repair) harmless.
//
// # Encoding
//
// Records travel as a compact binary encoding (AppendBinary / Decode), the same bytes in
// the queue's message body and in the journal's records:
//
//	"FG" version(1)                                   3 bytes
//	accepted unix nanoseconds                          8 bytes, big endian
//	id, route, key, gateway, method, path, query       uvarint length + bytes each
//	header count                                       uvarint; then name, value as above
//	body                                               uvarint length + bytes
//
// Decode rejects anything else (wrong magic or version, a length past the end, trailing
// bytes): a damaged record is never read back as a different grant.
package grant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
)

// Version is the encoding version AppendBinary writes.
const Version = 1

// MaxIDLen bounds a grant id (the delivery backend accepts up to 256 bytes).
const MaxIDLen = 128

// Header is one request header kept with the grant.
type Header struct {
	Name, Value string
}

// Record is one accepted grant.
type Record struct {
	// ID is the grant id: ID(route, key).
	ID string
	// Route is the name of the async route that accepted it.
	Route string
	// Key is the idempotency key as the client sent it.
	Key string
	// Accepted is when the gateway accepted it, in Unix nanoseconds.
	Accepted int64
	// Gateway is the instance that accepted it.
	Gateway string
	// Method, Path and Query are the request's, as the filters judged them.
	Method, Path, Query string
	// Headers are the headers the route keeps (async.keep_headers).
	Headers []Header
	// Body is the request body (at most the route's max_request_body).
	Body []byte
}

// ID returns the grant id for an idempotency key on a route: the route name, '-', and 32
// hex digits of SHA-256(route NUL key). Equal inputs give equal ids on every instance.
func ID(route, key string) string {
	return string(AppendID(nil, route, key))
}

// AppendID appends ID(route, key) to dst without allocating when dst has room.
func AppendID(dst []byte, route, key string) []byte {
	h := sha256.New()
	h.Write([]byte(route))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	dst = append(dst, route...)
	dst = append(dst, '-')
	var hx [32]byte
	hex.Encode(hx[:], sum[:16])
	return append(dst, hx[:]...)
}

// AppendBinary appends the record's encoding to dst.
func (r *Record) AppendBinary(dst []byte) []byte {
	dst = append(dst, 'F', 'G', Version)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Accepted))
	for _, s := range [...]string{r.ID, r.Route, r.Key, r.Gateway, r.Method, r.Path, r.Query} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = appendString(dst, h.Name)
		dst = appendString(dst, h.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Body)))
	return append(dst, r.Body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// ErrFormat is wrapped by every Decode error.
var ErrFormat = errors.New("not a grant record")

// Decode parses an encoded record. The record owns its memory (nothing aliases b).
func Decode(b []byte) (*Record, error) {
	if len(b) < 11 || b[0] != 'F' || b[1] != 'G' {
		return nil, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	if b[2] != Version {
		return nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrFormat, b[2], Version)
	}
	r := &Record{Accepted: int64(binary.BigEndian.Uint64(b[3:11]))}
	d := decoder{b: b[11:]}
	for _, p := range [...]*string{&r.ID, &r.Route, &r.Key, &r.Gateway, &r.Method, &r.Path, &r.Query} {
		*p = d.string()
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every header takes at least two bytes
		d.fail("header count")
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.Headers = append(r.Headers, Header{Name: d.string(), Value: d.string()})
	}
	body := d.bytes()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(body) > 0 {
		r.Body = append([]byte(nil), body...)
	}
	if r.ID == "" || r.Route == "" {
		return nil, fmt.Errorf("%w: empty id or route", ErrFormat)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrFormat, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// Field returns a form field of the grant: from the query string, else from an
// application/x-www-form-urlencoded body. Reconciliation compares the delivery backend's
// user and prize with these.
func (r *Record) Field(name string) string {
	if q, err := url.ParseQuery(r.Query); err == nil {
		if v := q.Get(name); v != "" {
			return v
		}
	}
	if len(r.Body) > 0 {
		if f, err := url.ParseQuery(string(r.Body)); err == nil {
			return f.Get(name)
		}
	}
	return ""
}
