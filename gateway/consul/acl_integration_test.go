package consul_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

const rootToken = "root-token-for-tests"

// consulAPI calls the Consul HTTP API with the management token.
func consulAPI(t *testing.T, c *itest.Consul, method, path string, body any) map[string]any {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+c.Addr+path, r)
	req.Header.Set("X-Consul-Token", rootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

// TestLeastPrivilegeTokenRevoked: the watcher runs with a token that may only read the
// prefix. When the token is revoked mid-run (403), the gateway keeps serving its last
// good configuration, says stale, counts it, and applies nothing it cannot read.
func TestLeastPrivilegeTokenRevoked(t *testing.T) {
	itest.RequireIntegration(t)
	c := itest.StartConsul(t, "-hcl", `acl { enabled = true, default_policy = "deny", tokens { initial_management = "`+rootToken+`" } }`)
	const prefix = "fg-acl/"
	// A dev agent elects itself before its ACL system has taken the initial management
	// token; until then every authorized call is "ACL system must be bootstrapped".
	itest.WaitFor(t, "the agent's ACL system to take the management token", 60*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr+"/v1/acl/token/self", nil)
		req.Header.Set("X-Consul-Token", rootToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	consulAPI(t, c, "PUT", "/v1/acl/policy", map[string]any{"Name": "floodgate-watch", "Rules": `key_prefix "` + prefix + `" { policy = "read" }`})
	tok := consulAPI(t, c, "PUT", "/v1/acl/token", map[string]any{"Description": "gateway watcher", "Policies": []map[string]string{{"Name": "floodgate-watch"}}})
	secret, accessor := tok["SecretID"].(string), tok["AccessorID"].(string)
	tokenFile := filepath.Join(t.TempDir(), "watch.token")
	os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600)

	put := func(key, value string) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr+"/v1/kv/"+prefix+key, strings.NewReader(value))
		req.Header.Set("X-Consul-Token", rootToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("put %s: %v %v", key, err, resp)
		}
		resp.Body.Close()
	}
	put("active_plan", "")
	put("routes/info/enabled", "false")

	q, _ := itest.Backend(t, "query")
	g := itest.StartGateway(t, strings.ReplaceAll(gwConfig, "{{QUERY}}", q),
		"-consul", c.Addr, "-consul-prefix", prefix, "-consul-token-file", tokenFile,
		"-register=false", "-snapshot", filepath.Join(t.TempDir(), "lkg.json"))
	itest.WaitFor(t, "the switch read with the read-only token", 5*time.Second, func() bool { return verdict(t, g, "/info") == "route/disabled" })

	// not registered (-register=false): /consul says so and counts no live instance,
	// as floodgate_instances_live does (it said 1)
	_, body, _ := itest.Get(t, g.AdminURL("/consul"))
	var cs struct {
		Registered bool  `json:"registered"`
		Live       int64 `json:"instances_live"`
		Divisor    int64 `json:"limit_divisor"`
	}
	json.Unmarshal([]byte(body), &cs)
	if cs.Registered || cs.Live != 0 || cs.Divisor != 1 {
		t.Errorf("/consul with -register=false: %s", body)
	}

	// the read-only token cannot write (ctl uses another token)
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr+"/v1/kv/"+prefix+"routes/lottery/enabled", strings.NewReader("false"))
	req.Header.Set("X-Consul-Token", secret)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("the watcher's token could write the prefix; it must be read-only")
		}
	}

	consulAPI(t, c, "DELETE", "/v1/acl/token/"+accessor, nil)
	put("routes/report/enabled", "false") // wakes the blocking query; the next read is refused
	itest.WaitFor(t, "readiness to report the refused token", 10*time.Second, func() bool {
		r := ready(t, g)
		return r.Stale && strings.Contains(r.Reason, "refused the token")
	})
	_, metrics, _ := itest.Get(t, g.AdminURL("/metrics"))
	if metricSum(metrics, `floodgate_consul_reads_total{result="forbidden"}`) < 1 {
		t.Errorf("refused reads not counted")
	}
	gen := ready(t, g).Generation
	put("routes/lottery/enabled", "false")
	time.Sleep(500 * time.Millisecond)
	if v := verdict(t, g, "/lottery"); v != "" {
		t.Fatalf("a change was applied after the token was revoked: /lottery verdict %q", v)
	}
	if verdict(t, g, "/info") != "route/disabled" || ready(t, g).Generation != gen {
		t.Fatalf("the last good configuration did not keep serving after the token was revoked")
	}
}
