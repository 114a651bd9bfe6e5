package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

const logsConfig = `
server: {listen: "{{LISTEN}}"}
admin: {listen: "{{ADMIN}}"}
log: {LOG}
access_log: {enabled: true, path: "{{ACCESS}}"}
pools: {q: {addrs: ["{{QUERY}}"], max_conns: 8}}
routes:
  lottery: {path: /lottery, pool: q, core: true}
`

// TestLogSettingsAndAccessLogReopen: the configuration's log section sets the process
// log's level and format at start and on a reload (SIGHUP), and SIGUSR1 reopens the
// access log after logrotate moved it.
func TestLogSettingsAndAccessLogReopen(t *testing.T) {
	itest.RequireIntegration(t)
	query, _ := itest.Backend(t, "query")
	access := filepath.Join(t.TempDir(), "access.log")
	cfg := func(log string) string {
		return strings.NewReplacer("{{QUERY}}", query, "{{ACCESS}}", access, "{LOG}", log).Replace(logsConfig)
	}
	g := itest.StartGateway(t, cfg("{level: warn}"))
	if out := g.Proc.Output(); strings.Contains(out, "floodgate gateway serving") {
		t.Errorf("log level warn from the file, yet an info line was written:\n%s", out)
	}

	// logrotate: move the file, SIGUSR1, and the next lines go to a new file
	itest.Get(t, g.URL("/lottery/one"))
	itest.WaitFor(t, "the first access log line", 30*time.Second, func() bool {
		b, _ := os.ReadFile(access)
		return strings.Contains(string(b), "/lottery/one")
	})
	if err := os.Rename(access, access+".1"); err != nil {
		t.Fatal(err)
	}
	g.Proc.Signal(syscall.SIGUSR1)
	itest.WaitFor(t, "the access log reopened", 30*time.Second, func() bool { _, err := os.Stat(access); return err == nil })
	itest.Get(t, g.URL("/lottery/two"))
	itest.WaitFor(t, "the next line in the new file", 30*time.Second, func() bool {
		b, _ := os.ReadFile(access)
		return strings.Contains(string(b), "/lottery/two")
	})
	if b, _ := os.ReadFile(access + ".1"); strings.Contains(string(b), "/lottery/two") {
		t.Errorf("a line recorded after SIGUSR1 went to the rotated file")
	}

	// a reload changes level and format: info lines again, in console format
	g.WriteConfig(t, cfg("{level: info, format: console}"))
	g.Proc.Signal(syscall.SIGHUP)
	itest.WaitFor(t, "the log settings change", 30*time.Second, func() bool {
		for _, line := range strings.Split(g.Proc.Output(), "\n") {
			if strings.Contains(line, "log settings changed") && !strings.HasPrefix(line, "{") && strings.Contains(line, "INFO") {
				return true
			}
		}
		return false
	})
}
