package planner

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func nightNIC(t *testing.T) *Funnel {
	t.Helper()
	f, err := LoadFile(filepath.Join("..", "..", "configs", "funnel-night-nic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The night's NIC: the lottery backend's two 5.4 KB store reads per request are 2.07
// Gbit/s at the estimate (fits the 5.1 Gbit NIC) and 6.22 Gbit/s at x3 (does not).
func TestNightNICLinks(t *testing.T) {
	p, err := Compute(nightNIC(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		link     string
		calls    float64 // per second at the estimate
		out, in  float64 // bits/s at x3
		capacity float64
		status   Status
	}{
		// client->gateway: 24000 x (800, 1200) + 6000 x (900, 300) + 48000 x (700, 4000) + 48000 x (600, 100), x8 x3
		{"client->gateway", 126000, 3 * 8 * (24000*800 + 6000*900 + 48000*700 + 48000*600), 3 * 8 * (24000*1200 + 6000*300 + 48000*4000 + 48000*100), 40e9, OK},
		{"gateway->query", 24000, 3 * 8 * 24000 * 800, 3 * 8 * 24000 * 1200, 10e9, OK},
		// 24000 requests x 2 store calls x 5400 bytes x 8 = 2.0736 Gbit/s; x3 = 6.2208
		{"query->cmem", 48000, 3 * 8 * 48000 * 120, 3 * 8 * 48000 * 5400, 5.1e9, ShortOfMargin},
		{"gateway->delivery", 6000, 3 * 8 * 6000 * 900, 3 * 8 * 6000 * 300, 10e9, OK},
		{"gateway->content", 48000, 3 * 8 * 48000 * 700, 3 * 8 * 48000 * 4000, 10e9, OK},
		{"gateway->reporting", 48000, 3 * 8 * 48000 * 600, 3 * 8 * 48000 * 100, 1e9, OK},
	}
	if len(p.Links) != len(tests) {
		t.Fatalf("%d links, want %d: %+v", len(p.Links), len(tests), p.Links)
	}
	for i, tc := range tests {
		l := p.Links[i]
		if l.Name != tc.link || !near(l.Calls, tc.calls) || !near(l.Out, tc.out) || !near(l.In, tc.in) || l.Capacity != tc.capacity || l.Status != tc.status {
			t.Errorf("link %d: %s calls %v out %v in %v capacity %v %v;\nwant %s %v %v %v %v %v", i, l.Name, l.Calls, l.Out, l.In, l.Capacity, l.Status,
				tc.link, tc.calls, tc.out, tc.in, tc.capacity, tc.status)
		}
	}
	want := "CANNOT SUPPORT: query->cmem 6.22 Gbit/s at x3 > 5.1 Gbit/s"
	flagged := 0
	for _, w := range p.Warnings() {
		if strings.HasPrefix(w, "CANNOT SUPPORT: ") {
			flagged++
			if !strings.HasPrefix(w, want+" (the estimate, 2.07 Gbit/s, fits") {
				t.Errorf("warning %q, want %q...", w, want)
			}
		}
	}
	if flagged != 1 {
		t.Errorf("%d links or disks flagged, want 1 (the store's NIC): %q", flagged, p.Warnings())
	}

	// Storage: 6000 grants/s x3 x 400 bytes: 24.14 GiB an hour; 6h campaign, 12h backlog.
	if len(p.Storage) != 1 {
		t.Fatalf("storage %+v", p.Storage)
	}
	s := p.Storage[0]
	if s.Backend != "delivery" || !near(s.PerHour, 18000*400*3600) || !near(s.Campaign, 18000*400*6*3600) || !near(s.Backlog, 18000*400*12*3600) ||
		s.Disk != 500*(1<<30) || s.Status != OK {
		t.Errorf("storage %+v", s)
	}

	// The table, the emitted plan (as comments) and the JSON all say it.
	var table, plan, js bytes.Buffer
	if err := p.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"query->cmem", "6.22 Gbit/s", "5.1 Gbit/s  CANNOT SUPPORT: 6.22 Gbit/s at x3 > 5.1 Gbit/s", "144.84 GiB in 6h", "289.68 GiB in 12h", "ok (57.94% of the disk)", "!!! " + want} {
		if !strings.Contains(table.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, table.String())
		}
	}
	if err := p.WritePlan(&plan); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"# WARNING: " + want, "# link query->cmem: 6.22 Gbit/s at x3 of 5.1 Gbit/s: cannot support the margin\n", "# storage delivery: 289.68 GiB at x3 of 500 GiB disk: ok\n"} {
		if !strings.Contains(plan.String(), w) {
			t.Errorf("plan lacks %q:\n%s", w, plan.String())
		}
	}
	if err := p.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Links []struct {
			Name     string  `json:"name"`
			In       float64 `json:"in_bits_per_s_planned"`
			Capacity float64 `json:"capacity_bits_per_s"`
			Status   string  `json:"status"`
		} `json:"links"`
		Storage []struct {
			Backend string  `json:"backend"`
			Backlog float64 `json:"backlog_bytes_planned"`
			Status  string  `json:"status"`
		} `json:"storage"`
		Overrides map[string]any `json:"overrides"`
		Warnings  []string       `json:"warnings"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	if l := doc.Links[2]; l.Name != "query->cmem" || !near(l.In, 3*8*48000*5400) || l.Capacity != 5.1e9 || l.Status != "short_of_margin" {
		t.Errorf("JSON link %+v", l)
	}
	if doc.Links[0].Status != "ok" || doc.Storage[0].Status != "ok" || !near(doc.Storage[0].Backlog, 18000*400*12*3600) {
		t.Errorf("JSON %+v %+v", doc.Links[0], doc.Storage[0])
	}
	if doc.Overrides["routes/lottery/token_bucket/rate"] != float64(18000) || len(doc.Warnings) != 2 {
		t.Errorf("JSON overrides %v warnings %q", doc.Overrides["routes/lottery/token_bucket/rate"], doc.Warnings)
	}
}

// The seed's funnel gives no sizes: QPS only, and the table says how to plan the rest.
func TestSeedHasNoLinks(t *testing.T) {
	p, err := Compute(seed(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Links) != 0 || len(p.Storage) != 0 {
		t.Fatalf("links %+v storage %+v", p.Links, p.Storage)
	}
	var b bytes.Buffer
	p.WriteTable(&b)
	if !strings.Contains(b.String(), "Links: not planned") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestCapacityStatuses(t *testing.T) {
	base := func() *Funnel {
		return &Funnel{
			Channels: map[string]Channel{"c": {Exposures: 1000}},
			Steps:    []Step{{Name: "s", Conversion: 1}},
			Routes:   map[string]Route{"r": {Step: "s", RequestsPerVisitor: 1, Backend: "b", RequestBytes: 1000, ResponseBytes: 125_000}},
			Backends: map[string]Backend{"b": {Capacity: 1e6}},
		}
	}
	// 1000/s x 125000 B x 8 = 1 Gbit/s in at the estimate, 3 Gbit/s at x3.
	tests := []struct {
		desc   string
		edit   func(f *Funnel)
		link   string
		status Status
		warn   string
	}{
		{"fits x3", func(f *Funnel) { f.GatewayLink = "3Gbit" }, "client->gateway", OK, ""},
		{"fits the estimate only", func(f *Funnel) { f.GatewayLink = "2Gbit/s" }, "client->gateway", ShortOfMargin, "CANNOT SUPPORT: client->gateway 3 Gbit/s at x3 > 2 Gbit/s (the estimate, 1 Gbit/s, fits"},
		{"not even the estimate", func(f *Funnel) { f.GatewayLink = "500Mbit" }, "client->gateway", ShortOfEstimate, "CANNOT SUPPORT: client->gateway 3 Gbit/s at x3 > 500 Mbit/s (even the estimate, 1 Gbit/s, does not fit)"},
		{"bytes per second", func(f *Funnel) { f.GatewayLink = "0.25GB/s" }, "client->gateway", ShortOfMargin, "> 2 Gbit/s"},
		{"backend sizes override the route's", func(f *Funnel) {
			b := f.Backends["b"]
			b.Link, b.RequestBytes, b.ResponseBytes = "1Gbit", 100, 100
			f.Backends["b"] = b
		}, "gateway->b", OK, ""},
		{"backend link carries the route's sizes", func(f *Funnel) {
			b := f.Backends["b"]
			b.Link = "1Gbit"
			f.Backends["b"] = b
		}, "gateway->b", ShortOfMargin, "CANNOT SUPPORT: gateway->b 3 Gbit/s at x3 > 1 Gbit/s"},
		{"store calls per request", func(f *Funnel) {
			b := f.Backends["b"]
			b.Store = &Store{CallsPerRequest: 4, RequestBytes: 10, ResponseBytes: 1000, Link: "50Mbit"}
			f.Backends["b"] = b
		}, "b->store", ShortOfMargin, "CANNOT SUPPORT: b->store 96 Mbit/s at x3 > 50 Mbit/s"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			f := base()
			tc.edit(f)
			p, err := Compute(f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var l *LinkPlan
			for i := range p.Links {
				if p.Links[i].Name == tc.link {
					l = &p.Links[i]
				}
			}
			if l == nil {
				t.Fatalf("no link %s in %+v", tc.link, p.Links)
			}
			if l.Status != tc.status {
				t.Errorf("%s: %v, want %v (%+v)", tc.link, l.Status, tc.status, *l)
			}
			w := strings.Join(p.Warnings(), "\n")
			if tc.warn == "" && strings.Contains(w, "CANNOT SUPPORT") || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want %q", w, tc.warn)
			}
		})
	}
}

func TestStorageStatuses(t *testing.T) {
	tests := []struct {
		desc, duration, backlog, disk string
		perRequest                    float64
		status                        Status
		campaign                      float64
	}{
		// 100 req/s x 400 B (default) x 3600 s = 144 MB at the estimate, 432 MB at x3
		{"default bytes, fits", "1h", "", "1GB", 0, OK, 432e6},
		{"fits the estimate only", "1h", "", "200MB", 0, ShortOfMargin, 432e6},
		{"not even the estimate", "1h", "", "100MB", 0, ShortOfEstimate, 432e6},
		{"backlog is the larger", "1h", "5h", "1GB", 0, ShortOfMargin, 432e6},
		{"own bytes per request", "1h", "", "1GiB", 1000, ShortOfMargin, 1080e6},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			f := &Funnel{
				Duration: tc.duration, Backlog: tc.backlog,
				Channels: map[string]Channel{"c": {Exposures: 100}},
				Steps:    []Step{{Name: "s", Conversion: 1}},
				Routes:   map[string]Route{"grant": {Step: "s", RequestsPerVisitor: 1, Backend: "q"}},
				Backends: map[string]Backend{"q": {Capacity: 1e6, Storage: &Storage{BytesPerRequest: tc.perRequest, Disk: tc.disk}}},
			}
			p, err := Compute(f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s := p.Storage[0]
			if s.Status != tc.status || !near(s.Campaign, tc.campaign) || s.DefaultBytes != (tc.perRequest == 0) {
				t.Errorf("%+v, want %v campaign %v", s, tc.status, tc.campaign)
			}
			if flagged := strings.Contains(strings.Join(p.Warnings(), "\n"), "CANNOT SUPPORT: q storage"); flagged != (tc.status != OK) {
				t.Errorf("flagged %v for %v: %q", flagged, s.Status, p.Warnings())
			}
		})
	}
}

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{"5.1Gbit", 5.1e9}, {"10 Gbit/s", 10e9}, {"100Mbps", 100e6}, {"1.25GB/s", 10e9}, {"800 Kbit", 800e3}, {"1Tbit", 1e12},
		{"", 0}, {"fast", 0}, {"-1Gbit", 0}, {"0Gbit", 0}, {"5", 0}, {"NaNGbit", 0}, {"1 Gbyte", 0},
	} {
		got, err := ParseBandwidth(tc.in)
		if (err == nil) != (tc.want != 0) || !near(got, tc.want) {
			t.Errorf("ParseBandwidth(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestCapacityValidation(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "configs", "funnel-night-nic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc, from, to, want string
	}{
		{"bad link", "link: 5.1Gbit ", "link: 5.1Gbits ", `backends.query.store.link: not a bandwidth (want e.g. 5.1Gbit, 10Gbit/s, 1.25GB/s), got "5.1Gbits"`},
		{"bad gateway link", "gateway_link: 40Gbit", "gateway_link: lots", `gateway_link: not a bandwidth`},
		{"negative size", "response_bytes: 4000}", "response_bytes: -4000}", "routes.info.response_bytes: must be bytes between 0 and 1GiB, got -4000"},
		{"bad disk", "disk: 500GiB", "disk: 500 gigs", `backends.delivery.storage.disk: not a size (want e.g. 500GiB, 2TB), got "500 gigs"`},
		{"bad duration", "duration: 6h ", "duration: 6 hours ", `duration: not a duration (want e.g. 6h, 90m), got "6 hours"`},
		{"storage without a duration", "duration: 6h ", "# duration", "duration: storage is planned over the campaign's duration"},
		{"calls per request", "calls_per_request: 2", "calls_per_request: -2", "backends.query.store.calls_per_request: must be between 0 and 1000 (default 1), got -2"},
		{"store without sizes", "      request_bytes: 120\n      response_bytes: 5400\n", "", "backends.query.store: give the store call's request_bytes and response_bytes"},
		{"unknown field", "bytes_per_request: 400", "bytes_per_grant: 400", `unknown field "bytes_per_grant"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			src := strings.Replace(string(base), tc.from, tc.to, 1)
			if src == string(base) {
				t.Fatalf("%q not in the NIC funnel", tc.from)
			}
			if tc.desc == "storage without a duration" {
				src = strings.Replace(src, "backlog: 12h ", "# backlog ", 1)
			}
			_, err := Parse("nic.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "nic.yaml: line ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant a line and %q", err, tc.want)
			}
		})
	}
}
