package grant

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sample() *Record {
	return &Record{
		ID: ID("grant", "k-1"), Route: "grant", Key: "k-1", Accepted: 1795509488442018118, Gateway: "vm-8080",
		Method: "POST", Path: "/grant", Query: "user=10001&prize=red",
		Headers: []Header{{"X-Request-Id", "abc"}, {"Content-Type", "application/x-www-form-urlencoded"}},
		Body:    []byte("note=hello"),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		desc string
		rec  *Record
	}{
		{"full record", sample()},
		{"no headers, no body", &Record{ID: "a-1", Route: "a", Method: "POST", Path: "/a"}},
		{"binary body", &Record{ID: "a-1", Route: "a", Body: []byte{0, 1, 2, 255, 'F', 'G'}}},
		{"long key", &Record{ID: ID("a", strings.Repeat("k", 5000)), Route: "a", Key: strings.Repeat("k", 5000)}},
	} {
		b := tc.rec.AppendBinary(nil)
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", tc.desc, err)
		}
		if !reflect.DeepEqual(got, tc.rec) {
			t.Errorf("%s: round trip changed the record:\n got %+v\nwant %+v", tc.desc, got, tc.rec)
		}
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	good := sample().AppendBinary(nil)
	// Every truncation and every single-byte change either fails or - where the byte is
	// inside a free-form field - decodes to a record that differs only in that field; it
	// never panics and never reads past the end.
	for i := 0; i < len(good); i++ {
		if _, err := Decode(good[:i]); err == nil {
			t.Fatalf("truncated at %d of %d: decoded", i, len(good))
		} else if !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated at %d: error %v does not wrap ErrFormat", i, err)
		}
		bad := bytes.Clone(good)
		bad[i] ^= 0xff
		Decode(bad) // must not panic
	}
	for _, tc := range []struct {
		desc string
		b    []byte
	}{
		{"empty", nil},
		{"wrong magic", append([]byte("XX"), good[2:]...)},
		{"future version", append([]byte{'F', 'G', 9}, good[3:]...)},
		{"trailing bytes", append(bytes.Clone(good), 0)},
		{"huge header count", append(bytes.Clone(good[:11]), 1, 'a', 1, 'a', 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)},
	} {
		if _, err := Decode(tc.b); err == nil {
			t.Errorf("%s: decoded", tc.desc)
		}
	}
}

func TestID(t *testing.T) {
	a, b := ID("grant", "k-1"), ID("grant", "k-1")
	if a != b {
		t.Fatalf("same key gave %q and %q", a, b)
	}
	if !strings.HasPrefix(a, "grant-") || len(a) != len("grant-")+32 {
		t.Fatalf("unexpected id shape %q", a)
	}
	for _, other := range []string{ID("grant", "k-2"), ID("grant2", "k-1"), ID("gran", "tk-1")} {
		if other == a {
			t.Errorf("different inputs share id %q", a)
		}
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = AppendID(buf[:0], "grant", "k-1") }); n != 0 {
		t.Errorf("AppendID allocates %.0f times", n)
	}
}

func TestField(t *testing.T) {
	r := &Record{Query: "user=10001&prize=red", Body: []byte("prize=blue&extra=1")}
	for _, tc := range []struct{ name, want string }{{"user", "10001"}, {"prize", "red"}, {"extra", "1"}, {"none", ""}} {
		if got := r.Field(tc.name); got != tc.want {
			t.Errorf("Field(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
