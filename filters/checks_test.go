package filters

import (
	"errors"
	"strings"
	"testing"
)

func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		desc string
		err  error
		want string // "" = no problem; else a part of the message
	}{
		{"status 429", CheckStatus("status", 429, ""), ""},
		{"status 599", CheckStatus("status", 599, ""), ""},
		{"status 200", CheckStatus("status", 200, ""), "status: want a 4xx or 5xx status (got 200)"},
		{"status 600", CheckStatus("status", 600, ""), "status: want a 4xx or 5xx status (got 600)"},
		{"status 0 not allowed", CheckStatus("status", 0, ""), "(got 0)"},
		{"status 0 for the fallback", CheckStatus("shed_status", 0, "the route's fallback"), ""},
		{"status 302 with zero", CheckStatus("shed_status", 302, "the route's fallback"), "shed_status: want a 4xx or 5xx status, or 0 for the route's fallback (got 302)"},
		{"rate 10", CheckRate("rate", 10), ""},
		{"rate 0", CheckRate("tiers.a.rate", 0), "tiers.a.rate: must be a number of requests per second > 0"},
		{"rate too high", CheckRate("rate", 1e30), "rate: must be at most"},
		{"burst unset", CheckBurst("burst", 0, 10), ""},
		{"burst negative", CheckBurst("burst", -1, 10), "burst: must be >= 1 (or unset for rate/10) (got -1)"},
		{"burst too large", CheckBurst("burst", MaxBurst+1, 1e6), "burst: must be at most 1000000000"},
		{"window too long", CheckBurst("burst", 1000, 0.001), "burst/rate"},
		{"window not checked for a bad rate", CheckBurst("burst", 1000, 0), ""},
		{"host:port", CheckHostPort("127.0.0.1:8080"), ""},
		{"port 0 to listen", CheckHostPort("127.0.0.1:0"), ""},
		{"no port", CheckHostPort("localhost"), `want host:port, got "localhost"`},
		{"no host", CheckHostPort(":80"), "want an explicit host"},
		{"bad port", CheckHostPort("a:70000"), `bad port in "a:70000"`},
		{"dial", CheckDialAddr("127.0.0.1:8083"), ""},
		{"dial port 0", CheckDialAddr("127.0.0.1:0"), "port 0 cannot be connected to"},
		{"dial port 00", CheckDialAddr("127.0.0.1:00"), "port 0 cannot be connected to"},
		{"path", CheckPathPrefix("/lottery"), ""},
		{"path relative", CheckPathPrefix("lottery"), "must start with '/'"},
		{"path encoded", CheckPathPrefix("/a%2Fb"), "plain, normalized"},
		{"path dot-dot", CheckPathPrefix("/a/.."), "plain, normalized"},
		{"path empty segment", CheckPathPrefix("/a//b"), "plain, normalized"},
	} {
		switch {
		case tc.want == "" && tc.err != nil:
			t.Errorf("%s: unexpected problem: %v", tc.desc, tc.err)
		case tc.want != "" && tc.err == nil:
			t.Errorf("%s: no problem, want %q", tc.desc, tc.want)
		case tc.want != "" && !strings.Contains(tc.err.Error(), tc.want):
			t.Errorf("%s: %q does not contain %q", tc.desc, tc.err, tc.want)
		}
		var fe *FieldError
		if tc.err != nil && strings.HasPrefix(tc.desc, "status") && !errors.As(tc.err, &fe) {
			t.Errorf("%s: not a FieldError: %T", tc.desc, tc.err)
		}
	}
}

func TestDefaultBurst(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		burst int64
		rate  float64
		want  int64
	}{
		{"set", 7, 100, 7},
		{"rate/10", 0, 100, 10},
		{"rounded up", 0, 101, 11},
		{"at least 1", 0, 0.5, 1},
	} {
		if got := DefaultBurst(tc.burst, tc.rate); got != tc.want {
			t.Errorf("%s: DefaultBurst(%d, %v) = %d, want %d", tc.desc, tc.burst, tc.rate, got, tc.want)
		}
	}
}

func TestHeaderNames(t *testing.T) {
	for _, tc := range []struct {
		name       string
		valid, hop bool
	}{
		{"X-App", true, false},
		{"Connection", true, true},
		{"proxy-authorization", true, true},
		{"Proxy", true, false},
		{"X App", false, false},
		{"X:App", false, false},
		{"X/App", false, false},
		{"", false, false},
		{"X-\u00e4", false, false},
	} {
		if got := ValidHeaderName(tc.name); got != tc.valid {
			t.Errorf("ValidHeaderName(%q) = %v", tc.name, got)
		}
		if got := IsHopByHop(tc.name); got != tc.hop {
			t.Errorf("IsHopByHop(%q) = %v", tc.name, got)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct{ desc, in, want, err string }{
		{"network", "10.1.0.0/8", "10.0.0.0/8", ""},
		{"address", "192.0.2.1", "192.0.2.1/32", ""},
		{"v4-mapped address", "::ffff:192.0.2.1", "192.0.2.1/32", ""},
		{"v6 address", "2001:db8::1", "2001:db8::1/128", ""},
		{"bad network", "10.0.0.0/33", "", "not a network"},
		{"bad address", "ten", "", "not an address or network"},
	} {
		p, err := ParsePrefix(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.desc, err, tc.err)
			}
		case err != nil || p.String() != tc.want:
			t.Errorf("%s: %v, %v; want %s", tc.desc, p, err, tc.want)
		}
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		desc, in string
		want     int64
		err      string
	}{
		{"bytes", "512", 512, ""},
		{"KiB", "8KiB", 8 << 10, ""},
		{"MB", "2 MB", 2_000_000, ""},
		{"negative", "-1", 0, "not a size"},
		{"junk", "big", 0, "not a size"},
		{"overflow", "9999999999GiB", 0, "too large"},
	} {
		var s Size
		err := s.UnmarshalText([]byte(tc.in))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("size %s: error %v, want %q", tc.desc, err, tc.err)
			}
		case err != nil || int64(s) != tc.want:
			t.Errorf("size %s: %d, %v; want %d", tc.desc, s, err, tc.want)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte(" 250ms ")); err != nil || d.D().Milliseconds() != 250 || d.String() != "250ms" {
		t.Errorf("duration 250ms: %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("-1s")); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative duration: %v", err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Errorf("junk duration: %v", err)
	}
}
