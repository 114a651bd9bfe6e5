package gateway

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestAccessLogLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	r := newRig(t, strings.Replace(baseConfig, "server:", "access_log: {enabled: true, path: \""+path+"\", buffer: 1024}\nserver:", 1))
	r.upstream("q1:1", echoUpstream)
	r.do("GET", "/lottery/x?uin=1", nil)
	r.do("GET", "/off", nil)
	r.do("GET", "/nothing", nil)
	r.do("GET", "/grant", nil)
	r.do("GET", "/lottery/\"quoted\"", map[string]string{"X-Request-Id": "client-id-7"})
	r.gw.state.Load().access.close() // drains and flushes
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	want := []struct{ route, path, verdict string }{
		{"lottery", "/lottery/x", "admitted"},
		{"off", "/off", "route/disabled"},
		{"-", "/nothing", "route/not_found"},
		{"grant", "/grant", "acl/method_not_allowed"},
		{"lottery", `/lottery/"quoted"`, "admitted"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g["route"] != w.route || g["path"] != w.path || g["verdict"] != w.verdict || g["client"] != "192.0.2.10" || g["method"] != "GET" {
			t.Errorf("line %d: %v, want route %s path %s verdict %s", i, g, w.route, w.path, w.verdict)
		}
	}
	if got[1]["status"] != float64(200) || got[3]["status"] != float64(405) {
		t.Errorf("statuses: %v %v", got[1]["status"], got[3]["status"])
	}
	// the upstream side: address and time for proxied requests only; bytes; request ids
	if got[0]["upstream"] != "q1:1" || got[0]["upstream_us"] == nil || got[0]["bytes_out"].(float64) <= 0 {
		t.Errorf("proxied line %v, want upstream q1:1 with its time and the bytes sent back", got[0])
	}
	if _, ok := got[1]["upstream"]; ok {
		t.Errorf("line of a disabled route has an upstream: %v", got[1])
	}
	ids := map[any]bool{}
	for i, g := range got[:4] {
		if id, _ := g["request_id"].(string); id == "" || ids[id] {
			t.Errorf("line %d: request_id %q, want one of its own", i, g["request_id"])
		}
		ids[g["request_id"]] = true
	}
	if got[4]["request_id"] != "client-id-7" {
		t.Errorf("request_id %v, want the client's X-Request-Id", got[4]["request_id"])
	}
}

// TestAccessLogReopen: after the file is moved away (logrotate), Reopen makes the log
// write to a new file at the configured path; nothing is lost.
func TestAccessLogReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	r := newRig(t, strings.Replace(baseConfig, "server:", "access_log: {enabled: true, path: \""+path+"\", buffer: 1024}\nserver:", 1))
	r.upstream("q1:1", echoUpstream)
	r.do("GET", "/lottery/before", nil)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if p, err := r.gw.ReopenAccessLog(); err != nil || p != path {
		t.Fatalf("ReopenAccessLog: %q %v", p, err)
	}
	r.do("GET", "/lottery/after", nil)
	r.gw.state.Load().access.close()
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "/lottery/before") || strings.Contains(string(old), "/lottery/after") ||
		!strings.Contains(string(cur), "/lottery/after") || strings.Contains(string(cur), "/lottery/before") {
		t.Errorf("rotated file %q, new file %q: want each line in its own file", old, cur)
	}
}

// TestAccessLogNeverWaits: with no writer draining it, a full ring drops (and counts)
// instead of blocking the request.
func TestAccessLogNeverWaits(t *testing.T) {
	l := newAccessRing("test", 1024)
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/x")
	rt := &route{name: "r"}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 5000; i++ {
			l.record(&ctx, rt, nil, netip.MustParseAddr("203.0.113.1"), time.Now(), time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("record blocked on a full ring")
	}
	if l.head.Load() != 1024 {
		t.Fatalf("claimed %d slots, want exactly the ring's 1024", l.head.Load())
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/plain", `"/plain"`},
		{`/a"b\c`, `"/a\"b\\c"`},
		{"/\x00\x1f\x7f", `"/\u0000\u001f\u007f"`},
		{"/\xff", `"/\ufffd"`},
		{"/é", `"/é"`},
	} {
		if got := string(appendJSONString(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("%q -> %s, want %s", tc.in, got, tc.want)
		}
		var back string
		if err := json.Unmarshal(appendJSONString(nil, []byte(tc.in)), &back); err != nil {
			t.Errorf("%q: not valid JSON: %v", tc.in, err)
		}
	}
}
