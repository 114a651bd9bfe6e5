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
