package accept

import (
	"os"

	"github.com/floodgate/floodgate/internal/failpoint"
	"github.com/floodgate/floodgate/internal/journal"
)

// OpenJournal opens the local journal for the acceptor, with the crash-test failpoints
// around its fsync (journal.mid_write, journal.before_fsync, journal.after_fsync).
func OpenJournal(o journal.Options) (*journal.Journal, journal.Report, error) {
	sync := o.Fsync
	if sync == nil {
		sync = (*os.File).Sync
	}
	o.Fsync = func(f *os.File) error {
		failpoint.HitThen("journal.mid_write", func() {
			// what a crash in the middle of the write leaves: the tail of the last record
			// missing (the group's records were written with one write call)
			if fi, err := f.Stat(); err == nil && fi.Size() > 7 {
				f.Truncate(fi.Size() - 7)
			}
		})
		failpoint.Hit("journal.before_fsync")
		err := sync(f)
		if err == nil {
			failpoint.Hit("journal.after_fsync")
		}
		return err
	}
	return journal.Open(o)
}

// JournalAdapter makes a *journal.Journal the acceptor's Journal.
type JournalAdapter struct{ J *journal.Journal }

// Append implements Journal.
func (a JournalAdapter) Append(payloads ...[]byte) error { return a.J.Append(payloads...) }

// Pending implements Journal.
func (a JournalAdapter) Pending(max int) ([][]byte, func() error, error) {
	entries, cur, err := a.J.Pending(max)
	if err != nil || len(entries) == 0 {
		return nil, func() error { return nil }, err
	}
	out := make([][]byte, len(entries))
	for i, e := range entries {
		out[i] = e.Payload
	}
	return out, func() error { return a.J.Commit(cur) }, nil
}

// PendingRecords implements Journal.
func (a JournalAdapter) PendingRecords() int64 { return a.J.Stats().PendingRecords }
