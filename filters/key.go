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

// KeySpec is a key source as written in configuration: "ip", "header:X-Uin",
// "cookie:uin", "query:uin", or "" / "none" for no key. It decodes from YAML or text.
type KeySpec struct {
	Source KeySource
	Name   string
	name   []byte
}

// ParseKeySpec parses the configuration syntax of KeySpec.
func ParseKeySpec(s string) (KeySpec, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "none":
		return KeySpec{}, nil
	case "ip":
		return KeySpec{Source: KeyIP}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return KeySpec{}, fmt.Errorf("key %q: want ip, header:NAME, cookie:NAME, query:NAME or none", s)
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
	return KeySpec{Source: src, Name: name, name: []byte(name)}, nil
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
	switch k.Source {
	case KeyIP:
		return "ip"
	case KeyHeader:
		return "header:" + k.Name
	case KeyCookie:
		return "cookie:" + k.Name
	case KeyQuery:
		return "query:" + k.Name
	}
	return "none"
}

// Bytes returns the raw key of r for header, cookie and query sources, and false when the
// request has none (or for KeyIP/KeyNone). The slice belongs to the request.
func (k *KeySpec) Bytes(r *Request) ([]byte, bool) {
	var v []byte
	switch k.Source {
	case KeyHeader:
		v = r.Ctx.Request.Header.PeekBytes(k.name)
	case KeyCookie:
		v = r.Ctx.Request.Header.CookieBytes(k.name)
	case KeyQuery:
		v = r.Ctx.QueryArgs().PeekBytes(k.name)
	default:
		return nil, false
	}
	return v, len(v) > 0
}

// Hash returns a 64-bit hash of r's key (stable across processes and restarts) and false
// when the request carries no key. It allocates nothing.
func (k *KeySpec) Hash(r *Request) (uint64, bool) {
	switch k.Source {
	case KeyNone:
		return 0, false
	case KeyIP:
		if !r.ClientIP.IsValid() {
			return 0, false
		}
		a := r.ClientIP.As16()
		return xxhash.Sum64(a[:]), true
	}
	b, ok := k.Bytes(r)
	if !ok {
		return 0, false
	}
	return xxhash.Sum64(b), true
}

// Mix combines a key hash with a salt into a well-spread 64-bit value (splitmix64), e.g.
// to draw a per-user, per-window sampling decision.
func Mix(h, salt uint64) uint64 {
	z := h ^ (salt + 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
