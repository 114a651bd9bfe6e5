package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/gateway"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/cputime"
	"github.com/floodgate/floodgate/internal/metrics"
)

// BenchmarkConsoleRead: what the console's once-a-second sampler costs with 10,000
// routes (each with a token bucket): read (the four families it shows) against a Gather
// of the whole registry (what it did before), in CPU ms per reading.
func BenchmarkConsoleRead(b *testing.B) {
	var y strings.Builder
	y.WriteString("pools:\n  q: {addrs: [127.0.0.1:8081]}\nroutes:\n")
	for i := range 10000 {
		fmt.Fprintf(&y, "  r%d: {path: /r%d, pool: q, filters: {token_bucket: {rate: 100}}}\n", i, i)
	}
	doc, err := config.Parse("scale.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	gw := gateway.New(gateway.Options{})
	if _, err := gateway.NewUpdater(gw, nil).Apply(gateway.Update{Source: "file", Doc: doc}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"read", func() error { _, err := read(); return err }},
		{"gather-all", func() error { _, err := metrics.Registry.Gather(); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			start := cputime.Process()
			for range b.N {
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cputime.Process()-start)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

func TestSamplePause(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		took, want time.Duration
	}{
		{"a quick sample: once a second", 2 * time.Millisecond, 998 * time.Millisecond},
		{"a tenth of a second: still once a second", 100 * time.Millisecond, 900 * time.Millisecond},
		{"a slow sample: a tenth of a core", 400 * time.Millisecond, 3600 * time.Millisecond},
	} {
		if got := samplePause(tc.took); got != tc.want {
			t.Errorf("%s: samplePause(%v) = %v, want %v", tc.desc, tc.took, got, tc.want)
		}
	}
}
