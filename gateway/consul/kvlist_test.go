package consul

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/hashicorp/consul/api"
)

// consulAnswer is a read of the prefix as Consul writes it: encoding/json of the
// pairs (Value base64, null when empty; <, > and & escaped).
func consulAnswer(t testing.TB, kvs ...KV) []byte {
	pairs := make([]*api.KVPair, 0, len(kvs))
	for i, kv := range kvs {
		pairs = append(pairs, &api.KVPair{Key: kv.Key, Value: kv.Value, ModifyIndex: kv.ModifyIndex, CreateIndex: uint64(i + 1), LockIndex: 0, Flags: 0})
	}
	b, err := json.Marshal(pairs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameKVs reports whether two decoded reads are equal, nil and empty values told apart.
func sameKVs(a, b []KV) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d keys, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].ModifyIndex != b[i].ModifyIndex || !bytes.Equal(a[i].Value, b[i].Value) || (a[i].Value == nil) != (b[i].Value == nil) {
			return fmt.Sprintf("entry %d: %q=%q@%d (nil %v), want %q=%q@%d (nil %v)", i, a[i].Key, a[i].Value, a[i].ModifyIndex, a[i].Value == nil, b[i].Key, b[i].Value, b[i].ModifyIndex, b[i].Value == nil)
		}
	}
	return ""
}

