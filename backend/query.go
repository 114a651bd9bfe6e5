package backend

import (
	"bytes"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// QueryConfig configures a query backend.
type QueryConfig struct {
	Faults Faults
	Logger *zap.Logger // nil: no logging
}

// Query is the query backend, the light side of light/heavy separation: it answers any
// GET, HEAD or POST on any path with 200 and a small JSON body naming the first path
// segment, {"ok":true,"route":"lottery","prize":"none"}, and /healthz with "ok". Other
// methods get 405. With Faults off a request costs no allocation at all: this is the
// "direct" baseline the gateway's overhead is measured against.
type Query struct {
	*Server
}

// NewQuery returns a query backend; the error names a bad Faults value.
func NewQuery(cfg QueryConfig) (*Query, error) {
	q := &Query{}
	s, err := newServer("query", cfg.Faults, cfg.Logger, q.handle)
	if err != nil {
		return nil, err
	}
	q.Server = s
	return q, nil
}

var (
	queryHead = []byte(`{"ok":true,"route":`)
	queryTail = []byte(`,"prize":"none"}` + "\n")
)

func (q *Query) handle(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsPost() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD, POST")
		return
	}
	if q.injectFaults(ctx) {
		return
	}
	var buf [256]byte // on the stack unless the route name is long
	b := append(buf[:0], queryHead...)
	b = appendJSONString(b, firstSegment(ctx.Path()))
	b = append(b, queryTail...)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.Response.SetBody(b)
}

// firstSegment returns "lottery" for "/lottery/draw", "" for "/".
func firstSegment(path []byte) []byte {
	if len(path) > 0 && path[0] == '/' {
		path = path[1:]
	}
	if i := bytes.IndexByte(path, '/'); i >= 0 {
		path = path[:i]
	}
	return path
}
