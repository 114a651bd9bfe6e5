package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/floodgate/floodgate/internal/itest"
)

// chromiumBinary finds Chromium: $FLOODGATE_CHROMIUM, then Debian's /usr/bin/chromium
// (scripts/install-chromium.sh, run by `make test` when it is missing). The browser test
// fails without it: it never silently skips.
func chromiumBinary(t *testing.T) string {
	if p := os.Getenv("FLOODGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: run scripts/install-chromium.sh (make test does) or set FLOODGATE_CHROMIUM")
	return ""
}

// artifactDir is where the browser test writes its screenshots: $FLOODGATE_ARTIFACTS, or
// bin/test-artifacts/console in the repository.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("FLOODGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(itest.ModuleRoot(), "bin", "test-artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

const browserToken = "console-browser-test-token"

const browserConfig = `
server: {listen: "{{LISTEN}}", verdict_header: true}
admin: {listen: "{{ADMIN}}", token: "` + browserToken + `"}
pools:
  query: {addrs: ["{{QUERY}}"], max_conns: 32, adaptive: {enabled: true, shadow: true}}
  shaky: {addrs: ["{{QUERY}}", "{{DEAD}}"], max_conns: 16, connect_timeout: 200ms, eject: {failures: 2, duration: 120s}}
routes:
  lottery: {path: /lottery, pool: query, core: true, filters: {token_bucket: {rate: 20, burst: 5}}}
  info:    {path: /info, pool: shaky}
`

