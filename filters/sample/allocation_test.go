//go:build !race

package sample_test

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/filters/filtertest"
)

func TestNoAllocs(t *testing.T) {
	for _, tc := range []struct{ desc, yaml, uri string }{
		{"kept and dropped users", "ratio: 0.5", "/info?uin=10001"},
		{"keyless", "ratio: 0.5", "/info"},
		{"header key", "{ratio: 0.5, key: header:X-Uin}", "/info"},
		{"ip key", "{ratio: 0.5, key: ip}", "/info"},
		{"ratio 0", "ratio: 0", "/info?uin=10001"},
	} {
		f := filtertest.Build(t, "sample", tc.yaml, nil)
		r := filtertest.NewRequest(t, filtertest.Req{URI: tc.uri, Headers: map[string]string{"X-Uin": "10001"}, Wall: t0})
		i := 0
		filtertest.AssertNoAllocsFunc(t, func() {
			i++
			filtertest.SetQueryUint(r, "uin", uint64(10001+i))
			r.Now += int64(time.Millisecond)
			r.Wall += int64(time.Second)
			f.Decide(r)
		})
	}
}
