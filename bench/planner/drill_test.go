package planner

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/bench/loadgen"
	"github.com/floodgate/floodgate/bench/report"
)

// The sizes a drill measured (floodgate bench -json) size the funnel's routes that do
// not state theirs, and the bandwidth rows follow; sizes written in the funnel win.
func TestDrillSizes(t *testing.T) {
	// A drill's summary as `floodgate bench -json` writes it.
	res := &loadgen.Result{Profile: "seed-night", Routes: []*loadgen.RouteResult{
		{Name: "lottery", Sent: 10, RequestBytes: 800, ResponseBytes: 1200},
		{Name: "grant", Sent: 10, RequestBytes: 950, ResponseBytes: 310},
		{Name: "not_in_the_funnel", Sent: 10, RequestBytes: 1, ResponseBytes: 1},
		{Name: "report", Sent: 10}, // nothing answered: no sizes
	}, Lag: nil}
	var js bytes.Buffer
	if err := report.WriteJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "drill.json")
	if err := os.WriteFile(path, js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sizes, err := ReadDrill(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 {
		t.Fatalf("sizes %+v, want the 3 routes with answers", sizes)
	}

	f := nightNIC(t)
	rt := f.Routes["lottery"]
	rt.RequestBytes, rt.ResponseBytes = 0, 0 // measured, not written
	f.Routes["lottery"] = rt
	if sized := f.ApplyDrill(sizes); strings.Join(sized, ",") != "lottery" {
		t.Fatalf("sized %q, want lottery only (grant states its sizes, the others are not in the funnel)", sized)
	}
	if rt := f.Routes["grant"]; rt.RequestBytes != 900 || rt.ResponseBytes != 300 {
		t.Errorf("grant's written sizes were replaced: %+v", rt)
	}
	p, err := Compute(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l := p.Links[1]; l.Name != "gateway->query" || !near(l.Out, 3*8*24000*800) || !near(l.In, 3*8*24000*1200) {
		t.Errorf("gateway->query from the drill's sizes: %+v", l)
	}
}

func TestReadDrillErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc, content, want string
	}{
		{"not JSON", "routes: []", "not a drill summary"},
		{"no routes", `{"profile":"x"}`, "no routes"},
		{"a summary without sizes", `{"routes":[{"name":"a","sent":3}]}`, `route "a" has no request_bytes/response_bytes`},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, "d.json")
		os.WriteFile(p, []byte(tc.content), 0o644)
		if _, err := ReadDrill(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.desc, err, tc.want)
		}
	}
}
