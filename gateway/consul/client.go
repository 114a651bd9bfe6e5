package consul

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ClientOptions says how to reach Consul. Empty fields fall back to Consul's own
// environment variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE).
type ClientOptions struct {
	Addr      string
	TokenFile string
}

// NewClient returns a Consul API client. The watcher needs a token with read on the
// prefix only; writes (floodgate ctl) use another token with write on it.
func NewClient(o ClientOptions) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if o.Addr != "" {
		cfg.Address = o.Addr
	}
	if o.TokenFile != "" {
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul token file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
		cfg.TokenFile = ""
	}
	// Blocking queries hold a connection for WaitTime; the transport must not time out
	// before Consul answers, but must not hang forever on a dead agent either.
	// No gzip: the agent is local (or on the LAN), and compressing a read of the prefix -
	// 9.6 MB at 50,000 keys - cost the agent and the gateway more CPU than the transfer.
	// bodyTransport lets KVLister decode the answer to a read of the prefix itself.
	cfg.HttpClient = &http.Client{Timeout: 70 * time.Second, Transport: bodyTransport{&http.Transport{
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 60 * time.Second, ResponseHeaderTimeout: 65 * time.Second,
		DisableCompression: true,
	}}}
	return api.NewClient(cfg)
}

// bodySink receives the body of a successful answer to a request whose context carries
// it (withBodySink), in place of the Consul client's decoder.
type bodySink struct {
	buf []byte // the body; its array is reused from one read to the next
	got bool
}

type bodySinkKey struct{}

func withBodySink(ctx context.Context, s *bodySink) context.Context {
	return context.WithValue(ctx, bodySinkKey{}, s)
}

// bodyTransport is the transport of a client made by NewClient. A request whose context
// carries a bodySink and that is answered 200 has its body read into the sink, and the
// Consul client is handed an empty list ("[]") to decode instead: KVLister decodes the
// read of the prefix itself (kvDecoder), with everything else - the address, TLS, token,
// datacenter and namespace parameters, blocking-query parameters and headers, the
// handling of errors and of 404 - still the client's. Other requests pass untouched.
type bodyTransport struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	sink, _ := req.Context().Value(bodySinkKey{}).(*bodySink)
	if err != nil || sink == nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	buf := sink.buf[:0]
	if n := resp.ContentLength; n > 0 && n <= maxPresize && int64(cap(buf)) < n {
		buf = make([]byte, 0, n) // a larger length is not taken on trust: read, growing
	}
	buf, err = readAll(resp.Body, buf)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading consul's answer: %w", err)
	}
	sink.buf, sink.got = buf, true
	resp.Body = io.NopCloser(strings.NewReader("[]"))
	resp.ContentLength = 2
	return resp, nil
}

// maxPresize bounds the buffer made at once for an answer from its Content-Length.
const maxPresize = 256 << 20

// readAll is io.ReadAll appending to buf (whose capacity is kept from read to read).
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
