// Package version holds the build's version, stamped at build time by the Makefile:
//
//	go build -ldflags "-X github.com/floodgate/floodgate/internal/version.Version=v1.2.3"
//
// A binary built without the flag reports the module version Go recorded (a tagged
// `go install`), or "devel" plus the VCS revision when known.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set with -ldflags -X at build time.
var Version = ""

// Commit is set with -ldflags -X at build time (the git revision).
var Commit = ""

// String returns the version, falling back to what the Go toolchain recorded.
func String() string {
	v, c := Version, Commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if c == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if c != "" && len(c) > 12 {
		c = c[:12]
	}
	return v + revision(c)
}

func revision(c string) string {
	if c == "" {
		return ""
	}
	return " (" + c + ")"
}

// Go returns the Go version the binary was built with.
func Go() string { return runtime.Version() }
