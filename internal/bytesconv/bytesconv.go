// Package bytesconv holds the project's only unsafe conversions between []byte and
// string, used on the request path where a copy would allocate. Keep it tiny.
package bytesconv

import "unsafe"

// String returns b as a string without copying. The caller must not modify b while the
// string is in use, and must not keep the string after b's owner reuses it (for fasthttp:
// after the handler returns).
func String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// EqualFold reports whether a and b are equal under ASCII case folding (header names,
// hosts, tokens): bytes.EqualFold without its Unicode handling, allocation-free.
func EqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// TrimOWS returns b without the spaces and tabs around it (HTTP's optional whitespace).
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
