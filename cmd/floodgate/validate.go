package main

import (
	"encoding/json"
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
	jsonOut := fs.Bool("json", false, "print the result as JSON on stdout: file, valid, routes, pools, problems (where, path, msg)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *jsonOut && *quiet {
		return exitError{code: 2, msg: "-json and -q: pick one"}
	}
	if *path == "" {
		fs.Usage()
		return exitError{code: 2, msg: "-config is required"}
	}
	doc, err := config.ParseFile(*path)
	if *jsonOut {
		return validateJSON(*path, doc, err)
	}
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

// validateJSON prints validate's result as JSON; the exit status is the same (1 when
// the file has problems).
func validateJSON(path string, doc *config.Document, err error) error {
	type result struct {
		File     string          `json:"file"`
		Valid    bool            `json:"valid"`
		Routes   int             `json:"routes,omitempty"`
		Pools    int             `json:"pools,omitempty"`
		Problems []*config.Error `json:"problems"`
	}
	r := result{File: path, Problems: []*config.Error{}}
	if err == nil {
		var cfg *config.Config
		if cfg, err = config.Load(doc); err == nil {
			r.Valid, r.Routes, r.Pools = true, len(cfg.Routes), len(cfg.Pools)
		}
	}
	if err != nil {
		var ces config.Errors
		if errors.As(err, &ces) {
			r.Problems = ces
		} else {
			r.Problems = []*config.Error{{Path: "", Msg: err.Error()}}
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	if !r.Valid {
		return exitError{code: 1}
	}
	return nil
}
