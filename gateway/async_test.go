package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/internal/accept"
	"github.com/floodgate/floodgate/internal/grant"
	"github.com/floodgate/floodgate/internal/itest"
	"github.com/floodgate/floodgate/internal/journal"
	"github.com/floodgate/floodgate/internal/queue"
)

const asyncYAML = `
pools:
  d: {addrs: [delivery:80]}
routes:
  grant:
    path: /grant
    pool: d
    core: true
    max_request_body: 16KiB
    fallback: {status: 503, body: 'not recorded'}
    async:
      required: [user, prize]
      keep_headers: [X-Trace]
      deliver: {rate: 500}
    filters:
      acl: {allow_methods: [POST]}
`

type asyncRig struct {
	*testRig
	node    *queue.Server
	addr    string
	dataDir string
	q       *queue.Client
	j       *journal.Journal
	acc     *accept.Acceptor
}

func freeTCP(t testing.TB) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newAsyncRig runs a gateway with a real embedded queue node and a real journal.
func newAsyncRig(t *testing.T, journalMax int64) *asyncRig { return newAsyncRigTB(t, journalMax) }

func newAsyncRigB(b *testing.B) *asyncRig { return newAsyncRigTB(b, 0) }

func newAsyncRigTB(t testing.TB, journalMax int64) *asyncRig {
	t.Helper()
	ar := &asyncRig{addr: freeTCP(t), dataDir: t.TempDir()}
	ar.startNode()
	t.Cleanup(func() {
		if ar.node != nil {
			ar.node.Shutdown()
		}
	})
	var err error
	ar.q, err = queue.Connect(queue.Options{URLs: "nats://" + ar.addr, Stream: queue.StreamConfig{Name: "G", Replicas: 1, MaxAge: time.Hour, MaxBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ar.q.Close)
	waitFor(t, "queue connected", ar.q.Connected)
	if _, err := ar.q.EnsureStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	ar.j, _, err = journal.Open(journal.Options{Dir: t.TempDir(), MaxBytes: journalMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ar.j.Close() })
	committers, _ := strconv.Atoi(os.Getenv("FLOODGATE_COMMITTERS"))
	ar.acc, err = accept.New(accept.Options{Queue: ar.q, Journal: accept.JournalAdapter{J: ar.j}, PublishTimeout: 500 * time.Millisecond, RetryQueueAfter: 100 * time.Millisecond, Committers: committers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ar.acc.Close)
	ar.testRig = newRigOpts(t, Options{Acceptor: ar.acc, InstanceID: "test-gw"}, asyncYAML)
	return ar
}

func (ar *asyncRig) startNode() {
	s, err := queue.StartServer(queue.ServerOptions{Name: "n1", Listen: ar.addr, DataDir: ar.dataDir})
	if err != nil {
		ar.t.Fatal(err)
	}
	ar.node = s
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 60s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stored returns the grants in the stream, by id.
func (ar *asyncRig) stored() map[string][]*grant.Record {
	ar.t.Helper()
	out := map[string][]*grant.Record{}
	ctx, cancel := context.WithTimeout(context.Background(), itest.MinWait)
	defer cancel()
	err := ar.q.Scan(ctx, queue.SubjectPrefix+">", time.Time{}, func(m queue.Message) error {
		r, err := grant.Decode(m.Data)
		if err != nil {
			return err
		}
		if m.Subject != queue.Subject(r.Route) {
			return fmt.Errorf("grant of route %s on subject %s", r.Route, m.Subject)
		}
		out[r.ID] = append(out[r.ID], r)
		return nil
	})
	if err != nil {
		ar.t.Fatal(err)
	}
	return out
}

type acceptBody struct {
	OK        bool   `json:"ok"`
	GrantID   string `json:"grant_id"`
	Duplicate bool   `json:"duplicate"`
}

func (ar *asyncRig) post(uri, key, body string, hdr map[string]string) (*fasthttp.Response, acceptBody) {
	ar.t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod("POST")
	req.SetRequestURI(uri)
	req.Header.SetHost("gw.test")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != "" {
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetBodyString(body)
	}
	resp := &fasthttp.Response{}
	if err := ar.client.Do(req, resp); err != nil {
		ar.t.Fatalf("POST %s: %v", uri, err)
	}
	var b acceptBody
	if resp.StatusCode() == 202 {
		if err := json.Unmarshal(resp.Body(), &b); err != nil {
			ar.t.Fatalf("202 body %q: %v", resp.Body(), err)
		}
	}
	return resp, b
}

func verdict(r *fasthttp.Response) string { return string(r.Header.Peek(VerdictHeader)) }

func TestAsyncAcceptsDurablyAndRecordsTheRequest(t *testing.T) {
	ar := newAsyncRig(t, 0)
	resp, b := ar.post("/grant?user=10001&prize=red", "k-1", "note=hi", map[string]string{"X-Trace": "t1", "X-Other": "dropped"})
	if resp.StatusCode() != 202 || verdict(resp) != "async/accepted" || !b.OK || b.Duplicate {
		t.Fatalf("got %d %q %s", resp.StatusCode(), verdict(resp), resp.Body())
	}
	if b.GrantID != grant.ID("grant", "k-1") {
		t.Fatalf("grant id %q, want %q", b.GrantID, grant.ID("grant", "k-1"))
	}
	got := ar.stored()[b.GrantID]
	if len(got) != 1 {
		t.Fatalf("the stream holds %d copies of the grant", len(got))
	}
	r := got[0]
	if r.Route != "grant" || r.Key != "k-1" || r.Method != "POST" || r.Path != "/grant" || r.Query != "user=10001&prize=red" ||
		string(r.Body) != "note=hi" || r.Gateway != "test-gw" || r.Accepted == 0 {
		t.Fatalf("recorded %+v", r)
	}
	want := []grant.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}, {Name: "X-Trace", Value: "t1"}}
	if len(r.Headers) != 2 || r.Headers[0] != want[0] || r.Headers[1] != want[1] {
		t.Fatalf("kept headers %+v, want %+v (Content-Type always, then keep_headers)", r.Headers, want)
	}
}

// TestAsyncKeepsEveryLineOfAKeptHeader: a kept header sent on several lines is recorded
// (and so delivered) with every line, in order; PeekBytes kept only the first.
func TestAsyncKeepsEveryLineOfAKeptHeader(t *testing.T) {
	ar := newAsyncRig(t, 0)
	res := firstRawAnswer(t, ar, "POST /grant?user=1&prize=p HTTP/1.1\r\nHost: gw.test\r\nIdempotency-Key: k-lines\r\nX-Trace: t1\r\nX-Other: o\r\nX-Trace: t2\r\nContent-Length: 0\r\n\r\n")
	if !strings.Contains(res, " 202 ") {
		t.Fatalf("got %q, want 202", res)
	}
	var got []grant.Header
	for _, recs := range ar.stored() {
		for _, r := range recs {
			if r.Key == "k-lines" {
				got = r.Headers
			}
		}
	}
	want := []grant.Header{{Name: "X-Trace", Value: "t1"}, {Name: "X-Trace", Value: "t2"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("kept headers %+v, want %+v", got, want)
	}
}

// TestAsyncRecordsTheForwardedPath: the path is recorded as the gateway forwards it
// (target.go), not decoded: the deliverer writes the recorded path into its request
// line, where "/grant/ x?y" would break the line and cut the path at the '?'. A path in
// its routed form is recorded as sent (fasthttp's quoting would have made "!" "%21"),
// another one in that form.
func TestAsyncRecordsTheForwardedPath(t *testing.T) {
	ar := newAsyncRig(t, 0)
	for i, tc := range []struct{ desc, path, want string }{
		{"escapes a path cannot do without", "/grant/%20x%3Fy/caf%C3%A9", "/grant/%20x%3Fy/caf%C3%A9"},
		{"sub-delimiters as sent", "/grant/a!b(1)*;c=d", "/grant/a!b(1)*;c=d"},
		{"dot segments and escapes of letters: the routed form", "/grant/x/../%41", "/grant/A"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			resp, b := ar.post(tc.path+"?user=1&prize=p&a=%7E", fmt.Sprintf("k-path-%d", i), "", nil)
			if resp.StatusCode() != 202 {
				t.Fatalf("got %d %s", resp.StatusCode(), resp.Body())
			}
			got := ar.stored()[b.GrantID]
			if len(got) != 1 || got[0].Path != tc.want || got[0].Query != "user=1&prize=p&a=%7E" {
				t.Fatalf("recorded %+v, want path %s and query user=1&prize=p&a=%%7E", got, tc.want)
			}
		})
	}
}

func TestAsyncResubmissionAndBadRequests(t *testing.T) {
	ar := newAsyncRig(t, 0)
	_, first := ar.post("/grant?user=1&prize=red", "same", "", nil)
	for _, tc := range []struct {
		desc, uri, key, wantVerdict string
		wantStatus                  int
		wantDup                     bool
	}{
		{"resubmission: same id, answered from memory", "/grant?user=1&prize=red", "same", "async/accepted", 202, true},
		{"same key, other content: conflict", "/grant?user=2&prize=red", "same", "async/conflict", 409, false},
		{"no key", "/grant?user=1&prize=red", "", "async/missing_key", 400, false},
		{"key too long", "/grant?user=1&prize=red", strings.Repeat("k", 257), "async/bad_key", 400, false},
		{"required field missing", "/grant?user=1", "k-2", "async/bad_request", 400, false},
	} {
		resp, b := ar.post(tc.uri, tc.key, "", nil)
		if resp.StatusCode() != tc.wantStatus || verdict(resp) != tc.wantVerdict {
			t.Errorf("%s: got %d %q, want %d %q", tc.desc, resp.StatusCode(), verdict(resp), tc.wantStatus, tc.wantVerdict)
			continue
		}
		if tc.wantStatus == 202 && (b.GrantID != first.GrantID || b.Duplicate != tc.wantDup) {
			t.Errorf("%s: body %+v, want id %s duplicate %v", tc.desc, b, first.GrantID, tc.wantDup)
		}
	}
	// a filter's rejection is never recorded
	if resp := ar.do("GET", "/grant?user=1&prize=red", map[string]string{"Idempotency-Key": "by-get"}); verdict(resp) != "acl/method_not_allowed" {
		t.Fatalf("GET: %q", verdict(resp))
	}
	st := ar.stored()
	if len(st) != 1 || len(st[first.GrantID]) != 1 {
		t.Fatalf("stream holds %v; want exactly the one accepted grant", st)
	}
}

func TestAsyncJournalWhileQueueDownThenReplay(t *testing.T) {
	ar := newAsyncRig(t, 0)
	ar.node.Shutdown()
	ar.node = nil
	waitFor(t, "client disconnected", func() bool { return !ar.q.Connected() })
	ids := map[string]bool{}
	for i := 0; i < 50; i++ {
		resp, b := ar.post(fmt.Sprintf("/grant?user=%d&prize=red", i), fmt.Sprintf("down-%d", i), "", nil)
		if resp.StatusCode() != 202 {
			t.Fatalf("grant %d with the queue down: %d %q", i, resp.StatusCode(), verdict(resp))
		}
		ids[b.GrantID] = true
	}
	if n := ar.j.Stats().PendingRecords; n != 50 {
		t.Fatalf("journal holds %d grants, want 50", n)
	}
	ar.startNode()
	waitFor(t, "journal replayed into the queue", func() bool { return ar.j.Stats().PendingRecords == 0 })
	st := ar.stored()
	for id := range ids {
		if len(st[id]) == 0 {
			t.Errorf("grant %s acknowledged while the queue was down is not in the queue", id)
		}
	}
	waitFor(t, "new grants go to the queue again", ar.acc.QueueOK)
	if s := ar.acc.Snapshot(); s.Journaled != 50 || s.Replayed != 50 {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestAsyncUnavailableWhenNothingCanStore(t *testing.T) {
	ar := newAsyncRig(t, 1<<20) // 1 MiB journal
	ar.node.Shutdown()
	ar.node = nil
	waitFor(t, "client disconnected", func() bool { return !ar.q.Connected() })
	body := "pad=" + strings.Repeat("x", 15000)
	var accepted, refused int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				resp, _ := ar.post("/grant?user=1&prize=red", fmt.Sprintf("full-%d-%d", w, i), body, nil)
				mu.Lock()
				switch {
				case resp.StatusCode() == 202:
					accepted++
				case verdict(resp) == "async/unavailable" && resp.StatusCode() == 503 && string(resp.Body()) == "not recorded":
					refused++
				default:
					t.Errorf("unexpected answer %d %q", resp.StatusCode(), verdict(resp))
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if accepted == 0 || refused == 0 {
		t.Fatalf("accepted %d, refused %d: want both (the 1 MiB journal fills up)", accepted, refused)
	}
	if got := ar.j.Stats().PendingRecords; got != int64(accepted) {
		t.Fatalf("journal holds %d grants, %d were acknowledged", got, accepted)
	}
	if ar.j.Stats().Failed {
		t.Fatal("a full journal must refuse, not fail")
	}
}

func TestAsyncOutcomes(t *testing.T) {
	bc := func(name string) *filters.Reason {
		return filters.NewBuildContext(filters.Route{Name: "grant"}, "async", nil, nil, nil).Reason(name, 0)
	}
	for _, tc := range []struct {
		reason *filters.Reason
		want   outcome
	}{
		{nil, outAdmitted},
		{bc("accepted"), outAdmitted},
		{bc("unavailable"), outFailed},
		{bc("missing_key"), outShed},
		{bc("conflict"), outShed},
	} {
		if got := outcomeOf(tc.reason); got != tc.want {
			t.Errorf("outcomeOf(%v) = %v, want %v", tc.reason, got, tc.want)
		}
	}
}

// firstRawAnswer writes raw to the rig's gateway on a connection of its own and returns
// the status line of the answer (a raw request keeps repeated lines as written; the
// rig's fasthttp client would fold a header map).
func firstRawAnswer(t *testing.T, ar *asyncRig, raw string) string {
	t.Helper()
	c, err := ar.net.dial("gateway:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(itest.MinWait))
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return line
}