func TestKVDecode(t *testing.T) {
	for _, tc := range []struct {
		desc, body string
		want       []KV // nil with err
		err        string
		// std: left to encoding/json (kvDecoder's own parse does not take it)
		std bool
	}{
		{desc: "consul's answer", body: `[{"LockIndex":0,"Key":"fg/routes/a/enabled","Flags":0,"Value":"ZmFsc2U=","CreateIndex":12,"ModifyIndex":15},{"LockIndex":0,"Key":"fg/routes/a/timeout","Flags":0,"Value":"MnM=","CreateIndex":13,"ModifyIndex":13}]`,
			want: []KV{{Key: "fg/routes/a/enabled", Value: []byte("false"), ModifyIndex: 15}, {Key: "fg/routes/a/timeout", Value: []byte("2s"), ModifyIndex: 13}}},
		{desc: "an empty value is null; a folder key has none", body: `[{"Key":"fg/routes/","Value":null,"ModifyIndex":3},{"Key":"fg/active_plan","ModifyIndex":4}]`,
			want: []KV{{Key: "fg/routes/", ModifyIndex: 3}, {Key: "fg/active_plan", ModifyIndex: 4}}},
		{desc: "an empty string is an empty value", body: `[{"Key":"k","Value":""}]`, want: []KV{{Key: "k", Value: []byte{}}}},
		{desc: "escaped key and value (consul escapes <, > and &)", body: `[{"Key":"fg/a\u0026b\"\\","Value":"YTw+Yg\u003d\u003d","ModifyIndex":1}]`,
			want: []KV{{Key: "fg/a&b\"\\", Value: []byte("a<>b"), ModifyIndex: 1}}},
		{desc: "white space, other field order, a session and unknown fields", body: " [ {\"ModifyIndex\" : 7 ,\n\"Session\":\"s-1\",\"Value\":\"eA==\",\"New\":{\"a\":[1,-2.5e3,true,null,\"x\\n\"]},\"Key\":\"k\" } ]\n",
			want: []KV{{Key: "k", Value: []byte("x"), ModifyIndex: 7}}},
		{desc: "empty list", body: `[]`, want: []KV{}},
		{desc: "null (no keys)", body: `null`, want: []KV{}},
		{desc: "a field name in another case is the field (as encoding/json)", body: `[{"key":"k","value":"eA==","modifyindex":2}]`,
			want: []KV{{Key: "k", Value: []byte("x"), ModifyIndex: 2}}, std: true},
		{desc: "unicode key", body: `[{"Key":"fg/ключ","Value":null}]`, want: []KV{{Key: "fg/ключ"}}},
		{desc: "bad base64", body: `[{"Key":"k","Value":"eA="}]`, err: "illegal base64 data"},
		{desc: "a number where a value goes", body: `[{"Key":"k","Value":5}]`, err: "cannot unmarshal number into Go struct field KVPair.Value"},
		{desc: "a negative index", body: `[{"Key":"k","ModifyIndex":-1}]`, err: "cannot unmarshal number -1"},
		{desc: "the largest index", body: `[{"Key":"k","ModifyIndex":18446744073709551615,"CreateIndex":9999999999999999999}]`,
			want: []KV{{Key: "k", ModifyIndex: 18446744073709551615}}},
		{desc: "an index past 64 bits", body: `[{"Key":"k","ModifyIndex":18446744073709551616}]`, err: "cannot unmarshal number 18446744073709551616"},
		{desc: "a null entry", body: `[{"Key":"k"},null]`, err: "entry 1 is null"},
		{desc: "an object, not a list", body: `{"Key":"k"}`, err: "cannot unmarshal object"},
		{desc: "cut short", body: `[{"Key":"k","Value":"eA==`, err: "unexpected end of JSON input"},
		{desc: "text after the list", body: `[] x`, err: "invalid character 'x' after top-level value"},
		{desc: "empty body", body: ``, err: "unexpected end of JSON input"},
	} {
		var d kvDecoder
		got, err := d.decode([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "not a list of keys") {
				t.Errorf("%s: error %v, want one saying %q", tc.desc, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.desc, err)
			continue
		}
		if diff := sameKVs(got, tc.want); diff != "" {
			t.Errorf("%s: %s", tc.desc, diff)
		}
		if _, fast := (&kvDecoder{}).fast([]byte(tc.body)); fast == tc.std {
			t.Errorf("%s: decoded by kvDecoder's own parse %v, want %v", tc.desc, fast, !tc.std)
		}
		std, err := decodeKVsStd([]byte(tc.body))
		if err != nil || sameKVs(got, std) != "" {
			t.Errorf("%s: encoding/json says %v, %v", tc.desc, std, err)
		}
	}
}

// TestKVDecodeReuses: a read that lists the keys of the previous one keeps their strings,
// and the values whose bytes did not change; a changed value is new, and the previous
// read's values are not touched.
func TestKVDecodeReuses(t *testing.T) {
	first := []KV{{Key: "fg/routes/a/enabled", Value: []byte("true"), ModifyIndex: 5}, {Key: "fg/routes/b/enabled", Value: []byte("true"), ModifyIndex: 6}, {Key: "fg/routes/c/timeout", Value: []byte("2s"), ModifyIndex: 7}}
	var d kvDecoder
	r1, err := d.decode(consulAnswer(t, first...))
	if err != nil {
		t.Fatal(err)
	}
	second := []KV{first[0], {Key: "fg/routes/b/enabled", Value: []byte("false"), ModifyIndex: 9}, {Key: "fg/routes/bb/enabled", Value: []byte("true"), ModifyIndex: 8}, first[2]}
	r2, err := d.decode(consulAnswer(t, second...))
	if err != nil {
		t.Fatal(err)
	}
	if diff := sameKVs(r2, second); diff != "" {
		t.Fatal(diff)
	}
	for _, c := range []struct {
		desc       string
		now, was   KV
		key, value bool // shared with the previous read
	}{
		{"unchanged key", r2[0], r1[0], true, true},
		{"changed value", r2[1], r1[1], true, false},
		{"unchanged key after a new one", r2[3], r1[2], true, true},
	} {
		if got := unsafe.StringData(c.now.Key) == unsafe.StringData(c.was.Key); got != c.key {
			t.Errorf("%s: key shared %v, want %v", c.desc, got, c.key)
		}
		if got := unsafe.SliceData(c.now.Value) == unsafe.SliceData(c.was.Value); got != c.value {
			t.Errorf("%s: value shared %v, want %v", c.desc, got, c.value)
		}
	}
	if string(r1[1].Value) != "true" {
		t.Errorf("the previous read's value changed to %q", r1[1].Value)
	}
	// the same key, index and value count, not the index alone (a restored or new
	// cluster may give a key the index it had with another value)
	third := []KV{first[0], {Key: "fg/routes/b/enabled", Value: []byte("fals"), ModifyIndex: 9}}
	r3, err := d.decode(consulAnswer(t, third...))
	if err != nil {
		t.Fatal(err)
	}
	if diff := sameKVs(r3, third); diff != "" {
		t.Fatal(diff)
	}
}

// FuzzKVDecode: kvDecoder gives exactly what encoding/json gives (the Consul client's
// decoding), or an error where it errs, for any body - fresh, after a canonical read
// and after reading the same body (the reuse of the previous read's keys and values).
func FuzzKVDecode(f *testing.F) {
	f.Add([]byte(`[{"LockIndex":0,"Key":"fg/routes/a/enabled","Flags":0,"Value":"ZmFsc2U=","CreateIndex":12,"ModifyIndex":15}]`))
	f.Add([]byte(`[{"Key":"fg/a\u0026b","Value":"YTw+Yg\u003d\u003d","ModifyIndex":1},{"Key":"k","Value":null,"X":[{"y":1e5}]}]`))
	f.Add([]byte(`[{"key":"k","VALUE":"eA==","ModifyIndex":18446744073709551615,"Session":"s"}]`))
	f.Add([]byte(`[{"Key":"k","Value":"eA=","ModifyIndex":1.0}] `))
	f.Add([]byte("[{\"Key\":\"\xff\",\"\u212aey\":\"x\"},null]"))
	f.Add([]byte(`null`))
	canon := consulAnswer(f, KV{Key: "fg/routes/a/enabled", Value: []byte("false"), ModifyIndex: 15}, KV{Key: "k", Value: []byte("x"), ModifyIndex: 3})
	f.Add(canon)
	f.Fuzz(func(t *testing.T, body []byte) {
		want, werr := decodeKVsStd(body)
		for _, prime := range [][]byte{nil, canon, body} {
			var d kvDecoder
			if prime != nil {
				d.decode(prime)
			}
			got, err := d.decode(body)
			if (err == nil) != (werr == nil) {
				t.Fatalf("after %q: error %v, encoding/json's %v", prime, err, werr)
			}
			if err != nil {
				if !strings.HasSuffix(err.Error(), werr.Error()) {
					t.Fatalf("error %v, encoding/json's %v", err, werr)
				}
				continue
			}
			if diff := sameKVs(got, want); diff != "" {
				t.Fatalf("after %q: %s", prime, diff)
			}
		}
	})
}

// BenchmarkKVDecode: one read of 50,000 keys in which one value changed, by kvDecoder
// (after the previous read) and by encoding/json as the Consul client decodes it.
func BenchmarkKVDecode(b *testing.B) {
	kvs := scaleKVs(50000)
	before := consulAnswer(b, kvs...)
	kvs[7].Value, kvs[7].ModifyIndex = []byte("false"), 99999
	after := consulAnswer(b, kvs...)
	b.Logf("%d bytes", len(after))
	b.Run("kvDecoder", func(b *testing.B) {
		var d kvDecoder
		for range b.N {
			if _, err := d.decode(before); err != nil {
				b.Fatal(err)
			}
			if _, err := d.decode(after); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			for _, body := range [][]byte{before, after} {
				var pairs []*api.KVPair
				if err := json.Unmarshal(body, &pairs); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
