package ratelimit

import "testing"

// TestFollow: a bucket carried over rebuilds keeps its tokens when the limit stays, and
// carries them through a change - through two changes too when no request came between
// them (the first handover never ran: the tokens are read under the limit they were
// counted under, not the one in between).
func TestFollow(t *testing.T) {
	type lim struct {
		rate  float64
		burst int64
	}
	for _, c := range []struct {
		desc   string
		limits []lim // the first holds the drained bucket; each next one is a rebuild
		held   int64 // tokens left in the first bucket
		want   int   // admitted at once after the last rebuild
	}{
		{desc: "no change: the same bucket", limits: []lim{{250, 250}, {250, 250}}, held: 200, want: 200},
		{desc: "burst cut: at most the new burst", limits: []lim{{250, 250}, {250, 25}}, held: 200, want: 25},
		{desc: "burst raised: no free burst", limits: []lim{{250, 25}, {250, 250}}, held: 20, want: 20},
		{desc: "two changes, no request between: read under the first limit", limits: []lim{{250, 250}, {250, 25}, {250, 100}}, held: 200, want: 100},
		{desc: "two changes back to the first limit", limits: []lim{{250, 250}, {250, 25}, {250, 250}}, held: 200, want: 200},
	} {
		now := 3 * s
		first := Follow(nil, 0, 0, c.limits[0].rate, c.limits[0].burst)
		l0 := NewLimit(c.limits[0].rate, c.limits[0].burst)
		for first.bucket.Tokens(now, l0) > c.held {
			first.bucket.Reserve(now, l0, 0)
		}
		cur := first
		for i := 1; i < len(c.limits); i++ {
			cur = Follow(&cur, c.limits[i-1].rate, c.limits[i-1].burst, c.limits[i].rate, c.limits[i].burst)
		}
		last := c.limits[len(c.limits)-1]
		l := NewLimit(last.rate, last.burst)
		got := 0
		for got <= int(last.burst)+1 {
			b, bl := cur.Pick(now, l, 1)
			if d := b.Reserve(now, bl, 0); !d.OK {
				break
			}
			got++
		}
		if got != c.want {
			t.Errorf("%s: %d admitted at once after the rebuilds, want %d", c.desc, got, c.want)
		}
	}
}
