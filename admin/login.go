package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"net/http"

	"go.uber.org/zap"
)

// With admin.token set, a browser logs in once with the token on /login and gets a
// session cookie: HttpOnly (scripts cannot read it), SameSite=Strict (no other site can
// make the browser send it), Secure when the admin listener is reached over TLS. Its value
// is an HMAC of the token, so it stops working when the token changes, and the token
// itself is never stored in the browser. Scripts and Prometheus keep using
// "Authorization: Bearer <token>". Every comparison is constant-time, and a client that
// keeps sending wrong tokens is locked out for a growing time (guard.go).

// sessionCookie is the cookie's name.
const sessionCookie = "floodgate_admin"

// session is the cookie value for token.
func session(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("floodgate admin session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// sessionOK reports whether r carries a valid session cookie (requests with an
// Authorization header are judged by it alone: authGuard.bearer).
func (s *Server) sessionOK(r *http.Request) bool {
	if c, err := r.Cookie(sessionCookie); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(session(s.token))) == 1
	}
	return false
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>floodgate · log in</title><link rel="icon" href="data:,">
<style>body{font:14px/1.4 system-ui,sans-serif;margin:3em auto;max-width:24em;color:#222}
input{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.3em 0}button{font:inherit;padding:.3em 1em}
.err{color:#c00}</style></head>
<body><h1>floodgate admin</h1>
{{if .Error}}<p class="err" id="login-error">{{.Error}}</p>{{end}}
{{if .NoToken}}<p>This admin listener has no token: <a href="/">open the console</a>.</p>{{else}}
<form method="post" action="/login">
<label for="token">Admin token (<code>admin.token</code>)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit" id="login">Log in</button>
</form>{{end}}
</body></html>`))

type loginData struct {
	Error   string
	NoToken bool
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		loginPage.Execute(w, loginData{NoToken: s.token == ""})
		return
	}
	if s.token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if s.refuseLocked(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		loginPage.Execute(w, loginData{Error: "could not read the form: " + err.Error()})
		return
	}
	got := r.PostForm.Get("token")
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
		s.guard.failed(clientKey(r))
		authFailures.WithLabelValues().Inc()
		s.logger.Warn("admin login refused: wrong token", s.remote(r))
		w.WriteHeader(http.StatusUnauthorized)
		loginPage.Execute(w, loginData{Error: "wrong token"})
		return
	}
	s.guard.succeeded(clientKey(r))
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: session(s.token), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.logger.Info("admin login", s.remote(r))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "log out with POST", http.StatusMethodNotAllowed)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) remote(r *http.Request) zap.Field { return zap.String("remote", r.RemoteAddr) }
