package planner_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/bench/planner"
	_ "github.com/floodgate/floodgate/filters/all"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/gateway/consul"
)

// TestEmittedPlanValidatesOnTheDemoConfig: the plan `floodgate plan -emit plan` writes for
// the shipped funnels goes through exactly what `floodgate ctl -config configs/demo.yaml
// plan put` does before it stores a plan - the gateway's own plan parser and loader,
// composed as if the plan were active - and validates: the README's flow works on the
// shipped configuration.
func TestEmittedPlanValidatesOnTheDemoConfig(t *testing.T) {
	root := filepath.Join("..", "..")
	src, err := os.ReadFile(filepath.Join(root, "configs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Parse("configs/demo.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	for _, funnel := range []string{"funnel-seed.yaml", "funnel-night-nic.yaml"} {
		t.Run(funnel, func(t *testing.T) {
			f, err := planner.LoadFile(filepath.Join(root, "configs", funnel))
			if err != nil {
				t.Fatal(err)
			}
			p, err := planner.Compute(f, planner.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var plan bytes.Buffer
			if err := p.WritePlan(&plan); err != nil {
				t.Fatal(err)
			}
			c := &consul.Ctl{Doc: doc}
			kvs := []consul.KV{
				{Key: consul.DefaultPrefix + "active_plan", Value: []byte("")},
				{Key: consul.DefaultPrefix + "plans/night", Value: plan.Bytes()},
			}
			ev, err := c.Evaluate(kvs, "night")
			if err != nil {
				t.Fatalf("the emitted plan does not validate on configs/demo.yaml:\n%v\n%s", err, plan.String())
			}
			// every limit of the plan is in force in the composed configuration
			fromPlan := map[string]string{}
			for _, l := range ev.Config.Sources {
				if l.Source == "plan:night" {
					fromPlan[l.Path] = l.Value
				}
			}
			overrides := p.Overrides()
			for _, o := range overrides {
				parts := strings.Split(o.Path, "/")
				if len(parts) > 3 { // routes/<route>/<filter>/<param...>
					parts = append(parts[:2], append([]string{"filters"}, parts[2:]...)...)
				}
				path := strings.Join(parts, ".")
				if got, ok := fromPlan[path]; !ok || got != fmt.Sprint(o.Value) {
					t.Errorf("%s = %v in the plan, %q (set %v) in the composed configuration", o.Path, o.Value, got, ok)
				}
			}
			if len(overrides) == 0 || len(fromPlan) != len(overrides) {
				t.Errorf("%d limits in the plan, %d values from it in the composed configuration", len(overrides), len(fromPlan))
			}
		})
	}
}
