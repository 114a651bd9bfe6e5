package bytesconv

import "testing"

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"Connection", "connection", true},
		{"X-Forwarded-For", "x-forwarded-FOR", true},
		{"keep-alive", "keep-alivE", true},
		{"close", "closed", false},
		{"a[", "A{", false}, // only letters fold
		{"", "", true},
	} {
		if got := EqualFold([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
