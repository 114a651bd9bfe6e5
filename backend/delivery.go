package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// DeliveryConfig configures a delivery backend.
type DeliveryConfig struct {
	// LedgerPath is the ledger file (JSON lines); created if missing, replayed if not.
	LedgerPath string
	Faults     Faults
	Logger     *zap.Logger // nil: no logging
	// Now is the clock stamped on new grants; nil means time.Now.
	Now func() time.Time
}

// MaxFieldLen bounds a grant id, user or prize, in bytes.
const MaxFieldLen = 256

// Delivery is the delivery backend: prize grants, the core operation that must never be
// lost or doubled. POST /grant records a grant, idempotent by grant id; GET /grants lists
// the ledger for reconciliation. A grant is answered only once its ledger line is fsync'd.
//
//	POST /grant  grant id: header X-Grant-Id or query grant_id; user, prize: query or form
//	  200 {"ok":true,"seq":1,"id":..,"user":..,"prize":..,"time":..,"duplicate":false}
//	  200 the same record with "duplicate":true when the id was granted before
//	  409 when the id was granted before to another user or prize (body has the original)
//	  400 naming a missing or bad field; 503 when the ledger cannot be written
//	GET /grants         every record, one JSON line each as in the ledger (application/x-ndjson)
//	GET /grants?id=X    one record, or 404
type Delivery struct {
	*Server
	ledger *ledger
	now    func() time.Time
}

// NewDelivery opens and replays the ledger (see the package README for torn-tail and
// damage handling) and returns the backend; Shutdown closes the ledger.
func NewDelivery(cfg DeliveryConfig) (*Delivery, error) {
	if cfg.LedgerPath == "" {
		return nil, errors.New("delivery backend: no ledger path")
	}
	d := &Delivery{now: cfg.Now}
	if d.now == nil {
		d.now = time.Now
	}
	s, err := newServer("delivery", cfg.Faults, cfg.Logger, d.handle)
	if err != nil {
		return nil, err
	}
	l, err := openLedger(cfg.LedgerPath, s.log)
	if err != nil {
		return nil, err
	}
	d.Server, d.ledger = s, l
	s.onClose = l.close
	return d, nil
}

// LedgerPath is the ledger file's path.
func (d *Delivery) LedgerPath() string { return d.ledger.path }

// Grants returns the acknowledged (durable) grants in ledger order.
func (d *Delivery) Grants() []Grant {
	recs := d.ledger.durable()
	out := make([]Grant, len(recs))
	for i, g := range recs {
		out[i] = *g
	}
	return out
}

// Lookup returns the acknowledged grant with this id.
func (d *Delivery) Lookup(id string) (Grant, bool) { return d.ledger.lookup(id) }

// Syncs is the number of ledger fsyncs so far. Under concurrent grants it stays well
// below the number of grants: that is group commit at work.
func (d *Delivery) Syncs() uint64 { return d.ledger.fsyncs() }

func (d *Delivery) handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/grant", "/grant/":
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return
		}
		if d.injectFaults(ctx) {
			return
		}
		d.grant(ctx)
	case "/grants", "/grants/":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		d.list(ctx)
	default:
		writeJSONError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no endpoint %s; try POST /grant or GET /grants", ctx.Path()))
	}
}

// grantReply is POST /grant's answer.
type grantReply struct {
	OK bool `json:"ok"`
	Grant
	Duplicate bool `json:"duplicate"`
}

// conflictReply is POST /grant's 409 answer.
type conflictReply struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
	Original Grant  `json:"original"`
}

func (d *Delivery) grant(ctx *fasthttp.RequestCtx) {
	id := ctx.Request.Header.Peek("X-Grant-Id")
	if len(id) == 0 {
		id = ctx.QueryArgs().Peek("grant_id")
	}
	if len(id) == 0 {
		writeJSONError(ctx, fasthttp.StatusBadRequest, "missing grant id: set header X-Grant-Id or query parameter grant_id")
		return
	}
	user, prize := ctx.FormValue("user"), ctx.FormValue("prize")
	for _, f := range [...]struct {
		name string
		v    []byte
	}{{"grant id", id}, {"user", user}, {"prize", prize}} {
		if why := checkField(f.name, string(f.v)); why != "" {
			writeJSONError(ctx, fasthttp.StatusBadRequest, why+" (user and prize come from the query or a form body)")
			return
		}
	}
	g, dup, err := d.ledger.grant(string(id), string(user), string(prize), d.now())
	switch {
	case errors.Is(err, errConflict):
		writeJSON(ctx, fasthttp.StatusConflict, conflictReply{
			Error: fmt.Sprintf("grant id %q was already granted to user %q prize %q",
				g.ID, g.User, g.Prize),
			Original: *g,
		})
	case err != nil:
		writeJSONError(ctx, fasthttp.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	default:
		writeJSON(ctx, fasthttp.StatusOK, grantReply{OK: true, Grant: *g, Duplicate: dup})
	}
}

func (d *Delivery) list(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	if args.Has("id") {
		id := args.Peek("id")
		if len(id) == 0 {
			writeJSONError(ctx, fasthttp.StatusBadRequest, "empty id")
			return
		}
		g, ok := d.ledger.lookup(string(id))
		if !ok {
			writeJSONError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no grant with id %q", id))
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, g)
		return
	}
	var b []byte
	for _, g := range d.ledger.durable() {
		b = appendRecord(b, g)
	}
	ctx.Response.Header.SetContentTypeBytes(contentNDJSON)
	ctx.Response.SetBodyRaw(b)
}

// checkField says what is wrong with a grant field ("" if nothing): missing, too long,
// or not printable UTF-8. The ledger holds only fields that pass, so a record reads back
// byte for byte as it was written.
func checkField(name, v string) string {
	switch {
	case v == "":
		return fmt.Sprintf("missing field %q", name)
	case len(v) > MaxFieldLen:
		return fmt.Sprintf("field %q is longer than %d bytes", name, MaxFieldLen)
	case !utf8.ValidString(v):
		return fmt.Sprintf("field %q is not valid UTF-8: %q", name, v)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return fmt.Sprintf("field %q has a non-printable character: %q", name, v)
		}
	}
	return ""
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeJSONError(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.Response.SetBodyRaw(append(b, '\n'))
}
