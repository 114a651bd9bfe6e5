package consul

import (
	"context"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestKVListerAgainstConsul: against a real agent, KVLister with a client made by
// NewClient decodes the answer itself (the body reached it, not the client's decoder) and
// lists exactly what the Consul client's own decoding lists - escaped characters, an
// empty value, binary and non-ASCII values, a session lock - before and after a change
// (the second read reuses the first's keys and values); an empty prefix lists nothing.
func TestKVListerAgainstConsul(t *testing.T) {
	itest.RequireIntegration(t)
	c := itest.StartConsul(t)
	cl, err := NewClient(ClientOptions{Addr: c.Addr})
	if err != nil {
		t.Fatal(err)
	}
	kv := cl.KV()
	prefix := "fg-lister/"
	for k, v := range map[string]string{"routes/a&b<c>/enabled": "false", "routes/a/timeout": "2s", "empty": "", "bin": "\x00\xff<&>\u2028", "ключ": "значение"} {
		c.Put(t, prefix+k, v)
	}
	sess, _, err := cl.Session().Create(&api.SessionEntry{TTL: "60s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := kv.Acquire(&api.KVPair{Key: prefix + "locked", Value: []byte("x"), Session: sess}, nil); !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	l := &KVLister{KV: kv}
	check := func(what string) {
		t.Helper()
		got, idx, err := l.List(context.Background(), prefix, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !l.sink.got {
			t.Fatalf("%s: the answer went to the client's decoder, not to kvDecoder", what)
		}
		if _, ok := (&kvDecoder{}).fast(l.sink.buf); !ok {
			t.Fatalf("%s: kvDecoder's own parse left consul's answer to encoding/json:\n%s", what, l.sink.buf)
		}
		pairs, meta, err := kv.List(prefix, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]KV, 0, len(pairs))
		for _, p := range pairs {
			want = append(want, KV{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex})
		}
		if diff := sameKVs(got, want); diff != "" || idx != meta.LastIndex {
			t.Fatalf("%s: %s (index %d, want %d)", what, diff, idx, meta.LastIndex)
		}
		t.Logf("%s: %d keys", what, len(got))
	}
	check("first read")
	c.Put(t, prefix+"routes/a/timeout", "3s")
	check("after a change")
	got, _, err := l.List(context.Background(), "fg-none/", 0, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty prefix: %v, %v", got, err)
	}
}
