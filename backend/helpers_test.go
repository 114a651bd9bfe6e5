package backend

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// serve runs s on a fresh 127.0.0.1:0 socket until the test ends and returns its base
// URL ("http://127.0.0.1:port").
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// reply is an HTTP answer as the tests look at it.
type reply struct {
	status int
	ctype  string
	header http.Header
	body   string
}

// do sends one request; form, when not nil, is sent as an urlencoded body.
func do(t *testing.T, method, u string, header map[string]string, form url.Values) reply {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), header: resp.Header, body: string(b)}
}

func get(t *testing.T, u string) reply { t.Helper(); return do(t, "GET", u, nil, nil) }
