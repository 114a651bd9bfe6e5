package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestReadDir: ReadDir returns what Open would, ignores a torn tail and reports
// damage without changing a byte in the directory.
func TestReadDir(t *testing.T) {
	seg, offs, want := writeRecords(t, t.TempDir(), []int{100, 200, 300, 400})
	tests := []struct {
		desc    string
		data    []byte
		want    [][]byte
		torn    int64
		damaged int
	}{
		{desc: "clean", data: seg, want: want},
		{desc: "torn tail", data: seg[:len(seg)-7], want: want[:3], torn: int64(len(seg)) - 7 - offs[3]},
		{desc: "damaged middle", data: flip(seg, offs[1]+20), want: [][]byte{want[0], want[2], want[3]}, damaged: 1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, segmentName(1))
			os.WriteFile(path, tc.data, 0o600)
			es, rep, err := ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			equalPayloads(t, payloads(es), tc.want)
			var scanned [][]byte
			srep, err := ScanDir(dir, func(e Entry) error {
				scanned = append(scanned, append([]byte(nil), e.Payload...))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			equalPayloads(t, scanned, tc.want)
			if srep.Records != rep.Records || srep.TornBytes != rep.TornBytes || len(srep.Quarantined) != len(rep.Quarantined) {
				t.Fatalf("ScanDir report %+v, ReadDir report %+v", srep, rep)
			}
			stop := errors.New("enough")
			n := 0
			if _, err := ScanDir(dir, func(Entry) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
				t.Fatalf("ScanDir with fn failing: %v after %d calls, want fn's error after 1", err, n)
			}
			if rep.TornBytes != tc.torn || len(rep.Quarantined) != tc.damaged || rep.Records != len(tc.want) {
				t.Fatalf("report %+v, want %d torn bytes, %d damaged, %d records", rep, tc.torn, tc.damaged, len(tc.want))
			}
			ents, _ := os.ReadDir(dir)
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tc.data) || len(ents) != 1 {
				t.Fatalf("ReadDir changed the directory (%d entries)", len(ents))
			}
		})
	}
	if _, _, err := ReadDir(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("ReadDir of a missing directory: no error")
	}
}

// TestReadDirDuringAppends: while a Journal appends (rotating segments and committing),
// every ReadDir sees a consistent prefix of the appended sequence: from some record
// on, in order, with no gaps, nothing invented, and at least every record that had
// been acknowledged and not committed when ReadDir started.
func TestReadDirDuringAppends(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, Options{Dir: dir, SegmentBytes: 8 << 10})
	defer j.Close()
	const total = 3000
	var (
		mu    sync.Mutex
		acked int // records 0..acked-1 are acknowledged
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() { // the appender: record i is payload i
		defer wg.Done()
		for i := range total {
			if err := j.Append(payload(i, 150)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			acked = i + 1
			mu.Unlock()
		}
	}()
	wg.Add(1)
	go func() { // the replayer
		defer wg.Done()
		for {
			mu.Lock()
			done := acked == total
			mu.Unlock()
			es, cur, err := j.Pending(50)
			if err != nil {
				t.Error(err)
				return
			}
			if len(es) == 0 && done {
				return
			}
			if err := j.Commit(cur); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	for {
		mu.Lock()
		ackedBefore, finished := acked, acked == total
		mu.Unlock()
		es, _, err := ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if finished {
			break
		}
		if len(es) == 0 {
			continue // everything acknowledged was committed
		}
		var first int
		if _, err := fmt.Sscanf(string(es[0].Payload), "grant-%08d|", &first); err != nil {
			t.Fatalf("record %q is not a test payload", trim(es[0].Payload))
		}
		for k, e := range es {
			if !bytes.Equal(e.Payload, payload(first+k, 150)) {
				t.Fatalf("read %d: record %d is %q, want payload %d: not a prefix", reads, k, trim(e.Payload), first+k)
			}
		}
		if first+len(es) < ackedBefore {
			t.Fatalf("read %d: records up to %d, but %d were acknowledged before it started", reads, first+len(es), ackedBefore)
		}
	}
	wg.Wait()
	t.Logf("%d ReadDir calls overlapped %d appends", reads, total)
}
