// Package failpoint lets the crash tests kill a floodgate process with SIGKILL at a named
// step (kill -9 at every step, RELIABILITY.md): FLOODGATE_FAILPOINT=name kills the process
// the first time it reaches Hit(name), name@N the N-th time. Unset (production), Hit is one
// atomic load.
//
// Failpoint names in use (grep for failpoint.Hit):
//
//	gateway.before_publish   a batch of grants is about to be published to the queue
//	gateway.after_publish    the queue acknowledged a batch; the 202s are not yet written
//	journal.mid_write        half of a journal append is written, not yet synced
//	journal.before_fsync     a journal append is written, not yet synced
//	journal.after_fsync      a journal append is synced; the 202s are not yet written
//	replay.after_publish     replayed journal records are in the queue; checkpoint not moved
//	deliver.before_call      a grant is about to be sent to the delivery backend
//	deliver.after_call       the backend confirmed a grant; the queue is not yet acked
//	reconcile.mid_repair     reconciliation re-delivered some of the missing grants
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var (
	armed atomic.Bool
	name  string
	after int64
	hits  atomic.Int64
)

func init() {
	v := os.Getenv("FLOODGATE_FAILPOINT")
	if v == "" {
		return
	}
	name, after = v, 1
	if n, count, ok := strings.Cut(v, "@"); ok {
		c, err := strconv.ParseInt(count, 10, 64)
		if err != nil || c < 1 {
			os.Stderr.WriteString("FLOODGATE_FAILPOINT: want name or name@N (N >= 1), got " + strconv.Quote(v) + "\n")
			os.Exit(2)
		}
		name, after = n, c
	}
	armed.Store(true)
}

// Hit kills the process with SIGKILL if the armed failpoint is name and this is the
// armed hit.
func Hit(n string) { HitThen(n, nil) }

// HitThen is Hit, running before (if not nil) just before the kill: a test uses it to
// leave the state a crash at that point would leave (e.g. a half-written record).
func HitThen(n string, before func()) {
	if !armed.Load() || n != name {
		return
	}
	if hits.Add(1) == after {
		if before != nil {
			before()
		}
		os.Stderr.WriteString("failpoint " + n + ": SIGKILL\n")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns
	}
}
