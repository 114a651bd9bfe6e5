package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/floodgate/floodgate/filters"
	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/internal/bytesconv"
	"github.com/floodgate/floodgate/internal/metrics"
)

// restartOnly lists the settings fixed for the life of the process: the listener and
// the fasthttp server limits. An update that changes them is rejected with a message
// saying a restart is needed (routes, pools and filters change live).
func restartOnly(c *config.Config) config.Server {
	s := c.Server
	s.VerdictHeader = false
	s.TrustedProxies = nil
	s.DrainDelay = 0
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
		Handler:                       g.guard,
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
		Logger:                        zapPrintf{sampled(g.logger)},
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
	return g.server.Serve(g.listener(ln))
}

// listener wraps the traffic listener: strict framing on every connection, and the
// server.max_conns_per_ip cap of the configuration the server was made with.
func (g *Gateway) listener(ln net.Listener) strictListener {
	l := strictListener{Listener: ln}
	st := g.state.Load()
	if st != nil && st.cfg.Server.MaxConnsPerIP > 0 {
		cc := newConnCap(st.cfg.Server.MaxConnsPerIP)
		cc.refused = func() *filters.Reason { return g.state.Load().edge["too_many_connections"] }
		cc.header = func() bool { return g.state.Load().verdictHeader }
		l.perIP = cc
	}
	return l
}

// Drain marks the gateway as shutting down: every answer from now on carries
// Connection: close. It keeps serving until Shutdown.
func (g *Gateway) Drain() { g.draining.Store(true) }

// DrainDelay is the configured drain_delay.
func (g *Gateway) DrainDelay() time.Duration {
	if st := g.state.Load(); st != nil {
		return st.cfg.Server.DrainDelay.D()
	}
	return 0
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
// oversized body gets 413 without being read in full. The route is matched on the path
// the handler will route on: a request target that fasthttp normalizes (percent-encoding,
// dot segments, "//", a fragment, absolute form) is parsed the same way first, so that
// /big/../small or /%73mall gets small's limit, not big's.
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
	var rt *route
	if plainPath(uri) {
		rt = st.match(h.Host(), uri)
	} else {
		u := fasthttp.AcquireURI()
		if u.Parse(h.Host(), h.RequestURI()) == nil {
			rt = st.match(u.Host(), u.Path())
		}
		fasthttp.ReleaseURI(u)
	}
	if rt != nil {
		return fasthttp.RequestConfig{MaxRequestBodySize: rt.maxBody}
	}
	return fasthttp.RequestConfig{}
}

// plainPath reports whether fasthttp's URI parsing leaves the origin-form path p as it is.
func plainPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i, c := range p {
		switch c {
		case '%', '#', '\\':
			return false
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return false
			}
		}
	}
	return true
}

// guard is the traffic handler: it answers 400 and closes the connection for request
// heads that fasthttp accepts but a proxy must not pass on, for CONNECT (the gateway
// tunnels nothing, and the upstream must not be asked to) and for requests without a
// host (HTTP/1.0 allows them; fasthttp's client cannot send them upstream, and the pool
// would count that as an upstream failure: a client could eject a healthy upstream).
// Then it serves the rest.
//
// It also answers 400 for a request line other than HTTP/1.1 or HTTP/1.0 (fasthttp takes
// any HTTP/x.y), for a message whose chunked framing is not strict (see framing.go), and
// for header names that normalise to a framing, hop-by-hop, proxy or gateway name
// (ambiguousHead); and it drops the fields of a chunked body's trailer section, which
// fasthttp would otherwise merge into the head forwarded upstream (RFC 9110 6.5.1 lets
// a recipient discard them; they never become headers).
func (g *Gateway) guard(ctx *fasthttp.RequestCtx) { g.check(ctx, true) }

