// Command floodgate is the one binary of the floodgate admission gateway.
//
// Each subcommand lives in its own file of this package and registers itself in init()
// with register(); main dispatches on the first argument.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// command is one subcommand: its name, a one-line summary for the usage text, and run,
// which gets the arguments after the subcommand name and returns an error to print.
type command struct {
	name    string
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("floodgate: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

func usage() { usageTo(os.Stderr) }

// usageTo writes the usage text to w: stdout when help was asked for, stderr after a
// mistake.
func usageTo(w io.Writer) {
	fmt.Fprintf(w, "usage: floodgate <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'floodgate <command> -h' for the flags of one command.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usageTo(os.Stdout)
		return
	}
	if name == "-version" || name == "--version" {
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "floodgate: unknown command %q\n\n", name)
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintf(os.Stderr, "floodgate %s: %s\n", name, ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintf(os.Stderr, "floodgate %s: %v\n", name, err)
		os.Exit(1)
	}
}

// exitError ends the process with a given code (e.g. validate's 1 when problems were
// printed already, 2 for bad flags).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// newFlagSet returns a FlagSet for a subcommand that reports bad flags as errors naming
// the flag (flag.ContinueOnError) and prints examples under the flag list.
func newFlagSet(name, synopsis, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet("floodgate "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: floodgate %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintf(fs.Output(), "\nexamples:\n%s\n", examples)
		}
	}
	return fs
}

// parseFlags parses args and rejects positional leftovers, so a typo such as
// "-config=x extra" is an error rather than silently ignored.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if helpAsked(args) {
		fs.SetOutput(os.Stdout) // asked for: help goes to stdout (pipe it to less)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: 2}
	}
	if fs.NArg() > 0 {
		return exitError{code: 2, msg: fmt.Sprintf("unexpected argument %q (flags go before it?)", fs.Arg(0))}
	}
	return nil
}

// refuseExplicitZero is a usage error for any of names given explicitly as zero: for
// these flags zero stands for "the default", so "-rate 0" would silently run at the
// default rate. Leaving the flag out still gives the default.
func refuseExplicitZero(fs *flag.FlagSet, names ...string) error {
	var bad []string
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(names, f.Name) {
			return
		}
		zero := false
		switch v := f.Value.(flag.Getter).Get().(type) {
		case float64:
			zero = v == 0
		case int:
			zero = v == 0
		case int64:
			zero = v == 0
		case time.Duration:
			zero = v == 0
		}
		if zero {
			bad = append(bad, "-"+f.Name+" "+f.Value.String())
		}
	})
	if len(bad) > 0 {
		return exitError{code: 2, msg: fmt.Sprintf("%s: zero is not a value of these flags; leave a flag out for its default (see -h)", strings.Join(bad, ", "))}
	}
	return nil
}

// helpAsked reports whether args ask for help (-h, -help) before any "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--h", "--help":
			return true
		}
	}
	return false
}
