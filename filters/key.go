package filters

import (
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// KeySource says where a per-key filter finds a request's key.
type KeySource uint8

const (
	// KeyNone: no key; the filter acts on the route as a whole.
	KeyNone KeySource = iota
	// KeyIP: the client IP (Request.ClientIP).
	KeyIP
	// KeyHeader: a request header.
	KeyHeader
	// KeyCookie: a cookie.
	KeyCookie
	// KeyQuery: a query-string parameter.
	KeyQuery
)

// KeyFormat says how a key's value is read.
type KeyFormat uint8

const (
	// KeyText: the value as the request carries it (query and cookie values
	// percent-decoded), byte for byte.
	KeyText KeyFormat = iota
	// KeyNumber: a user number. Read as optional spaces, at most one '+', decimal
	// digits, optional spaces; leading zeros dropped; at most 2^64-1. "010001",
	// "0010001", "+10001", "%2B10001" and " 10001" are all the key "10001". Anything
	// else is a bad key.
	KeyNumber
)

// KeyStatus is what reading a request's key found.
type KeyStatus uint8

const (
	// KeyMissing: the request carries no key (or an empty one).
	KeyMissing KeyStatus = iota
	// KeyFound: the key, in its canonical form.
	KeyFound
	// KeyBad: the key is given more than once (two query parameters, header lines or
	// cookies of that name: the filter cannot know which one the upstream will use) or
	// is malformed for its format. Filters reject such requests with the verdict
	// <filter>/bad_key.
	KeyBad
)

// KeySpec is a key source as written in configuration: "ip", "header:X-Uin",
// "cookie:uin", "query:uin", or "" / "none" for no key, optionally followed by
// " as number" (KeyNumber) or " as text" (KeyText, the default). It decodes from YAML or
// text.
type KeySpec struct {
	Source KeySource
	Name   string
	Format KeyFormat
	name   []byte
}

// ParseKeySpec parses the configuration syntax of KeySpec.
func ParseKeySpec(s string) (KeySpec, error) {
	s = strings.TrimSpace(s)
	format := KeyText
	if src, f, ok := strings.Cut(s, " as "); ok {
		switch strings.TrimSpace(f) {
		case "number":
			format = KeyNumber
		case "text":
		default:
			return KeySpec{}, fmt.Errorf("key %q: unknown format %q; want \"as number\" or \"as text\"", s, strings.TrimSpace(f))
		}
		s = strings.TrimSpace(src)
	}
	switch s {
	case "", "none":
		if format != KeyText {
			return KeySpec{}, fmt.Errorf("key %q: a format needs a header, cookie or query key", s)
		}
		return KeySpec{}, nil
	case "ip":
		if format != KeyText {
			return KeySpec{}, fmt.Errorf("key %q: an ip key has no format", s)
		}
		return KeySpec{Source: KeyIP}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return KeySpec{}, fmt.Errorf("key %q: want ip, header:NAME, cookie:NAME, query:NAME or none (optionally followed by \"as number\")", s)
	}
	var src KeySource
	switch kind {
	case "header":
		src = KeyHeader
	case "cookie":
		src = KeyCookie
	case "query":
		src = KeyQuery
	default:
		return KeySpec{}, fmt.Errorf("key %q: unknown source %q; want ip, header:NAME, cookie:NAME, query:NAME or none", s, kind)
	}
	return KeySpec{Source: src, Name: name, Format: format, name: []byte(name)}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler (used by the YAML decoder).
func (k *KeySpec) UnmarshalText(b []byte) error {
	v, err := ParseKeySpec(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (k KeySpec) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k KeySpec) String() string {
	var s string
	switch k.Source {
	case KeyIP:
		return "ip"
	case KeyHeader:
		s = "header:" + k.Name
	case KeyCookie:
		s = "cookie:" + k.Name
	case KeyQuery:
		s = "query:" + k.Name
	default:
		return "none"
	}
	if k.Format == KeyNumber {
		s += " as number"
	}
	return s
}

// WithFormat returns k read in format f.
func (k KeySpec) WithFormat(f KeyFormat) KeySpec {
	if k.Source >= KeyHeader {
		k.Format = f
	}
	return k
}

// Read returns r's key for header, cookie and query sources in its canonical form, and
// whether it was found, missing or bad (see KeyStatus). Every filter reads keys through
// Read (or Hash), so that they all agree on who a user is. The slice belongs to the
// request. It allocates nothing.
func (k *KeySpec) Read(r *Request) ([]byte, KeyStatus) {
	var v []byte
	n := 0
	switch k.Source {
	case KeyHeader:
		// PeekAll reads the header lines as they are: VisitAll would make fasthttp
		// re-serialise the request's cookies for the upstream (see rawread.go).
		vs := r.Ctx.Request.Header.PeekAll(k.Name)
		if n = len(vs); n > 0 {
			v = vs[0]
		}
	case KeyCookie:
		v, n = r.Cookie(k.name)
	case KeyQuery:
		v, n = r.Query(k.name)
	default:
		return nil, KeyMissing
	}
	switch {
	case n > 1:
		return nil, KeyBad
	case len(v) == 0:
		return nil, KeyMissing
	case k.Format == KeyNumber:
		return CanonicalNumber(v, &r.keyBuf)
	}
	return v, KeyFound
}

// Bytes is Read reporting only whether a usable key was found.
//
// Deprecated: use Read, which tells a bad key from a missing one.
func (k *KeySpec) Bytes(r *Request) ([]byte, bool) {
	v, st := k.Read(r)
	return v, st == KeyFound
}

// CanonicalNumber reads v as a user number (see KeyNumber) and returns its canonical
// decimal form, written into buf when it differs from v.
func CanonicalNumber(v []byte, buf *[24]byte) ([]byte, KeyStatus) {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	if len(v) > 0 && v[0] == '+' {
		v = v[1:]
	}
	if len(v) == 0 {
		return nil, KeyBad
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return nil, KeyBad
		}
	}
	for len(v) > 1 && v[0] == '0' {
		v = v[1:]
	}
	if len(v) > 20 || (len(v) == 20 && string(v) > "18446744073709551615") {
		return nil, KeyBad
	}
	return append(buf[:0], v...), KeyFound
}

// Hash returns a 64-bit hash of r's canonical key (stable across processes and
// restarts) and what reading the key found. It allocates nothing.
func (k *KeySpec) Hash(r *Request) (uint64, KeyStatus) {
	switch k.Source {
	case KeyNone:
		return 0, KeyMissing
	case KeyIP:
		if !r.ClientIP.IsValid() {
			return 0, KeyMissing
		}
		a := r.ClientIP.As16()
		return xxhash.Sum64(a[:]), KeyFound
	}
	b, st := k.Read(r)
	if st != KeyFound {
		return 0, st
	}
	return xxhash.Sum64(b), KeyFound
}

// Mix combines a key hash with a salt into a well-spread 64-bit value (splitmix64), e.g.
// to draw a per-user, per-window sampling decision.
func Mix(h, salt uint64) uint64 {
	z := h ^ (salt + 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
