//go:build linux

package loadgen

import (
	"runtime"
	"syscall"
	"time"
)

// preciseSleep sleeps with nanosleep(2) on the pacer's own OS thread (lockPacerThread),
// which wakes within microseconds where a Go timer may overshoot by a millisecond when
// the process is idle. Only that thread blocks.
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}

const prSetTimerSlack = 29 // PR_SET_TIMERSLACK from <linux/prctl.h>

// lockPacerThread gives the calling goroutine an OS thread of its own for the rest of its
// life and narrows that thread's timer slack from the default 50 µs to 1 µs. The
// goroutine never unlocks, so the thread exits with it and the setting goes nowhere else.
func lockPacerThread() {
	runtime.LockOSThread()
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1000, 0)
}
