package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/floodgate/floodgate/gateway/config"
)

func init() {
	register(command{name: "validate", summary: "check a configuration file offline (every problem, with file:line)", run: runValidate})
}

const validateExamples = `  floodgate validate -config configs/demo.yaml
  floodgate validate -config new.yaml && kill -HUP $(pidof floodgate)`

func runValidate(args []string) error {
	fs := newFlagSet("validate", "-config FILE", validateExamples)
	path := fs.String("config", "", "configuration file to check (required)")
	quiet := fs.Bool("q", false, "print nothing when the file is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return exitError{code: 2, msg: "-config is required"}
	}
	doc, err := config.ParseFile(*path)
	if err == nil {
		var cfg *config.Config
		cfg, err = config.Load(doc)
		if err == nil {
			if !*quiet {
				fmt.Printf("%s: valid (%d routes, %d pools)\n", *path, len(cfg.Routes), len(cfg.Pools))
			}
			return nil
		}
	}
	printConfigErrors(err)
	n := 1
	var ces config.Errors
	if errors.As(err, &ces) {
		n = len(ces)
	}
	fmt.Fprintf(os.Stderr, "%s: %d problem(s)\n", *path, n)
	return exitError{code: 1}
}
