package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestSelfTestDoublesUntilMax(t *testing.T) {
	var seen []float64
	res, err := SelfTest(context.Background(), SelfTestOptions{StartRate: 100, MaxRate: 400, Step: 300 * time.Millisecond, Conns: 8,
		Progress: func(s SelfTestStep) { seen = append(seen, s.Rate) }})
	if err != nil && !strings.Contains(err.Error(), "could not hold") {
		t.Fatal(err)
	}
	if len(res.Steps) == 0 || len(seen) != len(res.Steps) || res.Steps[0].Rate != 100 {
		t.Fatalf("steps %+v, progress %v", res.Steps, seen)
	}
	for _, s := range res.Steps {
		if s.Achieved < s.Rate*0.9 || s.Failed != 0 {
			t.Errorf("step %+v: the in-process server did not answer", s)
		}
		if s.Rate > 400 {
			t.Errorf("went past MaxRate: %v", s.Rate)
		}
	}
	if err == nil && (res.MaxRate < 100 || res.MaxRate > 400) {
		t.Errorf("max rate %v", res.MaxRate)
	}
}
