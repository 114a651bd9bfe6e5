package journal

import (
	"runtime"
	"testing"
)

// BenchmarkAppend measures acknowledged (fsynced) records per second with real fsyncs
// on the file system of the test's temp dir, 300-byte payloads: one appender, and 64
// concurrent appenders sharing fsyncs through group commit.
func BenchmarkAppend(b *testing.B) {
	p := payload(1, 300)
	report := func(b *testing.B, j *Journal) {
		st := j.Stats()
		b.ReportMetric(float64(st.Records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(st.Fsyncs)/float64(st.Records), "fsyncs/record")
	}
	b.Run("serial", func(b *testing.B) {
		j, _, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		b.SetBytes(int64(len(p)))
		b.ResetTimer()
		for b.Loop() {
			if err := j.Append(p); err != nil {
				b.Fatal(err)
			}
		}
		report(b, j)
	})
	b.Run("parallel64", func(b *testing.B) {
		j, _, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((64 + procs - 1) / procs)
		b.SetBytes(int64(len(p)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := j.Append(p); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, j)
	})
}

// fill makes a journal in dir holding n records of size bytes (fsyncs skipped: only
// reading is measured).
func fill(b *testing.B, dir string, n, size int) {
	b.Helper()
	j, _, err := Open(Options{Dir: dir, Fsync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	p := payload(1, size)
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = p
	}
	for i := 0; i < n; i += len(batch) {
		if err := j.Append(batch...); err != nil {
			b.Fatal(err)
		}
	}
	j.Close()
}

// BenchmarkOpen measures recovery: Open scans (and CRC-checks) every un-replayed
// record, 100,000 records of 300 bytes (31 MB) in one 64 MiB segment.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	const n = 100_000
	fill(b, dir, n, 300)
	b.SetBytes(n * (300 + headerSize))
	for b.Loop() {
		j, rep, err := Open(Options{Dir: dir})
		if err != nil || rep.Records != n {
			b.Fatalf("Open: %d records, %v", rep.Records, err)
		}
		j.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkReplay measures the replayer's side: Pending(1000) + Commit (a real
// checkpoint write: fsync, rename, directory fsync) until 100,000 records of 300 bytes
// are replayed, across 4 MiB segments that Commit deletes.
func BenchmarkReplay(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		j, _, err := Open(Options{Dir: dir, Fsync: noSync, SegmentBytes: 4 << 20})
		if err != nil {
			b.Fatal(err)
		}
		p := payload(1, 300)
		batch := make([][]byte, 100)
		for i := range batch {
			batch[i] = p
		}
		for i := 0; i < n; i += len(batch) {
			j.Append(batch...)
		}
		j.Close()
		j, _, err = Open(Options{Dir: dir, SegmentBytes: 4 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got := 0
		for {
			es, cur, err := j.Pending(1000)
			if err != nil {
				b.Fatal(err)
			}
			if len(es) == 0 {
				break
			}
			got += len(es)
			if err := j.Commit(cur); err != nil {
				b.Fatal(err)
			}
		}
		if got != n || j.Stats().Segments != 1 {
			b.Fatalf("replayed %d of %d, %d segments left", got, n, j.Stats().Segments)
		}
		j.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
