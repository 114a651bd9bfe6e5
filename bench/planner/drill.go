package planner

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// DrillSize is one route's measured request and answer size (bytes on the
// client->gateway link, headers included), from a drill's JSON summary.
type DrillSize struct {
	Route         string
	RequestBytes  float64
	ResponseBytes float64
}

// ReadDrill reads the routes' sizes from the JSON summary of a drill (`floodgate bench
// -json FILE`: routes[].name, request_bytes, response_bytes). Routes that got no answer
// (sizes 0) are left out.
func ReadDrill(path string) ([]DrillSize, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s struct {
		Routes []struct {
			Name          string   `json:"name"`
			RequestBytes  *float64 `json:"request_bytes"`
			ResponseBytes *float64 `json:"response_bytes"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: not a drill summary (floodgate bench -json): %v", path, err)
	}
	if len(s.Routes) == 0 {
		return nil, fmt.Errorf("%s: no routes: not a drill summary (floodgate bench -json)", path)
	}
	var out []DrillSize
	for _, r := range s.Routes {
		if r.RequestBytes == nil || r.ResponseBytes == nil {
			return nil, fmt.Errorf("%s: route %q has no request_bytes/response_bytes (a summary from a floodgate bench that did not measure them)", path, r.Name)
		}
		if *r.RequestBytes > 0 || *r.ResponseBytes > 0 {
			out = append(out, DrillSize{Route: r.Name, RequestBytes: *r.RequestBytes, ResponseBytes: *r.ResponseBytes})
		}
	}
	return out, nil
}

// ApplyDrill gives the funnel's routes that state neither request_bytes nor
// response_bytes the sizes a drill measured on the route of the same name, and returns
// the names of the routes it sized, sorted. Sizes written in the funnel win.
func (f *Funnel) ApplyDrill(sizes []DrillSize) []string {
	var sized []string
	for _, d := range sizes {
		rt, ok := f.Routes[d.Route]
		if !ok || rt.RequestBytes != 0 || rt.ResponseBytes != 0 {
			continue
		}
		rt.RequestBytes, rt.ResponseBytes = d.RequestBytes, d.ResponseBytes
		f.Routes[d.Route] = rt
		sized = append(sized, d.Route)
	}
	sort.Strings(sized)
	return sized
}
