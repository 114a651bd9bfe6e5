// Package cputime measures CPU time for the benchmarks, which run on a machine shared
// with other work: the wall clock counts the time a benchmark waited for a CPU, CPU time
// does not.
package cputime

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Thread is the calling thread's CPU time (user + system; RUSAGE_THREAD).
func Thread() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Process is the whole process's CPU time (all threads: the loader, the GC).
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Loop runs a serial benchmark loop on one locked thread and reports, beside the
// wall-clock ns/op, its CPU time per op ("cpu-ns/op").
func Loop(b *testing.B, body func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := Thread()
	i := 0
	for b.Loop() {
		body(i)
		i++
	}
	if i > 0 {
		b.ReportMetric(float64(Thread()-start)/float64(i), "cpu-ns/op")
	}
}

// Parallel runs b.RunParallel and reports, beside the wall-clock ns/op, the process's
// CPU time per op ("cpu-ns/op": all threads, so on two cores an op that keeps both busy
// costs about twice its wall-clock ns/op; contention between the cores shows as more CPU
// per op). The process's other threads (the GC, a loader) count too: run it quiet.
func Parallel(b *testing.B, body func(pb *testing.PB)) {
	start := Process()
	b.RunParallel(body)
	b.StopTimer()
	if b.N > 0 {
		b.ReportMetric(float64(Process()-start)/float64(b.N), "cpu-ns/op")
	}
}
