package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestVersionStamped builds the binary as `make build` does, with the version given to
// -ldflags, and checks that `floodgate version` and `floodgate -version` print it.
func TestVersionStamped(t *testing.T) {
	itest.RequireIntegration(t)
	bin := filepath.Join(t.TempDir(), "floodgate")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/floodgate/floodgate/internal/version.Version=v0.0.0-stamp-test -X github.com/floodgate/floodgate/internal/version.Commit=0123456789abcdef0123", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "-version", "--version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "floodgate v0.0.0-stamp-test (0123456789ab) go1.") {
			t.Errorf("floodgate %s: %v %q, want the stamped version and commit", arg, err, out)
		}
	}
}
