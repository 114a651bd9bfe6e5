package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/metrics"
)

// restartOnly lists the settings fixed for the life of the process: the listener and
// the fasthttp server limits. An update that changes them is rejected with a message
// saying a restart is needed (routes, pools and filters change live).
func restartOnly(c *config.Config) config.Server {
	s := c.Server
	s.VerdictHeader = false
	s.TrustedProxies = nil
	return s
}

// NewServer returns the fasthttp server for the first configuration, with the safe limits
// of RELIABILITY.md. Call it after the first successful Apply.
func (g *Gateway) NewServer() (*fasthttp.Server, error) {
	st := g.state.Load()
	if st == nil {
		return nil, errors.New("gateway: no configuration applied yet")
	}
	sc := st.cfg.Server
	s := &fasthttp.Server{
		Handler:                       g.serve,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		ReadTimeout:                   sc.ReadTimeout.D(),
		WriteTimeout:                  sc.WriteTimeout.D(),
		IdleTimeout:                   sc.IdleTimeout.D(),
		ReadBufferSize:                int(sc.ReadBufferSize),
		MaxRequestBodySize:            int(sc.MaxRequestBody),
		Concurrency:                   sc.Concurrency,
		CloseOnShutdown:               true,
		TCPKeepalive:                  true,
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
		ReduceMemoryUsage:             false,
		HeaderReceived:                g.headerReceived,
		ErrorHandler:                  g.edgeError,
		Logger:                        zapPrintf{g.logger},
	}
	g.server = s
	return s, nil
}

// Serve serves traffic on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	if g.server == nil {
		if _, err := g.NewServer(); err != nil {
			return err
		}
	}
	registerOpenConns(g.server)
	return g.server.Serve(ln)
}

// Shutdown stops accepting, lets in-flight requests finish (up to the configured
// shutdown_timeout) and closes idle connections.
func (g *Gateway) Shutdown() error {
	if g.server == nil {
		return nil
	}
	timeout := 10 * time.Second
	if st := g.state.Load(); st != nil {
		timeout = st.cfg.Server.ShutdownTimeout.D()
	}
	done := make(chan error, 1)
	go func() { done <- g.server.Shutdown() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("gateway: shutdown did not finish within %s", timeout)
	}
}

var openConnsRegistered = false

func registerOpenConns(s *fasthttp.Server) {
	if openConnsRegistered {
		return
	}
	openConnsRegistered = true
	metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Name: "open_connections", Help: "Client connections open on the traffic listener.",
	}, func() float64 { return float64(s.GetOpenConnectionsCount()) }))
}

// headerReceived applies the matched route's body limit before the body is read, so an
// oversized body gets 413 without being read in full.
func (g *Gateway) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	st := g.state.Load()
	if st == nil {
		return fasthttp.RequestConfig{}
	}
	uri := h.RequestURI()
	for i, c := range uri {
		if c == '?' {
			uri = uri[:i]
			break
		}
	}
	if rt := st.match(h.Host(), uri); rt != nil {
		return fasthttp.RequestConfig{MaxRequestBodySize: rt.maxBody}
	}
	return fasthttp.RequestConfig{}
}

// edgeError answers requests fasthttp could not parse or accept (malformed, smuggling
// attempts, oversized head or body, read timeout): a well-formed answer with a verdict;
// fasthttp closes the connection after it.
func (g *Gateway) edgeError(ctx *fasthttp.RequestCtx, err error) {
	name, status := "bad_request", fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	var nerr net.Error
	switch {
	case errors.As(err, &small):
		name, status = "headers_too_large", fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		name, status = "body_too_large", fasthttp.StatusRequestEntityTooLarge
	case errors.As(err, &nerr) && nerr.Timeout():
		name, status = "timeout", fasthttp.StatusRequestTimeout
	}
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	st := g.state.Load()
	if st != nil {
		r := st.edge[name]
		r.Count()
		if st.verdictHeader {
			ctx.Response.Header.SetBytesKV(verdictHeaderName, r.VerdictBytes())
		}
	}
	ctx.SetBodyString(fasthttp.StatusMessage(status) + "\n")
}

type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.l.Warn("fasthttp", zap.String("msg", fmt.Sprintf(format, args...)))
}
