package consul

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/hashicorp/consul/api"
)

// kvDecoder decodes Consul's answer to a recursive read of the prefix - a JSON array of
// {"LockIndex", "Key", "Flags", "Value" (base64 or null), "CreateIndex", "ModifyIndex"
// and, on some agents, "Session", "Namespace", "Partition"} - into KVs. With 50,000 keys
// the answer is about 9.6 MB; encoding/json took about 140 ms of CPU to decode it and
// allocated every key and value again at every read.
//
// It works on the bytes and remembers the previous read: a key the previous read also
// listed keeps that read's string, and a value whose bytes did not change keeps that
// read's slice, so that a read in which one key changed allocates little beyond the list
// itself. The KVs it returns share their values with the previous read's: read-only.
//
// It is exact: the fast path understands the answer Consul writes (any field order,
// unknown fields skipped), and any input it does not fully understand - an escape in a
// field name, a number that is not a plain unsigned integer, a null element, a string
// that is not valid UTF-8, invalid base64, anything that is not JSON - is decoded again
// by encoding/json into api.KVPair, as the Consul client does, so that the result, or
// the error, is encoding/json's (FuzzKVDecode compares the two). Escaped keys and values
// (Consul escapes <, > and & as \u003c...) are unquoted by encoding/json one string at a
// time. One difference: text after the array is an error here, where the client's
// json.Decoder ignored it.
//
// Not safe for concurrent use (KVLister serializes its reads).
type kvDecoder struct {
	prev    []KV   // the previous read, in the order Consul listed it (key order)
	scratch []byte // a decoded value before it is compared with the previous read's
}

// decode parses one answer.
func (d *kvDecoder) decode(body []byte) ([]KV, error) {
	kvs, ok := d.fast(body)
	if !ok {
		var err error
		if kvs, err = decodeKVsStd(body); err != nil {
			return nil, fmt.Errorf("consul's answer to the read of the prefix (%d bytes) is not a list of keys: %w", len(body), err)
		}
	}
	d.prev = kvs
	return kvs, nil
}

// decodeKVsStd decodes an answer the way the Consul client does (encoding/json into
// []*api.KVPair), refusing null entries (the client would hand out a nil pair).
func decodeKVsStd(body []byte) ([]KV, error) {
	var pairs []*api.KVPair
	if err := json.Unmarshal(body, &pairs); err != nil {
		return nil, err
	}
	kvs := make([]KV, 0, len(pairs))
	for i, p := range pairs {
		if p == nil {
			return nil, fmt.Errorf("entry %d is null, not a key", i)
		}
		kvs = append(kvs, KV{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex})
	}
	return kvs, nil
}

// kvScanner is a position in an answer.
type kvScanner struct {
	b []byte
	i int
}

func (s *kvScanner) ws() {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return // compact JSON, as Consul writes it: no white space
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c (after white space) if it is next.
func (s *kvScanner) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// lit consumes the literal w (null, true, false) if it is next.
func (s *kvScanner) lit(w string) bool {
	s.ws()
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

// str consumes a string. raw is its content between the quotes when it has no escape
// (plain: valid UTF-8, no control character); otherwise tok is the whole quoted token
// for encoding/json to unquote. ok is false when no string is next or it is not closed
// or holds a control character or invalid UTF-8 (those are left to encoding/json).
func (s *kvScanner) str() (raw, tok []byte, ok bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, nil, false
	}
	start := s.i
	escaped, ascii := false, true
	for j := start + 1; j < len(s.b); j++ {
		if !strSpecial[s.b[j]] {
			continue // the common byte: nothing to look at
		}
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			if !ascii && !utf8.Valid(s.b[start+1:j]) {
				return nil, nil, false // encoding/json replaces invalid UTF-8
			}
			if escaped {
				return nil, s.b[start : j+1], true
			}
			return s.b[start+1 : j], nil, true
		case c == '\\':
			escaped = true
			j++ // the escaped byte cannot close the string
		case c < 0x20:
			return nil, nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, nil, false
}

// strSpecial marks the bytes str must look at: the quote, the backslash, control
// characters and non-ASCII bytes.
var strSpecial = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80
	}
	return t
}()

// uint consumes a JSON number that is a plain unsigned integer fitting 64 bits
// (ok is false for anything else, a fraction or an exponent included).
func (s *kvScanner) uint() (uint64, bool) {
	s.ws()
	j := s.i
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		j++
	}
	if j == s.i || j-s.i > 1 && s.b[s.i] == '0' || j < len(s.b) && (s.b[j] == '.' || s.b[j] == 'e' || s.b[j] == 'E') {
		return 0, false
	}
	var n uint64
	if j-s.i < 20 { // at most 19 digits: no overflow
		for _, c := range s.b[s.i:j] {
			n = n*10 + uint64(c-'0')
		}
	} else {
		var err error
		if n, err = strconv.ParseUint(unsafe.String(&s.b[s.i], j-s.i), 10, 64); err != nil {
			return 0, false
		}
	}
	s.i = j
	return n, true
}

