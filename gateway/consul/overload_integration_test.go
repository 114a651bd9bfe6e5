package consul_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestAdaptiveSwitchesThroughConsul: adaptive overload protection is switched like every
// other switch - on, with a pinned admission level, and off again - through Consul keys
// under pools/<pool>/adaptive/, against a real agent and a real gateway process.
func TestAdaptiveSwitchesThroughConsul(t *testing.T) {
	e := start(t)
	e.put(t, "active_plan", "")
	itest.WaitFor(t, "the first consul read", 30*time.Second, func() bool { return !ready(t, e.gw).Stale })
	// 768 = priority 3, tier 0, user 0: sheds the non-core routes (priority 2), not lottery (6)
	e.consul.Txn(t, map[string]string{
		e.prefix + "pools/query/adaptive/enabled":      "true",
		e.prefix + "pools/query/adaptive/pinned_level": "768",
	})
	itest.WaitFor(t, "info shed by the pinned level", 30*time.Second, func() bool { return verdict(t, e.gw, "/info") == "overload/shed" })
	if v := verdict(t, e.gw, "/lottery"); v != "" {
		t.Errorf("lottery (core, priority 6) verdict %q under a level of 768, want it proxied", v)
	}
	_, body, _ := itest.Get(t, e.gw.AdminURL("/overload"))
	var view struct {
		Pools []struct {
			Pool    string `json:"pool"`
			Enabled bool   `json:"enabled"`
			Pinned  bool   `json:"pinned"`
			Level   int    `json:"level"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(body), &view); err != nil || len(view.Pools) != 1 {
		t.Fatalf("/overload: %v\n%s", err, body)
	}
	if p := view.Pools[0]; p.Pool != "query" || !p.Enabled || !p.Pinned || p.Level != 768 {
		t.Errorf("/overload shows %+v, want query enabled, pinned at 768", p)
	}
	if got, want := sourceOf(t, e.gw, "pools.query.adaptive.pinned_level"), "768 from consul:"+e.prefix+"pools/query/adaptive/pinned_level"; got != want {
		t.Errorf("/config source = %q, want %q", got, want)
	}
	e.put(t, "pools/query/adaptive/enabled", "false")
	itest.WaitFor(t, "protection off", 30*time.Second, func() bool { return verdict(t, e.gw, "/info") == "" })
}
