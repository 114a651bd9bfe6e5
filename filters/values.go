package filters

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as "250ms", "2s", "1m" in configuration and Consul
// values. It lives here, beside KeySpec, so that filters and the gateway's configuration
// use one type without filters depending on the gateway (Caddy keeps caddy.Duration in
// the package its modules import for the same reason).
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration string; negative durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 250ms, 2s, 1m): %q", string(b))
	}
	if v < 0 {
		return fmt.Errorf("must not be negative: %q", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a byte count written as a number or with a unit: 8KiB, 1MiB, 1GiB (also KB, MB
// as powers of 1000).
type Size int64

// UnmarshalText parses a size.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(str, u.suffix) {
			mult = u.mult
			str = strings.TrimSpace(strings.TrimSuffix(str, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("not a size (want bytes or e.g. 64KiB, 1MiB): %q", string(b))
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("too large (at most 8EiB): %q", string(b))
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText writes the size in bytes.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }
