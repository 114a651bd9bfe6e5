package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/itest"
)

// TestDemoVIPAnswersSayWhy runs configs/demo.yaml as it is (on free ports) with a real
// query backend, and checks that the /vip route's answers say what is true of their cause
// (issue 11 item 16: a VIP member got "this draw is for VIP members" while the query
// backend was down): a non-member is told the draw is for VIP members; with the backend
// killed, a member is told the draw is unavailable - never that they are not a member.
func TestDemoVIPAnswersSayWhy(t *testing.T) {
	itest.RequireIntegration(t)
	root := itest.ModuleRoot()
	query, backend := itest.Backend(t, "query")
	b, err := os.ReadFile(filepath.Join(root, "configs", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The delivery and packs backends and the queue are not started: the /vip route does
	// not use them (its packs come from a file; grants go to a journal of the test's own).
	cfg := strings.NewReplacer(
		"listen: 127.0.0.1:8080", `listen: "{{LISTEN}}"`,
		"listen: 127.0.0.1:9901", `listen: "{{ADMIN}}"`,
		"127.0.0.1:8081", query,
		"127.0.0.1:8082", itest.FreeAddr(t),
		"127.0.0.1:8083", itest.FreeAddr(t),
		"url: nats://127.0.0.1:4222", "url: nats://"+itest.FreeAddr(t)+"\n  journal: {dir: "+t.TempDir()+"}",
		"testdata/packs/", filepath.Join(root, "testdata", "packs")+"/",
	).Replace(string(b))
	for _, want := range []string{"{{LISTEN}}", "{{ADMIN}}", query, "journal: {dir:"} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("configs/demo.yaml changed shape: %q not substituted; update this test", want)
		}
	}
	start := time.Now()
	g := itest.StartGateway(t, cfg)
	t.Logf("gateway ready after %v", time.Since(start).Round(time.Millisecond))
	get := func(uin string) (int, string, string) {
		status, body, h := itest.Get(t, g.URL("/vip?uin="+uin))
		return status, body, h.Get("X-Floodgate-Verdict")
	}
	const member, stranger = "10001", "99999"
	itest.WaitFor(t, "a VIP member answered by the query backend", time.Minute, func() bool {
		status, _, _ := get(member) // 503 number_pack/unknown while the pack loads
		return status == 200
	})
	t.Logf("a member answered after %v", time.Since(start).Round(time.Millisecond))
	if status, body, verdict := get(stranger); status != 403 || verdict != "number_pack/not_eligible" || !strings.Contains(body, "for VIP members") {
		t.Errorf("a non-member: %d %s %q, want 403 number_pack/not_eligible saying the draw is for VIP members", status, verdict, body)
	}

	backend.Kill()
	upstream := 0
	itest.WaitFor(t, "a member's answer while the backend is down", time.Minute, func() bool {
		status, body, verdict := get(member)
		if status == 200 {
			return false // a request already on its way when the backend died
		}
		if strings.Contains(body, "member") || !strings.Contains(body, "unavailable") || !strings.HasPrefix(verdict, "upstream/") || status != 503 {
			t.Fatalf("a VIP member with the query backend down: %d %s %q, want 503 upstream/* saying the draw is unavailable (not about membership)", status, verdict, body)
		}
		upstream++
		return upstream >= 5 // past the ejection too (upstream/unavailable without trying)
	})
	// a non-member is still told why: the packs answer without the backend
	if status, body, verdict := get(stranger); status != 403 || verdict != "number_pack/not_eligible" || !strings.Contains(body, "for VIP members") {
		t.Errorf("a non-member with the backend down: %d %s %q, want 403 number_pack/not_eligible", status, verdict, body)
	}
}