// check is guard; wire says the request was read from a connection, which must then be
// one the strict framer follows.
func (g *Gateway) check(ctx *fasthttp.RequestCtx, wire bool) {
	h := &ctx.Request.Header
	// Every connection comes through strictListener. One that does not (a wrapper put
	// around it, as fasthttp's MaxConnsPerIP or TLS would) has no framer following it:
	// it is refused, not served unchecked.
	sc, _ := ctx.Conn().(*strictConn)
	if (wire && sc == nil) || ambiguousHead(h.RawHeaders()) || h.IsConnect() || len(h.Host()) == 0 || !knownProtocol(h.Protocol()) ||
		(sc != nil && sc.badFraming(ctx.ConnRequestNum())) || !dropTrailers(h) {
		g.edgeAnswer(ctx, "bad_request", fasthttp.StatusBadRequest)
		ctx.SetConnectionClose()
		return
	}
	if uri := h.RequestURI(); len(uri) > 0 && uri[0] != '/' {
		// Absolute form: the upstream is plain HTTP whatever scheme the client named.
		// Left as https, fasthttp's client refuses the request, which the pool counts as
		// an upstream failure: a client could eject a healthy upstream.
		ctx.Request.URI().SetSchemeBytes(schemeHTTP)
	}
	g.serve(ctx)
	if g.draining.Load() {
		// shutting down: clients reconnect (through their load balancer) elsewhere; set
		// after serve, which replaces the response with the upstream's
		ctx.SetConnectionClose()
	}
}

var schemeHTTP = []byte("http")

var (
	http10      = []byte("HTTP/1.0")
	trailerName = []byte("Trailer")
)

// knownProtocol: the request line names HTTP/1.1 or HTTP/1.0. fasthttp accepts any
// HTTP/x.y (HTTP/1.2, HTTP/2.0, HTTP/9.9) and the gateway would forward it as HTTP/1.1.
func knownProtocol(p []byte) bool { return bytes.Equal(p, http11) || bytes.Equal(p, http10) }

// maxTrailerBytes bounds the trailer section the gateway drops field by field; a larger
// one is refused (400).
const maxTrailerBytes = 2048

// dropTrailers removes the fields of a chunked body's trailer section from h, keeping
// head fields of the same names. fasthttp keeps trailer fields beside the head and
// merges them into it when the Trailer header is removed (as the hop-by-hop cleaning
// does), so without this a trailer "X-Floodgate-Packs: vip" would reach the upstream as
// a header that no filter saw. It reports false when the section is too large to drop
// without allocating.
func dropTrailers(h *fasthttp.RequestHeader) bool {
	th := h.TrailerHeader() // "name: value\r\n"... "\r\n"
	if len(th) <= 2 {
		return true
	}
	if len(th) > maxTrailerBytes {
		return false
	}
	var tbuf [maxTrailerBytes]byte
	t := tbuf[:copy(tbuf[:], th)]
	// the head's own values of every trailer name: deleting a name deletes it from both
	// sections, and fasthttp files a value added under a name received in the trailer
	// section as a trailer, until the Trailer header (the set of such names) is gone
	type saved struct{ name, value []byte }
	var vbuf [maxTrailerBytes]byte
	var keep [32]saved
	nk, nb := 0, 0
	for rest := t; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		line := rest[:i]
		rest = rest[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := line[:colon]
		fit := true
		eachRequestHeader(h, func(k, v []byte) {
			if !fit || !bytesconv.EqualFold(k, name) {
				return
			}
			if nk == len(keep) || nb+len(v) > len(vbuf) {
				fit = false
				return
			}
			keep[nk] = saved{name, vbuf[nb : nb+copy(vbuf[nb:], v)]}
			nb += len(v)
			nk++
		})
		if !fit {
			return false
		}
		h.DelBytes(name)
	}
	h.DelBytes(trailerName) // the names received in the trailer section (hop-by-hop anyway)
	for i := 0; i < nk; i++ {
		h.AddBytesKV(keep[i].name, keep[i].value)
	}
	return true
}

