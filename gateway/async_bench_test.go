package gateway

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkAsyncAccept: whole requests client -> gateway -> acceptor -> a real queue node
// (sync always), in memory on the HTTP side, in parallel: what one accepted grant costs.
func BenchmarkAsyncAccept(b *testing.B) {
	ar := newAsyncRigB(b)
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			i := n.Add(1)
			req.Reset()
			req.Header.SetMethod("POST")
			req.SetRequestURI(fmt.Sprintf("/grant?user=%d&prize=red", i))
			req.Header.SetHost("gw.test")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("b-%d", i))
			if err := ar.client.Do(req, resp); err != nil || resp.StatusCode() != 202 {
				b.Fatalf("%v %d %s", err, resp.StatusCode(), resp.Body())
			}
		}
	})
}
