package itest

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConsulBinary finds the Consul agent: $FLOODGATE_CONSUL (set by `make test`), then
// PATH, then the tool cache that scripts/install-consul.sh fills. A test that needs
// Consul fails when there is none: it never silently skips.
func ConsulBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FLOODGATE_CONSUL"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "floodgate", "tools", "consul-v1.22.0", "consul")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("no consul agent: run `make consul` (or `make test`, which installs it), or set FLOODGATE_CONSUL")
	return ""
}

// Consul is a `consul agent -dev` on free loopback ports.
type Consul struct {
	Addr string // HTTP API address, host:port
	Proc *Proc
	args []string
	bin  string
}

// freePorts returns n distinct loopback ports that were free a moment ago: the listeners
// are all held until every port is chosen, so two of them cannot be the same port (an
// agent given one port twice refuses to start).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for len(ports) < n {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// StartConsul starts a dev agent and waits until it has a leader. extra are more agent
// flags (e.g. -hcl to enable ACLs).
func StartConsul(t testing.TB, extra ...string) *Consul {
	t.Helper()
	c := &Consul{bin: ConsulBinary(t)}
	ports := freePorts(t, 4)
	http := ports[0]
	c.Addr = fmt.Sprintf("127.0.0.1:%d", http)
	c.args = []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", fmt.Sprintf("itest-%d", http), "-log-level", "warn",
		"-http-port", strconv.Itoa(http), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3])}
	c.args = append(c.args, extra...)
	c.start(t)
	return c
}

func (c *Consul) start(t testing.TB) {
	t.Helper()
	c.Proc = StartCmd(t, "consul@"+c.Addr, exec.Command(c.bin, c.args...))
	deadline := time.Now().Add(30 * time.Second)
	attempts := 1
	for time.Now().Before(deadline) {
		if c.Proc.Exited() {
			// a port of the previous agent on the same addresses may not be free yet
			if attempts < 5 && strings.Contains(c.Proc.Output(), "address already in use") {
				attempts++
				time.Sleep(500 * time.Millisecond)
				c.Proc = StartCmd(t, "consul@"+c.Addr, exec.Command(c.bin, c.args...))
				continue
			}
			t.Fatalf("consul agent exited:\n%s", c.Proc.Output())
		}
		resp, err := http.Get("http://" + c.Addr + "/v1/status/leader")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && len(strings.Trim(string(b), `" `)) > 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("consul agent at %s has no leader after 30s:\n%s", c.Addr, c.Proc.Output())
}

// Stop stops the agent (its data is lost: it is a dev agent).
func (c *Consul) Stop() { c.Proc.Stop() }

// Restart starts a fresh agent on the same ports (empty KV).
func (c *Consul) Restart(t testing.TB) {
	t.Helper()
	c.Proc.Stop()
	c.start(t)
}

// Put writes key = value through the HTTP API.
func (c *Consul) Put(t testing.TB, key, value string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr+"/v1/kv/"+key, strings.NewReader(value))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("consul put %s: %v", key, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("consul put %s: status %d", key, resp.StatusCode)
	}
}

// Delete removes key (recurse deletes the whole prefix).
func (c *Consul) Delete(t testing.TB, key string, recurse bool) {
	t.Helper()
	u := "http://" + c.Addr + "/v1/kv/" + key
	if recurse {
		u += "?recurse=true"
	}
	req, _ := http.NewRequest(http.MethodDelete, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("consul delete %s: %v", key, err)
	}
	resp.Body.Close()
}

// Txn sets several keys in one Consul transaction (one index: a watcher sees all or none).
func (c *Consul) Txn(t testing.TB, kv map[string]string) {
	t.Helper()
	var ops []string
	for k, v := range kv {
		ops = append(ops, fmt.Sprintf(`{"KV":{"Verb":"set","Key":%q,"Value":%q}}`, k, base64.StdEncoding.EncodeToString([]byte(v))))
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr+"/v1/txn", strings.NewReader("["+strings.Join(ops, ",")+"]"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("consul txn: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("consul txn: status %d: %s", resp.StatusCode, b)
	}
}

// DeleteKeys deletes several keys in one Consul transaction (a watcher sees all gone at
// once, as when a prefix is wiped).
func (c *Consul) DeleteKeys(t testing.TB, keys ...string) {
	t.Helper()
	var ops []string
	for _, k := range keys {
		ops = append(ops, fmt.Sprintf(`{"KV":{"Verb":"delete","Key":%q}}`, k))
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr+"/v1/txn", strings.NewReader("["+strings.Join(ops, ",")+"]"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("consul txn: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("consul txn delete: status %d: %s", resp.StatusCode, b)
	}
}
