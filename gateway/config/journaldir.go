package config

import (
	"os"
	"path/filepath"
	"strings"
)

// JournalDir is the directory of the local journal of the gateway this configuration
// describes: queue.journal.dir, or floodgate/journal-<server.listen> in the user cache
// directory (the gateway writes it; reconciliation reads it).
func (c *Config) JournalDir() string {
	if c.Queue.Journal.Dir != "" {
		return c.Queue.Journal.Dir
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "floodgate", "journal-"+strings.ReplaceAll(c.Server.Listen, ":", "_"))
}
