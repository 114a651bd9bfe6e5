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
