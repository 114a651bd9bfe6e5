package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/floodgate/floodgate/bench/planner"
)

func init() {
	register(command{name: "plan", summary: "capacity planner: per-route and per-tier limits from a funnel estimate", run: runPlan})
}

const planExamples = `  # the seed's funnel: limits per route and tier, backends that cannot support the need
  floodgate plan -funnel configs/funnel-seed.yaml

  # the same as a plan for Consul (flat path: value), ready for 'floodgate ctl plan put'
  floodgate plan -funnel configs/funnel-seed.yaml -emit plan -o midnight.yaml

  # as a config fragment to merge into the gateway's YAML, for 4 gateway instances
  floodgate plan -funnel configs/funnel-seed.yaml -emit config -instances 4

  # the night's NIC: bandwidth per link and storage per backend, and the plan as JSON
  floodgate plan -funnel configs/funnel-night-nic.yaml -json night-nic.json

  # request and response sizes measured by a drill instead of estimated
  floodgate bench -profile seed-night -rate 2000 -duration 20s -json night.json
  floodgate plan -funnel configs/funnel-night-nic.yaml -drill night.json

  # what if the campaign brings twice the margin, with a smaller burst?
  floodgate plan -funnel configs/funnel-seed.yaml -safety 6 -burst-ratio 0.1`

func runPlan(args []string) error {
	fs := newFlagSet("plan", "-funnel FILE [-emit table|plan|config] [flags]", planExamples)
	funnel := fs.String("funnel", "", "funnel YAML: channels with exposures/s, funnel steps, routes, backends (required; see configs/funnel-seed.yaml)")
	emit := fs.String("emit", "table", "what to print: table (for people), plan (flat Consul-relative path: value map for 'ctl plan put'),\nor config (the same limits as a nested routes: fragment of the gateway config)")
	out := fs.String("o", "", "write the output to this file instead of stdout")
	jsonOut := fs.String("json", "", "also write the whole plan (limits, links, storage, overrides, warnings) as JSON to this `FILE` (- for stdout, instead of -emit)")
	safety := fs.Float64("safety", 0, "safety factor: limits are the estimate times this (default: the funnel's, else 3)")
	instances := fs.Int("instances", 0, "gateway instances sharing the load; limits are per instance, rounded up (default: the funnel's, else 1)")
	burstRatio := fs.Float64("burst-ratio", -1, "token bucket burst as a share of the per-instance rate (default: the funnel's, else 0.2)")
	strict := fs.Bool("strict", false, "exit 1 when a backend cannot support the plan (after printing it)")
	drill := fs.String("drill", "", "a drill's JSON summary (floodgate bench -json): its routes' measured request and response sizes\nsize the funnel's routes of the same name that do not give request_bytes/response_bytes")
	capLimits := fs.Bool("cap", true, "cut the limits of routes whose backend cannot carry them to its capacity, core routes first;\n-cap=false emits estimate x safety factor regardless")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *funnel == "" {
		return exitError{code: 2, msg: "-funnel FILE is required (e.g. -funnel configs/funnel-seed.yaml; see -h)"}
	}
	switch *emit {
	case "table", "plan", "config":
	default:
		return exitError{code: 2, msg: fmt.Sprintf("-emit must be table, plan or config, got %q", *emit)}
	}
	if err := refuseExplicitZero(fs, "safety", "instances"); err != nil {
		return err
	}
	if *safety < 0 || *instances < 0 || (*burstRatio < 0 && *burstRatio != -1) {
		return exitError{code: 2, msg: "-safety, -instances and -burst-ratio must not be negative"}
	}
	f, err := planner.LoadFile(*funnel)
	if err != nil {
		return err
	}
	if *drill != "" {
		sizes, err := planner.ReadDrill(*drill)
		if err != nil {
			return err
		}
		sized := f.ApplyDrill(sizes)
		if len(sized) == 0 {
			fmt.Fprintf(os.Stderr, "-drill %s: no route of the funnel took its sizes (none without request_bytes/response_bytes shares a name with the drill's)\n", *drill)
		} else {
			fmt.Fprintf(os.Stderr, "-drill %s: request and response sizes measured for %s\n", *drill, strings.Join(sized, ", "))
		}
	}
	o := planner.Options{SafetyFactor: *safety, Instances: *instances, NoCap: !*capLimits}
	if *burstRatio >= 0 {
		o.BurstRatio = burstRatio
	}
	p, err := planner.Compute(f, o)
	if err != nil {
		return err
	}
	write := func(w io.Writer) error {
		switch *emit {
		case "plan":
			return p.WritePlan(w)
		case "config":
			return p.WriteConfig(w)
		default:
			return p.WriteTable(w)
		}
	}
	if *jsonOut != "" && *jsonOut == *out {
		return exitError{code: 2, msg: "-json and -o name the same file"}
	}
	jsonToStdout := *jsonOut == "-" && *out == ""
	switch {
	case *jsonOut == "-": // -o takes the -emit output
		if err := p.WriteJSON(os.Stdout); err != nil {
			return err
		}
	case *jsonOut != "":
		if err := writeOut(*jsonOut, p.WriteJSON); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "plan written to %s as JSON\n", *jsonOut)
	}
	switch {
	case jsonToStdout:
	case *out == "":
		if err := write(os.Stdout); err != nil {
			return err
		}
	default:
		if err := writeOut(*out, write); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "written to %s\n", *out)
	}
	// The YAML outputs carry the warnings as comments; say them on stderr too, where a
	// person piping the YAML somewhere still sees them.
	if *emit != "table" || *out != "" || jsonToStdout {
		for _, w := range p.Warnings() {
			fmt.Fprintf(os.Stderr, "!!! %s\n", w)
		}
	}
	if *strict {
		var short []string
		for _, b := range p.Backends {
			if b.Status != planner.OK {
				short = append(short, b.Name)
			}
		}
		if len(short) > 0 {
			return exitError{code: 1, msg: fmt.Sprintf("-strict: backend(s) %s cannot support the plan", strings.Join(short, ", "))}
		}
	}
	return nil
}
