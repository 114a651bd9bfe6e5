package filtertest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/filters"
)

// TestNameProblems: the kit's config_names check flags what /config would show under a
// name the configuration does not use, and accepts the built-in way of tagging.
func TestNameProblems(t *testing.T) {
	type inner struct {
		Rate  float64 `yaml:"rate" json:"rate"`
		Burst int64   `yaml:"burst"`
	}
	type good struct {
		AllowMethods []string         `yaml:"allow_methods" json:"allow_methods"`
		Window       filters.Duration `yaml:"window" json:"window"`
		Key          filters.KeySpec  `yaml:"key" json:"key"`
		Tiers        map[string]*struct {
			Rate float64 `yaml:"rate" json:"rate,omitempty"`
		} `yaml:"tiers" json:"tiers"`
		Status   int    `json:"status"` // yaml name: status
		internal string // unexported: neither decoded nor shown
		Hidden   string `yaml:"-" json:"-"`
	}
	type bad struct {
		AllowMethods []string         `yaml:"allow_methods"`
		Ratio        float64          `yaml:"ratio" json:"Ratio"`
		Tiers        map[string]inner `yaml:"tiers" json:"tiers"`
		Derived      int              `yaml:"-"`
	}
	if got := nameProblems(reflect.TypeOf(&good{}), "good", map[reflect.Type]bool{}); len(got) != 0 {
		t.Errorf("good: %q", got)
	}
	got := nameProblems(reflect.TypeOf(&bad{}), "bad", map[reflect.Type]bool{})
	want := []string{
		`bad.AllowMethods: /config shows "AllowMethods", the configuration calls it "allow_methods"`,
		`bad.Ratio: /config shows "Ratio", the configuration calls it "ratio"`,
		`bad.tiers.Burst: /config shows "Burst", the configuration calls it "burst"`,
		`bad.Derived: not configurable`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %q, want %q...", i, got[i], want[i])
		}
	}
}