// TestConsoleInBrowser drives the dashboard in headless Chromium against a real gateway
// (with a token, registered in a real Consul) while load runs: login with the token, the
// charts fill with non-zero data, an upstream server that refuses connections shows
// ejected, a suspicious Consul read shows HELD, and the page logs no error. Each state is
// saved as a screenshot in bin/test-artifacts/console/.
func TestConsoleInBrowser(t *testing.T) {
	itest.RequireIntegration(t)
	chromium := chromiumBinary(t)
	artifacts := artifactDir(t)
	consul := itest.StartConsul(t)
	query, _ := itest.Backend(t, "query")
	dead := itest.FreeAddr(t) // nothing listens there: connections are refused
	prefix := "fg-console-browser/"
	cfg := strings.NewReplacer("{{QUERY}}", query, "{{DEAD}}", dead).Replace(browserConfig)
	gw := itest.StartGateway(t, cfg, "-consul", consul.Addr, "-consul-prefix", prefix,
		"-snapshot", filepath.Join(t.TempDir(), "lkg.json"), "-instance-id", "gw-browser")

	// load all along: lottery over its token_bucket rate (admitted and shed), info through
	// the pool with a dead server (it gets ejected)
	// (paced at about 300 requests a second: the machine is shared with the browser)
	stop := make(chan struct{})
	wait := itest.Load(3, []string{gw.URL("/lottery?uin=1"), gw.URL("/info"), gw.URL("/lottery?uin=2")}, stop,
		func(string, *http.Response, error) { time.Sleep(10 * time.Millisecond) })
	defer wait()
	defer close(stop)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 2200))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	var mu sync.Mutex
	var pageErrors []string
	listenErr := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			pageErrors = append(pageErrors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				pageErrors = append(pageErrors, "console."+string(e.Type)+": "+strings.Join(args, " "))
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				pageErrors = append(pageErrors, "log: "+e.Entry.Text+" "+e.Entry.URL)
			}
		}
	})
	if listenErr != nil {
		t.Fatalf("start chromium: %v", listenErr)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, expr string, v any) {
		t.Helper()
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[[]byte](expr))
		if err == nil {
			err = json.Unmarshal(raw, v)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// text reads an element's text in one evaluation inside the page: the console
	// re-renders its tables every refresh, and a node looked up first and read after can
	// be gone in between ("No node with given id found").
	text := func(what, sel string) string {
		t.Helper()
		q, _ := json.Marshal(sel)
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => { const e = document.querySelector(`+string(q)+`); return e ? e.innerText : "(no element)"; })()`))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(artifacts, name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	// waitJS polls a boolean expression in the page until it holds (limit 60 s).
	waitJS := func(what, expr string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				state, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("#banner") ? document.querySelector("#banner").textContent : document.title`))
				t.Fatalf("%s: not within 60 s (page: %q)", what, state)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// 1. The console without a session leads to the login form; a wrong token is refused.
	if _, err := chromedp.Call(bctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the log domain: %v", err)
	}
	run("open the console", chromedp.Navigate(gw.AdminURL("/")), chromedp.WaitVisible(chromedp.ID("token")))
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(loc, "/login") {
		t.Errorf("without a session the console went to %s, want /login", loc)
	}
	shot("1-login")
	run("log in with a wrong token", chromedp.SendKeys(chromedp.ID("token"), "wrong"), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("login-error")))
	mu.Lock()
	pageErrors = nil // the refused login's 401 is the one expected error
	mu.Unlock()

	// 2. Log in with the token; the console loads and its charts fill.
	run("log in", chromedp.SetValue(chromedp.ID("token"), browserToken), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS("#charts canvas")))
	var cookieVisible bool
	eval("document.cookie", `document.cookie.includes("floodgate_admin")`, &cookieVisible)
	if cookieVisible {
		t.Errorf("the session cookie is readable by scripts; want HttpOnly")
	}
	waitJS("charts of lottery with admitted and shed requests", `(() => {
		const ch = window.fgConsole.charts["lottery"]; if (!ch) return false;
		const d = ch.rate.data, lat = ch.lat.data;
		return d[0].length >= 3 && Math.max(...d[1]) > 0 && Math.max(...d[2]) > 0 && lat[1].some(x => x > 0);
	})()`)
	waitJS("the READY banner", `document.querySelector("#banner").dataset.status === "READY"`)
	var canvases int
	eval("count canvases", `document.querySelectorAll("#charts canvas").length`, &canvases)
	if canvases < 4 {
		t.Errorf("%d chart canvases, want 2 per route", canvases)
	}
	// the canvases are drawn: pixels other than the background
	var drawn bool
	eval("canvas pixels", `(() => {
		const c = document.querySelector('#charts [data-route="lottery"] .rate canvas');
		const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
		return n > 500;
	})()`, &drawn)
	if !drawn {
		t.Errorf("the lottery rate chart has nothing drawn")
	}
	waitJS("the limits table with the token_bucket rate in use", `[...document.querySelectorAll("#limits tbody tr")].some(r => r.textContent.includes("token_bucket") && r.querySelector(".bar"))`)
	waitJS("the fleet from Consul", `[...document.querySelectorAll("#fleet tbody tr")].some(r => r.textContent.includes("gw-browser"))`)
	waitJS("the adaptive overload section (a provider registered by the gateway) as a table",
		`!document.querySelector("#overload-box").hidden && [...document.querySelectorAll("#overload td")].some(td => td.textContent === "query")`)
	shot("2-ready-charts")

	// 3. The pool server that refuses connections is ejected, and the page says so.
	waitJS("an ejected server", fmt.Sprintf(`!!document.querySelector('#pools tr[data-addr="%s"][data-healthy="false"]')`, dead))
	ejectedText := text("ejected row", fmt.Sprintf(`#pools tr[data-addr="%s"]`, dead))
	if !strings.Contains(ejectedText, "EJECTED") || !strings.Contains(ejectedText, "unavailable") {
		t.Errorf("ejected server row %q, want EJECTED with the cause", ejectedText)
	}
	shot("3-ejected")

	// 4. A suspicious Consul read (the whole prefix deleted) is held: the banner says HELD.
	consul.Put(t, prefix+"routes/lottery/timeout", "2s")
	waitJS("the switch from Consul in the plan table", `[...document.querySelectorAll("#switches tbody tr")].some(r => r.textContent.includes("routes/lottery/timeout"))`)
	consul.Delete(t, prefix, true)
	waitJS("the HELD banner", `document.querySelector("#banner").dataset.status === "HELD"`)
	banner := text("banner", "#banner")
	if !strings.Contains(banner, "empty") {
		t.Errorf("HELD banner %q, want the reason (the read is empty)", banner)
	}
	shot("4-held")

	// The API agrees with the page.
	req, _ := http.NewRequest(http.MethodGet, gw.AdminURL("/api/console"), nil)
	req.Header.Set("Authorization", "Bearer "+browserToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		State struct{ Status string } `json:"state"`
	}
	json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if c.State.Status != "HELD" {
		t.Errorf("/api/console state %q, want HELD", c.State.Status)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, e := range pageErrors {
		t.Errorf("page error: %s", e)
	}
}
