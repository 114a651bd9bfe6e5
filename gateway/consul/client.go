package consul

import (
	"fmt"
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
	cfg.HttpClient = &http.Client{Timeout: 70 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 60 * time.Second, ResponseHeaderTimeout: 65 * time.Second,
		DisableCompression: true,
	}}
	return api.NewClient(cfg)
}
