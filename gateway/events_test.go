package gateway

import (
	"fmt"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
)

// TestEventsBounded: an event keeps at most MaxEventItems changes and errors and counts
// the rest, so 200 events of a 12k-entry plan toggle do not keep 2.4 million changes.
func TestEventsBounded(t *testing.T) {
	es := NewEvents(200)
	big := make([]config.Change, 12000)
	for i := range big {
		big[i] = config.Change{Path: fmt.Sprintf("routes.r%d.enabled", i)}
	}
	errs := make([]string, 500)
	es.Add(Event{Result: "applied", Changes: big})
	es.Add(Event{Result: "rejected", Errors: errs})
	got := es.List()
	if len(got[0].Changes) != MaxEventItems || got[0].ChangesOmitted != 12000-MaxEventItems || got[0].Changes[0].Path != "routes.r0.enabled" {
		t.Errorf("changes kept %d, omitted %d", len(got[0].Changes), got[0].ChangesOmitted)
	}
	if len(got[1].Errors) != MaxEventItems || got[1].ErrorsOmitted != 400 {
		t.Errorf("errors kept %d, omitted %d", len(got[1].Errors), got[1].ErrorsOmitted)
	}
	if cap(got[0].Changes) > 2*MaxEventItems {
		t.Errorf("the event keeps the whole backing array (cap %d)", cap(got[0].Changes))
	}
}
