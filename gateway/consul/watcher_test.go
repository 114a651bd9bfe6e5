package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/floodgate/floodgate/gateway"
)

// The watcher's rules, driven by a scripted Lister and a clock that moves only when the
// script says so (consul-template's watch/view_test.go does the same with a fake
// dependency). Every row is a sequence of reads; the watcher's actions are recorded in
// one log and compared whole:
//
//	read@N        a List call with wait index N
//	sleep D       the watcher waited D (back-off, or the minimum interval)
//	apply K=V,..  an update applied, with its overrides ("-": none)
//	hold/reject   an update held for confirmation / rejected whole
//	held/released the hold reason set / cleared (OnHeld)
//	stale(why)/fresh  the stale reason set / cleared (OnStale)

// fakeClock is a clock that moves only by Sleep and by the reads' durations.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	log    func(string)
}

type fakeTimer struct {
	at     time.Time
	cancel context.CancelFunc
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	c.log(fmt.Sprintf("sleep %s", d))
	c.advance(d)
	return ctx.Err() == nil
}

func (c *fakeClock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), cancel: cancel})
	c.mu.Unlock()
	return cctx, cancel
}

// advance moves the clock and fires the deadlines it passes.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []fakeTimer
	var fire []context.CancelFunc
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			fire = append(fire, t.cancel)
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, f := range fire {
		f()
	}
}

// read is one scripted answer of the fake Lister.
type read struct {
	took  time.Duration // how long the read takes (past its deadline it fails as a hung agent's read does)
	index uint64        // X-Consul-Index of the answer
	kvs   []KV
	err   error
}

type fakeLister struct {
	clock *fakeClock
	reads []read
	stop  context.CancelFunc // ends the run when the script is used up
	log   func(string)
}

func (l *fakeLister) List(ctx context.Context, prefix string, index uint64, wait time.Duration) ([]KV, uint64, error) {
	l.log(fmt.Sprintf("read@%d", index))
	if wait != 10*time.Second || prefix != "floodgate/" {
		return nil, 0, fmt.Errorf("list(%q, wait %s): want floodgate/ and the WaitTime", prefix, wait)
	}
	if len(l.reads) == 0 {
		l.stop()
		return nil, 0, ctx.Err()
	}
	r := l.reads[0]
	l.reads = l.reads[1:]
	l.clock.advance(r.took)
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("Get \"http://127.0.0.1:8500/v1/kv/floodgate/\": %w", err)
	}
	return r.kvs, r.index, r.err
}

type fakeUpdater struct{ log func(string) }

func (u fakeUpdater) Apply(up gateway.Update) (uint64, error) {
	var parts []string
	for _, o := range *up.Overrides {
		parts = append(parts, strings.TrimPrefix(o.Path, "routes/")+"="+o.Value)
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		parts = []string{"-"}
	}
	u.log("apply " + strings.Join(parts, ","))
	return 1, nil
}
func (u fakeUpdater) Reject(source, note string, err error) { u.log("reject") }
func (u fakeUpdater) Hold(source, msg string)               { u.log("hold") }

// keys makes the content of the prefix from "route/field=value" pairs (routes/...), or
// "plans/name=doc" and "active_plan=name".
func keys(pairs ...string) []KV {
	var out []KV
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		if !strings.HasPrefix(k, "plans/") && !strings.HasPrefix(k, "audit/") && k != "active_plan" && k != "confirm" && !strings.HasPrefix(k, "nope") {
			k = "routes/" + k
		}
		out = append(out, KV{Key: "floodgate/" + k, Value: []byte(v)})
	}
	return out
}

// confirmed is kvs with the confirm key an operator writes to apply exactly kvs.
func confirmed(kvs []KV) []KV {
	s, err := Convert("floodgate/", kvs)
	if err != nil {
		panic(err)
	}
	return append(append([]KV(nil), kvs...), KV{Key: "floodgate/confirm", Value: []byte(s.Fingerprint)})
}

