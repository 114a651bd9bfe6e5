package itest

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Client is the HTTP client of the integration tests: bounded in time (generously: a
// loaded 2-core machine under -race can hold an answer for seconds), with enough idle
// connections for the load loops.
var Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Get fetches url and returns the status, the body and the headers; a transport error
// fails the test.
func Get(t testing.TB, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := Client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// MinWait is the least any wait of the integration tests allows: a wait ends as soon as
// its condition holds, so a generous limit costs nothing when it passes, and a loaded
// 2-core machine under -race never turns a pass into a failure.
const MinWait = 60 * time.Second

// WaitFor polls cond every 5 ms until it holds, failing the test after timeout (at least
// MinWait); it returns how long it took.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	timeout = max(timeout, MinWait)
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// Load runs workers goroutines that GET urls in turn, over and over, until stop returns
// (close the channel it is made from); every answer (body drained) or transport error is
// passed to observe. Call the returned function to wait for the workers to end.
func Load(workers int, urls []string, stop <-chan struct{}, observe func(url string, resp *http.Response, err error)) (wait func()) {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for _, u := range urls {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := Client.Get(u)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					observe(u, resp, err)
				}
			}
		}()
	}
	return wg.Wait
}
