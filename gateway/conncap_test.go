package gateway_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestMaxConnsPerIP: with server.max_conns_per_ip 2, a third connection from the same
// address gets 429 edge/too_many_connections and is closed, while the two open ones keep
// being served; once one of them closes, a new connection is served again. The real
// binary on a real socket, so the cap and the strict framing reader (the guard refuses a
// connection it does not follow) both hold on the connections of the traffic listener.
func TestMaxConnsPerIP(t *testing.T) {
	itest.RequireIntegration(t)
	up := newRecorder(t)
	cfg := strings.Replace(fmt.Sprintf(edgeConfig, up.addr()), "read_timeout: 1s,", "read_timeout: 1s, idle_timeout: 60s, max_conns_per_ip: 2,", 1)
	g := itest.StartGateway(t, cfg)

	// keepAlive opens a connection and has one request answered on it (so the gateway has
	// accepted and counted it); the connection stays open.
	keepAlive := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.DialTimeout("tcp4", g.Addr, itest.MinWait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		ask(t, c, br, 200)
		return c, br
	}
	a, _ := keepAlive()
	b, bbr := keepAlive()

	third := rawExchange(g.Addr, p("GET /lottery HTTP/1.1\r\nHost: gw\r\n\r\n"), itest.MinWait)
	if third.status != 429 || third.verdict != "edge/too_many_connections" || !third.closed {
		t.Fatalf("third connection from one address: %v, want 429 edge/too_many_connections and closed", third)
	}
	ask(t, b, bbr, 200) // the open ones are still served
	before := len(up.requests())

	a.Close()
	refused := 1 // the third connection above
	itest.WaitFor(t, "a new connection served after one of the two closed", itest.MinWait, func() bool {
		// until the gateway has seen a's close, a new connection is still the third
		r := rawExchange(g.Addr, p("GET /lottery HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"), itest.MinWait)
		if r.status == 429 {
			refused++
		}
		return r.status == 200
	})
	if got := len(up.requests()); got < before+1 {
		t.Fatalf("upstream saw %d requests after the reopening, want more than %d", got, before)
	}
	_, body, _ := itest.Get(t, "http://"+g.Admin+"/metrics")
	if want := fmt.Sprintf(`verdict="edge/too_many_connections"} %d`, refused); !strings.Contains(body, want) {
		t.Errorf("/metrics: %s, want %d refused connections counted", grepLines(body, "too_many_connections"), refused)
	}
}

// ask sends one keep-alive GET on c and wants status.
func ask(t *testing.T, c net.Conn, br *bufio.Reader, status int) {
	t.Helper()
	c.SetDeadline(time.Now().Add(itest.MinWait))
	if _, err := c.Write(p("GET /lottery HTTP/1.1\r\nHost: gw\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer on a kept-alive connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("kept-alive connection: %d, want %d", resp.StatusCode, status)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