// skip consumes one JSON value of any kind, checking its syntax; depth bounds nesting.
func (s *kvScanner) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, tok, ok := s.str()
		return ok && (tok == nil || json.Valid(tok))
	case c == '{':
		s.i++
		if s.eat('}') {
			return true
		}
		for {
			if _, tok, ok := s.str(); !ok || tok != nil && !json.Valid(tok) {
				return false
			}
			if !s.eat(':') || !s.skip(depth+1) {
				return false
			}
			if s.eat('}') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == '[':
		s.i++
		if s.eat(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

// number consumes a JSON number (its grammar, any size).
func (s *kvScanner) number() bool {
	b, j := s.b, s.i
	digits := func() bool {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > k
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case !digits():
		return false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if !digits() {
			return false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return false
		}
	}
	s.i = j
	return true
}

// kvFields are the fields of api.KVPair: a name that matches one of them only without
// regard to case would be that field for encoding/json, so the fast path leaves it to it.
var kvFields = []string{"Key", "CreateIndex", "ModifyIndex", "LockIndex", "Flags", "Value", "Session", "Namespace", "Partition"}

// fast is the decoder's own parse; ok is false for anything it leaves to encoding/json.
func (d *kvDecoder) fast(body []byte) (kvs []KV, ok bool) {
	s := &kvScanner{b: body}
	if s.lit("null") {
		s.ws()
		return nil, s.i == len(s.b)
	}
	if !s.eat('[') {
		return nil, false
	}
	kvs = make([]KV, 0, len(d.prev))
	prev, j := d.prev, 0 // the previous read, walked in step (both are in key order)
	if !s.eat(']') {
		for {
			if !s.eat('{') {
				return nil, false
			}
			var kv KV
			// every Key and Value is decoded where it stands (encoding/json reports a bad
			// one even when a later field of the same name replaces it); the last counts
			var keyRaw []byte // the key as it stands, when it has no escape
			var keyEsc string // the key unquoted, when it had one
			keyIsEsc := false
			const valNull, valEsc, valRaw = 0, 1, 2
			valKind := valNull // an absent Value is a nil one
			var valUnq []byte  // valEsc: the value unquoted and decoded
			valN := 0          // valRaw: d.scratch[:valN] is the value
			if !s.eat('}') {
				for {
					name, _, ok := s.str()
					if !ok || name == nil || !s.eat(':') {
						return nil, false // no field name, or one with an escape
					}
					switch string(name) {
					case "Key":
						if s.lit("null") {
							break // encoding/json leaves the field as it is
						}
						raw, tok, ok := s.str()
						if !ok {
							return nil, false
						}
						keyRaw, keyIsEsc = raw, tok != nil
						if keyIsEsc {
							if keyEsc, ok = unquote[string](tok); !ok {
								return nil, false
							}
						}
					case "Value":
						if s.lit("null") {
							valKind = valNull
							break
						}
						raw, tok, ok := s.str()
						if !ok {
							return nil, false
						}
						if tok != nil {
							if valUnq, ok = unquote[[]byte](tok); !ok {
								return nil, false
							}
							valKind = valEsc
							break
						}
						if n := base64.StdEncoding.DecodedLen(len(raw)); cap(d.scratch) < n {
							d.scratch = make([]byte, n)
						}
						n, err := base64.StdEncoding.Decode(d.scratch[:cap(d.scratch)], raw)
						if err != nil {
							return nil, false
						}
						valKind, valN = valRaw, n
					case "ModifyIndex", "CreateIndex", "LockIndex", "Flags":
						if s.lit("null") {
							break
						}
						n, ok := s.uint()
						if !ok {
							return nil, false
						}
						if string(name) == "ModifyIndex" {
							kv.ModifyIndex = n
						}
					case "Session", "Namespace", "Partition":
						if s.lit("null") {
							break
						}
						if _, tok, ok := s.str(); !ok || tok != nil && !json.Valid(tok) {
							return nil, false
						}
					default:
						for _, f := range kvFields {
							if strings.EqualFold(string(name), f) {
								return nil, false
							}
						}
						if !ascii(name) || !s.skip(0) {
							return nil, false // a non-ASCII name may fold onto a field (K, ſ)
						}
					}
					if s.eat('}') {
						break
					}
					if !s.eat(',') {
						return nil, false
					}
				}
			}
			// the key: the previous read's string when it listed the same key
			switch {
			case keyIsEsc:
				kv.Key = keyEsc
			case keyRaw != nil:
				k := unsafe.String(unsafe.SliceData(keyRaw), len(keyRaw)) // compared only
				for j < len(prev) && prev[j].Key < k {
					j++
				}
				if j < len(prev) && prev[j].Key == k {
					kv.Key = prev[j].Key
				} else {
					kv.Key = string(keyRaw)
				}
			}
			var same *KV // the previous read's entry for this key
			if j < len(prev) && prev[j].Key == kv.Key {
				same = &prev[j]
			}
			// the value: the previous read's slice when its bytes are the same
			switch valKind {
			case valEsc:
				kv.Value = valUnq
			case valRaw:
				v := d.scratch[:valN]
				if same != nil && same.Value != nil && bytes.Equal(same.Value, v) {
					kv.Value = same.Value
				} else {
					kv.Value = append(make([]byte, 0, valN), v...)
				}
			}
			kvs = append(kvs, kv)
			if s.eat(']') {
				break
			}
			if !s.eat(',') {
				return nil, false
			}
		}
	}
	s.ws()
	return kvs, s.i == len(s.b)
}

// unquote decodes one escaped JSON string token with encoding/json.
func unquote[T string | []byte](tok []byte) (T, bool) {
	var v T
	err := json.Unmarshal(tok, &v)
	return v, err == nil
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
