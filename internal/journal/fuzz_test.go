package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes (after some valid records) to Open as the newest
// segment. Open must not fail; the valid records before the fuzzed bytes must come
// back unchanged and first; recovery must be idempotent (a second Open finds nothing
// torn and returns the same records); and ReadDir must agree with Open.
func FuzzOpen(f *testing.F) {
	var valid []byte
	var want [][]byte
	for i, n := range []int{30, 0, 200} {
		p := payload(i, n)
		want = append(want, p)
		valid = appendRecord(valid, p)
	}
	f.Add([]byte{})
	f.Add(appendRecord(nil, payload(7, 40)))
	f.Add(appendRecord(nil, payload(7, 40))[:20])
	f.Add(append([]byte{1, 2, 3}, appendRecord(nil, payload(8, 10))...))
	f.Add(append(appendRecord(nil, payload(9, 10)), magic0, magic1, formatVersion, 0, 0xff, 0xff, 0xff, 0x7f))
	f.Add(bytes.Repeat([]byte{magic0, magic1, formatVersion, 0, 4, 0, 0, 0}, 20))
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), append(append([]byte(nil), valid...), tail...), 0o600); err != nil {
			t.Fatal(err)
		}
		j, rep, err := Open(Options{Dir: dir, Fsync: noSync})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		es, _, err := j.Pending(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
		if len(es) < len(want) || rep.Records != len(es) {
			t.Fatalf("%d records (report %d), want at least the %d valid ones", len(es), rep.Records, len(want))
		}
		equalPayloads(t, payloads(es[:len(want)]), want)

		j, rep2, err := Open(Options{Dir: dir, Fsync: noSync})
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		es2, _, _ := j.Pending(1 << 20)
		j.Close()
		if rep2.TornBytes != 0 || len(rep2.Quarantined) != len(rep.Quarantined) {
			t.Fatalf("second Open: report %+v after first %+v", rep2, rep)
		}
		equalPayloads(t, payloads(es2), payloads(es))

		es3, _, err := ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		equalPayloads(t, payloads(es3), payloads(es))
	})
}