// dropResponseTrailers is dropTrailers for an upstream's answer: the fields of its
// trailer section never become headers of the answer the client gets; head fields of the
// same names keep their values (up to maxTrailerBytes of them, names up to 256 bytes).
// One name at a time: an answer with trailers is rare, and a section of any size is
// dropped whole.
func dropResponseTrailers(h *fasthttp.ResponseHeader) {
	if len(h.TrailerHeader()) <= 2 {
		return
	}
	type saved struct{ name, value []byte }
	var vbuf [maxTrailerBytes]byte
	var keep [32]saved
	nk, nb := 0, 0
	for range 1024 { // each pass deletes a name; a bound all the same
		th := h.TrailerHeader() // "name: value\r\n"... "\r\n"; h's buffer, reused by Header()
		colon := bytes.IndexByte(th, ':')
		if len(th) <= 2 || colon <= 0 {
			break
		}
		var nbuf [256]byte
		if colon > len(nbuf) {
			h.DelBytes(th[:colon]) // (DelBytes copies the name first) a head field of it goes too
			continue
		}
		name := nbuf[:copy(nbuf[:], th[:colon])]
		eachField(h.Header(), func(k, v []byte) {
			if !bytesconv.EqualFold(k, name) || nk == len(keep) || nb+len(name)+len(v) > len(vbuf) {
				return
			}
			n := copy(vbuf[nb:], name)
			keep[nk] = saved{vbuf[nb : nb+n], vbuf[nb+n : nb+n+copy(vbuf[nb+n:], v)]}
			nb += n + len(v)
			nk++
		})
		h.DelBytes(name)
	}
	h.DelBytes(trailerName) // the names announced (hop-by-hop anyway)
	for i := 0; i < nk; i++ {
		h.AddBytesKV(keep[i].name, keep[i].value)
	}
}

var (
	contentLengthName    = []byte("Content-Length")
	transferEncodingName = []byte("Transfer-Encoding")
	chunkedToken         = []byte("chunked")
)

// ambiguousHead reports header lines (raw: the head as received, after the request line)
// that two HTTP implementations can frame or read differently, of the kinds fasthttp
// accepts (it rejects the others itself: duplicate Content-Length or Host, space before
// the colon, control characters, bad Content-Length, Transfer-Encoding on HTTP/1.0):
//   - a line ended by a bare LF (RFC 9112 2.2 lets a server accept it; a proxy must not
//     bet that every hop does),
//   - an obsolete line fold (RFC 9112 5.2: reject with 400 or replace; we reject),
//   - whitespace inside a field name,
//   - Transfer-Encoding other than exactly "chunked" (fasthttp ignores "identity" and
//     then reads no body, leaving it to be parsed as the next request),
//   - Transfer-Encoding together with Content-Length (RFC 9112 6.1: the classic
//     smuggling pair; fasthttp lets TE win and closes, a gateway rejects).
//
// The raw head is needed: the parsed header has folded lines joined and keeps only one
// of the framing headers.
func ambiguousHead(raw []byte) bool {
	te, cl := false, false
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i <= 0 || raw[i-1] != '\r' {
			return true // bare LF
		}
		line := raw[:i-1]
		raw = raw[i+1:]
		if len(line) == 0 {
			break // the empty line ending the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			return true // obs-fold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return true
		}
		name := line[:colon]
		if bytes.IndexByte(name, ' ') >= 0 { // fasthttp rejects tabs and CTLs in names itself
			return true
		}
		if lookAlikeName(name) {
			return true // Transfer_Encoding, Content.Length, X_Forwarded_For, Proxy_Authorization...
		}
		switch len(name) {
		case len(contentLengthName):
			cl = cl || bytes.EqualFold(name, contentLengthName)
		case len(transferEncodingName):
			if bytes.EqualFold(name, transferEncodingName) {
				if te || !bytes.EqualFold(bytes.Trim(line[colon+1:], " \t"), chunkedToken) {
					return true
				}
				te = true
			}
		}
	}
	return te && cl
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
	g.edgeAnswer(ctx, name, status)
}

// edgeAnswer writes the gateway's own answer for an edge rejection with its verdict.
func (g *Gateway) edgeAnswer(ctx *fasthttp.RequestCtx, name string, status int) {
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

// sampled keeps at most 10 lines a second of l: fasthttp logs every connection it gives
// up on (malformed request, timeout) with the request's bytes, so a flood of bad requests
// would otherwise be a flood of log lines. The edge/ counters keep the full count.
func sampled(l *zap.Logger) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 10, 0)
	}))
}

type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.l.Warn("fasthttp", zap.String("msg", fmt.Sprintf(format, args...)))
}
