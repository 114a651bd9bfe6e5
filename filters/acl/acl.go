// Package acl is the acl filter: allow or deny requests by method, client network, path
// prefix, required headers and User-Agent. It is stateless and cheap, so it runs first in
// the chain (filters/order.go). It is also the worked example of filters/README.md.
package acl

import (
	"bytes"
	"net/netip"

	"github.com/floodgate/floodgate/filters"
)

// ACL is a built acl filter. It is immutable after Build, so Decide needs no
// synchronisation.
type ACL struct {
	methods   [][]byte
	allowNets []netip.Prefix
	denyNets  []netip.Prefix
	denyPaths [][]byte
	required  [][]byte
	badAgents [][]byte
	strip     [][]byte
	denyQuery [][]byte

	denied    *filters.Reason
	badMethod *filters.Reason
}

// Decide implements filters.Filter.
func (a *ACL) Decide(r *filters.Request) filters.Result {
	if len(a.methods) > 0 && !containsBytes(a.methods, r.Ctx.Method()) {
		return filters.RejectWith(a.badMethod)
	}
	if len(a.allowNets) > 0 && !inAny(a.allowNets, r.ClientIP) {
		return filters.RejectWith(a.denied)
	}
	if inAny(a.denyNets, r.ClientIP) {
		return filters.RejectWith(a.denied)
	}
	if len(a.denyPaths) > 0 {
		path := r.Ctx.Path()
		for _, p := range a.denyPaths {
			if bytes.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/') {
				return filters.RejectWith(a.denied)
			}
		}
	}
	for _, h := range a.required {
		if len(r.Ctx.Request.Header.PeekBytes(h)) == 0 {
			return filters.RejectWith(a.denied)
		}
	}
	if len(a.badAgents) > 0 {
		ua := r.Ctx.UserAgent()
		for _, s := range a.badAgents {
			if bytes.Contains(ua, s) {
				return filters.RejectWith(a.denied)
			}
		}
	}
	if len(a.denyQuery) > 0 {
		for _, q := range a.denyQuery {
			if _, n := r.Query(q); n > 0 {
				return filters.RejectWith(a.denied)
			}
		}
	}
	for _, h := range a.strip {
		r.Ctx.Request.Header.DelBytes(h)
	}
	return filters.Pass
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var _ filters.Filter = (*ACL)(nil)
