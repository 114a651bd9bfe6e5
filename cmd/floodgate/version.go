package main

import (
	"fmt"

	"github.com/floodgate/floodgate/internal/version"
)

func init() {
	register(command{name: "version", summary: "print the version this binary was built as", run: runVersion})
}

// runVersion prints the version stamped at build time (make build passes it with
// -ldflags; see internal/version) and the Go version. `floodgate -version` does the same.
func runVersion(args []string) error {
	fs := newFlagSet("version", "", "  floodgate version\n  floodgate -version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Printf("floodgate %s %s\n", version.String(), version.Go())
	return nil
}
