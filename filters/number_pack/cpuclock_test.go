package numberpack

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU is the calling thread's CPU time (user + system; RUSAGE_THREAD).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuLoop runs a serial benchmark loop on one locked thread and reports, beside the
// wall-clock ns/op, its CPU time per op ("cpu-ns/op"): on a machine shared with other
// work the wall clock counts the time the benchmark waited for a CPU, the thread's CPU
// time does not.
func cpuLoop(b *testing.B, body func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	i := 0
	for b.Loop() {
		body(i)
		i++
	}
	if i > 0 {
		b.ReportMetric(float64(threadCPU()-start)/float64(i), "cpu-ns/op")
	}
}

// processCPU is the whole process's CPU time (all threads: the loader, the GC).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
