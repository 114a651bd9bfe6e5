package filters

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

var querySeeds = []struct{ q, name string }{
	{"uin=10001", "uin"},
	{"uin=%2B10001&x=a%7Eb&sig=AB%2bcd%3D&k=a;b", "uin"},
	{"a=1&a=2", "a"},
	{"flag&uin", "uin"},
	{"=v&&uin=", "uin"},
	{"%75in=7", "uin"},
	{"u+n=1", "u n"},
	{"x=%zz&x%4", "x%4"},
	{"k=%4", "k"},
	{"k=%", "k"},
	{"%", "%"},
	{"a%2", "a%2"},
	{"sp=a+b%20c", "sp"},
	{"e=%E4%B8%AD", "e"},
	{"a=b=c", "a"},
}

// TestQueryMatchesArgs: Request.Query finds what fasthttp.Args finds (the gateway's key
// reads agree with the parsed view filters used before), on fixed cases; FuzzQuery
// searches for a difference.
func TestQueryMatchesArgs(t *testing.T) {
	for _, s := range querySeeds {
		checkQuery(t, []byte(s.q), []byte(s.name))
	}
}

func FuzzQuery(f *testing.F) {
	for _, s := range querySeeds {
		f.Add([]byte(s.q), []byte(s.name))
	}
	f.Fuzz(func(t *testing.T, q, name []byte) {
		if bytes.ContainsAny(q, "#\x00") {
			return
		}
		checkQuery(t, q, name)
	})
}

func checkQuery(t *testing.T, q, name []byte) {
	t.Helper()
	var args fasthttp.Args
	args.ParseBytes(q)
	var want []byte
	wantN := 0
	for k, v := range args.All() {
		if bytes.Equal(k, name) {
			if wantN == 0 {
				want = append([]byte{}, v...)
			}
			wantN++
		}
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.URI().SetQueryStringBytes(q)
	r := &Request{Ctx: &ctx}
	got, n := r.Query(name)
	if n != wantN || !bytes.Equal(got, want) {
		t.Fatalf("query %q, name %q: Query = %q x%d, fasthttp.Args = %q x%d", q, name, got, n, want, wantN)
	}
}

var cookieSeeds = []struct{ line, name string }{
	{"uin=10001", "uin"},
	{`uin=10001;x="quoted";  =v; bad="a\b"; flag; tab=	t`, "x"},
	{`a=1; a=2`, "a"},
	{`json={"a":1}; uin=3`, "uin"},
	{` uin = " 7 " ;uin=8`, "uin"},
	{`q=""`, "q"},
	{`q="`, "q"},
	{`;;uin=1;`, "uin"},
	{"u\tin=1", "u\tin"},
}

// TestCookieMatchesFasthttp: Request.Cookie finds what fasthttp's cookie parsing finds,
// without parsing the header (which would change the Cookie lines forwarded).
func TestCookieMatchesFasthttp(t *testing.T) {
	for _, s := range cookieSeeds {
		checkCookie(t, []byte(s.line), []byte(s.name))
	}
}

func FuzzCookie(f *testing.F) {
	for _, s := range cookieSeeds {
		f.Add([]byte(s.line), []byte(s.name))
	}
	f.Fuzz(func(t *testing.T, line, name []byte) {
		if bytes.ContainsAny(line, "\r\n\x00") || len(name) == 0 {
			return
		}
		checkCookie(t, line, name)
	})
}

func checkCookie(t *testing.T, line, name []byte) {
	t.Helper()
	parse := func() *fasthttp.RequestCtx {
		var ctx fasthttp.RequestCtx
		raw := "GET / HTTP/1.1\r\nHost: h\r\nCookie: " + string(line) + "\r\n\r\n"
		if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return nil
		}
		return &ctx
	}
	ref := parse()
	if ref == nil {
		return // not a request fasthttp reads
	}
	var want []byte
	wantN := 0
	for k, v := range ref.Request.Header.Cookies() {
		if bytes.Equal(k, name) {
			if wantN == 0 {
				want = append([]byte{}, v...)
			}
			wantN++
		}
	}
	ctx := parse()
	r := &Request{Ctx: ctx}
	got, n := r.Cookie(name)
	if n != wantN || !bytes.Equal(got, want) {
		t.Fatalf("cookie line %q, name %q: Cookie = %q x%d, fasthttp = %q x%d", line, name, got, n, want, wantN)
	}
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	ctx.Request.Write(w)
	w.Flush()
	if !bytes.Contains(out.Bytes(), []byte("Cookie: "+string(bytes.Trim(line, " \t"))+"\r\n")) {
		t.Fatalf("cookie line %q: the request is written with other Cookie lines after Cookie:\n%q", line, out.Bytes())
	}
}
