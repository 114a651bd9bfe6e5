// Package itest is the harness of floodgate's process-level integration tests: it builds
// the real binary once, starts backends and gateways as real processes on free loopback
// ports, waits until they serve, and stops them when the test ends (killing them if they
// do not stop). Consul tests use consul.go in this package.
//
// Integration tests call RequireIntegration first, so `go test -short` skips them.
package itest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireIntegration skips t under -short.
func RequireIntegration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (runs real processes); skipped with -short")
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a floodgate binary built from this tree (once per test
// process).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		removeStaleBinaries()
		dir, err := os.MkdirTemp("", fmt.Sprintf("floodgate-itest-%d-", os.Getpid()))
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "floodgate")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/floodgate/floodgate/cmd/floodgate")
		cmd.Dir = ModuleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// removeStaleBinaries removes the binaries earlier test processes built: each test
// process builds one (~40 MB) in a directory named floodgate-itest-<pid>-*, and a test
// binary has no hook to remove it when it ends, so the next ones do: a directory whose
// process is gone is removed. Without it every make test left ~20 binaries behind, and a
// disk filled by them made JetStream refuse the tests' streams ("insufficient storage
// resources available": a queue node reserves up to 75% of the free space).
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "floodgate-itest-*-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "floodgate-itest-%d-", &pid); err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue // its process is still running
		}
		os.RemoveAll(d)
	}
}

// ModuleRoot is the repository root (where go.mod is).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Proc is a running process of the test.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs the binary with args. The process is stopped (SIGTERM, then SIGKILL after
// 5 s) when the test ends; its output is printed if the test failed.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return StartCmd(t, name, exec.Command(Binary(t), args...))
}

// StartCmd runs cmd as a test process (see Start).
func StartCmd(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.Output())
		}
	})
	return p
}

// Output is what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill kills the process (SIGKILL) and waits for it.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// Stop asks the process to stop (SIGTERM) and kills it after 5 s.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitHTTP polls url until it answers 200 or timeout (at least MinWait) passes.
func WaitHTTP(t testing.TB, url string, timeout time.Duration, procs ...*Proc) {
	t.Helper()
	timeout = max(timeout, MinWait)
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 500 * time.Millisecond}
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		for _, p := range procs {
			if p.Exited() {
				t.Fatalf("%s exited while waiting for %s:\n%s", p.Name, url, p.Output())
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %s", url, timeout)
}

// Backend starts a backend of kind on a free port and waits for it; it returns its
// address.
func Backend(t testing.TB, kind string, extra ...string) (string, *Proc) {
	t.Helper()
	addr := FreeAddr(t)
	return addr, BackendAt(t, kind, addr, extra...)
}

// BackendAt starts a backend of kind at addr (e.g. to restart one where it was).
func BackendAt(t testing.TB, kind, addr string, extra ...string) *Proc {
	t.Helper()
	args := append([]string{"backend", "-kind", kind, "-listen", addr, "-log-level", "warn"}, extra...)
	p := Start(t, kind+"@"+addr, args...)
	WaitHTTP(t, "http://"+addr+"/healthz", 10*time.Second, p)
	return p
}

// Gateway is a gateway process under test.
type Gateway struct {
	Addr, Admin, ConfigPath string
	Proc                    *Proc
}

// StartGateway writes cfg (YAML; the strings {{LISTEN}} and {{ADMIN}} are replaced by
// free addresses) to a file, starts a gateway on it with extra flags, and waits for
// /readyz.
func StartGateway(t testing.TB, cfg string, extra ...string) *Gateway {
	t.Helper()
	ports := freePorts(t, 2) // distinct: two FreeAddr calls can return the same port
	g := &Gateway{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Admin: fmt.Sprintf("127.0.0.1:%d", ports[1]), ConfigPath: filepath.Join(t.TempDir(), "gateway.yaml")}
	g.WriteConfig(t, cfg)
	g.Restart(t, nil, extra...)
	return g
}

// Restart starts the gateway again on its addresses and configuration file (after it
// was stopped or killed), with env added to the environment (e.g. a failpoint), and
// waits for /readyz.
func (g *Gateway) Restart(t testing.TB, env []string, extra ...string) {
	t.Helper()
	args := append([]string{"gateway", "-config", g.ConfigPath, "-log-format", "json"}, extra...)
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	g.Proc = StartCmd(t, "gateway", cmd)
	WaitHTTP(t, "http://"+g.Admin+"/readyz", 30*time.Second, g.Proc)
}

// WriteConfig (re)writes the gateway's configuration file.
func (g *Gateway) WriteConfig(t testing.TB, cfg string) {
	t.Helper()
	cfg = strings.ReplaceAll(cfg, "{{LISTEN}}", g.Addr)
	cfg = strings.ReplaceAll(cfg, "{{ADMIN}}", g.Admin)
	if err := os.WriteFile(g.ConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// URL returns the traffic URL for path.
func (g *Gateway) URL(path string) string { return "http://" + g.Addr + path }

// AdminURL returns the admin URL for path.
func (g *Gateway) AdminURL(path string) string { return "http://" + g.Admin + path }
