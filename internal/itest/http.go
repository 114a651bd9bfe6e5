package itest

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// Client is the HTTP client of the integration tests: bounded in time, with enough idle
// connections for the load loops.
var Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

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

// WaitFor polls cond every 5 ms until it holds, failing the test after timeout; it
// returns how long it took.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