func TestWatcherRules(t *testing.T) {
	four := keys("a/enabled=true", "b/enabled=true", "c/enabled=true", "d/enabled=true")
	applyFour := "apply a/enabled=true,b/enabled=true,c/enabled=true,d/enabled=true"
	one := keys("a/enabled=false")
	two := keys("a/enabled=false", "b/enabled=false")
	three := keys("a/enabled=false", "b/enabled=false", "c/timeout=1s")
	forbidden := api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}
	refused := errors.New(`Get "http://127.0.0.1:8500/v1/kv/floodgate/": dial tcp 127.0.0.1:8500: connect: connection refused`)
	for _, tc := range []struct {
		desc  string
		seed  []KV // what the gateway serves from its snapshot before the first read
		reads []read
		want  []string
	}{
		{desc: "the first read applies; an unchanged index is no change",
			reads: []read{{index: 5, kvs: one}, {index: 5, kvs: one}},
			want:  []string{"read@0", "apply a/enabled=false", "read@5", "read@5"}},
		{desc: "a new index with the content in force applies nothing (only an audit record was added)",
			reads: []read{{index: 5, kvs: one}, {index: 9, kvs: append(keys("audit/1-bob={}"), one...)}},
			want:  []string{"read@0", "apply a/enabled=false", "read@5", "read@9"}},
		{desc: "an index that goes backwards is reset: the answer is fresh data and the next read starts over",
			reads: []read{{index: 50, kvs: one}, {index: 20, kvs: two}, {index: 21, kvs: two}},
			want:  []string{"read@0", "apply a/enabled=false", "read@50", "sleep 100ms", "apply a/enabled=false,b/enabled=false", "read@1", "read@21"}},
		{desc: "an index that goes backwards with the same content applies nothing",
			reads: []read{{index: 50, kvs: one}, {index: 3, kvs: one}},
			want:  []string{"read@0", "apply a/enabled=false", "read@50", "read@1"}},
		{desc: "applied updates are at least the minimum interval apart; a slow read counts toward it",
			reads: []read{{index: 5, kvs: one}, {index: 6, kvs: two, took: 30 * time.Millisecond}, {index: 7, kvs: three, took: time.Second}},
			want:  []string{"read@0", "apply a/enabled=false", "read@5", "sleep 70ms", "apply a/enabled=false,b/enabled=false", "read@6", "apply a/enabled=false,b/enabled=false,c/timeout=1s", "read@7"}},
		{desc: "an empty read is held once, kept held, and applied when an operator confirms exactly it",
			reads: []read{{index: 5, kvs: one}, {index: 6}, {index: 7, kvs: keys("audit/1-bob={}")}, {index: 8, kvs: confirmed(nil), took: time.Second}},
			want: []string{"read@0", "apply a/enabled=false", "read@5", "held", "hold", "read@6", "read@7",
				"apply -", "released", "read@8"}},
		{desc: "a confirmation of other content does not release the hold",
			reads: []read{{index: 5, kvs: one}, {index: 6, kvs: confirmed(two)[2:]}},
			want:  []string{"read@0", "apply a/enabled=false", "read@5", "held", "hold", "read@6"}},
		{desc: "most keys removed at once is held; the content coming back releases it with nothing applied",
			reads: []read{{index: 5, kvs: four}, {index: 6, kvs: one}, {index: 7, kvs: four}},
			want:  []string{"read@0", applyFour, "read@5", "held", "hold", "read@6", "released", "read@7"}},
		{desc: "a confirm key present at the first read is spent: it approves no later wipe",
			reads: []read{{index: 5, kvs: append(confirmed(nil), one...)}, {index: 6, kvs: confirmed(nil)}},
			want:  []string{"read@0", "apply a/enabled=false", "read@5", "held", "hold", "read@6"}},
		{desc: "a confirmation approves one held update only: the same wipe later is held again",
			reads: []read{{index: 5, kvs: one}, {index: 6, kvs: confirmed(nil), took: time.Second},
				{index: 7, kvs: append(confirmed(nil), one...), took: time.Second}, {index: 8, kvs: confirmed(nil)}},
			want: []string{"read@0", "apply a/enabled=false", "read@5", "apply -", "read@6", "apply a/enabled=false", "read@7",
				"held", "hold", "read@8"}},
		{desc: "a snapshot seeds the poisoned-read check: an empty first read is held",
			seed:  one,
			reads: []read{{index: 5}},
			want:  []string{"stale(seed)", "read@0", "fresh", "held", "hold", "read@5"}},
		{desc: "keys that do not convert are rejected whole and nothing is applied",
			reads: []read{{index: 5, kvs: one}, {index: 6, kvs: append(keys("nope/x=1"), two...)}},
			want:  []string{"read@0", "apply a/enabled=false", "read@5", "reject", "read@6"}},
		{desc: "back-off after errors doubles up to its cap, and starts again from the minimum after a success",
			reads: []read{{err: refused}, {err: refused}, {err: refused}, {err: refused}, {index: 5, kvs: one}, {err: refused}},
			want: []string{"read@0", "stale(unreachable)", "sleep 500ms", "read@0", "sleep 1s", "read@0", "sleep 2s", "read@0", "sleep 2s",
				"read@0", "fresh", "apply a/enabled=false", "read@5", "stale(unreachable)", "sleep 500ms", "read@5"}},
		{desc: "a refused token is told apart from an unreachable agent",
			reads: []read{{err: forbidden}},
			want:  []string{"read@0", "stale(forbidden)", "sleep 500ms", "read@0"}},
		{desc: "a blocking read that outlives WaitTime + jitter + grace is abandoned and marks the source stale",
			reads: []read{{index: 5, kvs: one}, {index: 6, kvs: two, took: 12 * time.Second}, {took: 13 * time.Second}, {index: 7, kvs: three}},
			want: []string{"read@0", "apply a/enabled=false", "read@5", "apply a/enabled=false,b/enabled=false", "read@6",
				"stale(hung)", "sleep 500ms", "read@6", "fresh", "apply a/enabled=false,b/enabled=false,c/timeout=1s", "read@7"}},
		{desc: "a first read (index 0) should answer at once: after the grace it is abandoned",
			reads: []read{{took: 3 * time.Second}, {index: 5, kvs: one}},
			want:  []string{"read@0", "stale(hung)", "sleep 500ms", "read@0", "fresh", "apply a/enabled=false", "read@5"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var got []string
			logf := func(s string) { got = append(got, s) }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), log: logf}
			w := NewWatcher(Options{
				Lister: &fakeLister{clock: clock, reads: tc.reads, stop: cancel, log: logf},
				Clock:  clock, BackoffMax: 2 * time.Second,
				OnStale: func(reason string) {
					switch {
					case reason == "":
						logf("fresh")
					case strings.Contains(reason, "no answer within"):
						logf("stale(hung)")
					case strings.Contains(reason, "refused the token"):
						logf("stale(forbidden)")
					case strings.HasPrefix(reason, "consul unreachable"):
						logf("stale(unreachable)")
					case reason == "seeded":
						logf("stale(seed)")
					default:
						logf("stale(" + reason + ")")
					}
				},
				OnHeld: func(reason string) {
					if reason == "" {
						logf("released")
					} else {
						logf("held")
					}
				},
			})
			w.jitter = func(n int64) int64 { return n - 1 } // the top of the jitter range: the full back-off
			if tc.seed != nil {
				s, err := Convert("floodgate/", tc.seed)
				if err != nil {
					t.Fatal(err)
				}
				w.Seed(s, "seeded")
			}
			w.run(ctx, fakeUpdater{log: logf})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("watcher did:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestBackoffJitter: each wait lies in [d/2, d] of the capped exponential d, so that
// gateways that lost Consul together do not come back in step.
func TestBackoffJitter(t *testing.T) {
	w := NewWatcher(Options{BackoffMin: 400 * time.Millisecond, BackoffMax: 3 * time.Second})
	for _, tc := range []struct {
		desc  string
		fails int
		d     time.Duration
	}{
		{"first failure", 1, 400 * time.Millisecond},
		{"second", 2, 800 * time.Millisecond},
		{"third", 3, 1600 * time.Millisecond},
		{"capped", 4, 3 * time.Second},
		{"stays capped", 40, 3 * time.Second},
	} {
		w.jitter = func(int64) int64 { return 0 }
		if got := w.backoff(tc.fails); got != tc.d/2 {
			t.Errorf("%s: bottom of the range %s, want %s", tc.desc, got, tc.d/2)
		}
		w.jitter = func(n int64) int64 { return n - 1 }
		if got := w.backoff(tc.fails); got != tc.d {
			t.Errorf("%s: top of the range %s, want %s", tc.desc, got, tc.d)
		}
	}
}
