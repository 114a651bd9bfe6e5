package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

const drainConfig = `
server: {listen: "{{LISTEN}}", drain_delay: %s}
admin: {listen: "{{ADMIN}}"}
pools: {q: {addrs: ["{{QUERY}}"], max_conns: 32}}
routes:
  lottery: {path: /lottery, pool: q, core: true}
`

// rollingRestart plays a load balancer in front of gateway A with B as the standby: it
// polls A's /readyz every 20 ms and sends new requests to B once A is not ready. Load
// runs on keep-alive connections while A gets SIGTERM. It returns the requests that
// failed (transport error or not 200), the requests A answered after the signal, and
// how many of those carried Connection: close (the ones answered before A handled the
// signal do not).
func rollingRestart(t *testing.T, query, drainDelay string) (failed, servedAfter, closing int64) {
	cfg := strings.ReplaceAll(fmt.Sprintf(drainConfig, drainDelay), "{{QUERY}}", query)
	a := itest.StartGateway(t, cfg)
	b := itest.StartGateway(t, cfg)
	var target atomic.Pointer[string]
	aURL, bURL := a.URL("/lottery"), b.URL("/lottery")
	target.Store(&aURL)
	// probeClose: the balancer's own request to A the moment it sees A draining: inside
	// the drain delay, so its answer must close. (The load's requests may all have been
	// answered before A handled the signal, or sent to B already: a 20 ms poll can move
	// them before any of them reaches a draining A.)
	var probeClose atomic.Int64
	probe := &http.Client{Timeout: 5 * time.Second}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the balancer's health check
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := itest.Client.Get(a.AdminURL("/readyz"))
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				if *target.Load() == aURL && err == nil {
					if r, err := probe.Get(aURL); err == nil {
						io.Copy(io.Discard, r.Body)
						r.Body.Close()
						if r.StatusCode == 200 && r.Close {
							probeClose.Add(1)
						}
					}
				}
				target.Store(&bURL)
			}
		}
	}()
	var signalled atomic.Bool
	var nFailed, nAfter, closeHeaders atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				u := *target.Load()
				resp, err := client.Get(u)
				if err != nil {
					nFailed.Add(1)
					time.Sleep(2 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					nFailed.Add(1)
				}
				if u == aURL && signalled.Load() {
					nAfter.Add(1)
					if resp.Close {
						closeHeaders.Add(1)
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	signalled.Store(true)
	a.Proc.Signal(syscall.SIGTERM)
	itest.WaitFor(t, "gateway A to exit", 30*time.Second, a.Proc.Exited)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	return nFailed.Load(), nAfter.Load(), closeHeaders.Load() + probeClose.Load()
}

// TestDrainOnSIGTERM: with server.drain_delay, a gateway that gets SIGTERM turns /readyz
// to 503 and keeps serving (with Connection: close) until the delay ends, so a load
// balancer that follows /readyz moves traffic away before the listener closes: no
// request fails. Without it (drain_delay 0, the default) the same restart is measured
// for comparison.
func TestDrainOnSIGTERM(t *testing.T) {
	itest.RequireIntegration(t)
	query, _ := itest.Backend(t, "query")
	beforeFailed, _, _ := rollingRestart(t, query, "0s")
	failed, servedAfter, closing := rollingRestart(t, query, "1s")
	t.Logf("requests failed during a rolling restart: %d with drain_delay 0, %d with drain_delay 1s (A answered %d after SIGTERM)",
		beforeFailed, failed, servedAfter)
	if failed != 0 {
		t.Errorf("%d requests failed during the restart with a drain delay, want 0", failed)
	}
	if closing == 0 {
		t.Errorf("A answered %d requests after SIGTERM and the balancer's probe, none with Connection: close; want the draining answers to close", servedAfter)
	}
}
