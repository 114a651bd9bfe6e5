package packfile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func gz(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReadFrom(t *testing.T) {
	valid := gz(t, "1\n2\n3\n")
	cases := []struct {
		desc    string
		in      string
		want    []uint64
		wantErr string // substring; "" means no error
	}{
		{desc: "empty file", in: "", want: nil},
		{desc: "one number no newline", in: "42", want: []uint64{42}},
		{desc: "plain lines", in: "1\n22\n333\n", want: []uint64{1, 22, 333}},
		{desc: "CRLF line ends", in: "1\r\n2\r\n3", want: []uint64{1, 2, 3}},
		{desc: "blank and comment lines", in: "# header\n\n1\n   \n\t# indented comment\n2\n#3\n", want: []uint64{1, 2}},
		{desc: "surrounding spaces and tabs", in: "  7  \n\t8\t\r\n", want: []uint64{7, 8}},
		{desc: "byte order mark on line 1", in: "\xef\xbb\xbf10001\n10002\n", want: []uint64{10001, 10002}},
		{desc: "largest uint64", in: "18446744073709551615\n0\n", want: []uint64{1<<64 - 1, 0}},
		{desc: "leading zeros", in: "007\n", want: []uint64{7}},
		{desc: "gzip detected by magic bytes", in: gz(t, "5\r\n# c\n6\n"), want: []uint64{5, 6}},
		{desc: "letters in number", in: "1\n12a3\n", wantErr: `pack.txt:2: malformed number "12a3"`},
		{desc: "uint64 overflow", in: "18446744073709551616\n", wantErr: `pack.txt:1: malformed number "18446744073709551616"`},
		{desc: "21 digits", in: "100000000000000000000", wantErr: `pack.txt:1: malformed number`},
		{desc: "negative", in: "5\n\n-1\n", wantErr: `pack.txt:3: malformed number "-1"`},
		{desc: "two numbers on a line", in: "1 2\n", wantErr: `pack.txt:1: malformed number "1 2"`},
		{desc: "inline comment", in: "1 # x\n", wantErr: `pack.txt:1: malformed number "1 # x"`},
		{desc: "bom not on line 1", in: "1\n\xef\xbb\xbf2\n", wantErr: `pack.txt:2: malformed number`},
		{desc: "long bad line is shortened", in: strings.Repeat("9", 500), wantErr: `pack.txt:1: malformed number "` + strings.Repeat("9", 64) + `"`},
		{desc: "line over MaxLineLen", in: strings.Repeat(" ", MaxLineLen+10) + "1", wantErr: "pack.txt:1: line longer than"},
		{desc: "truncated gzip", in: valid[:len(valid)-6], wantErr: "pack.txt:"},
		{desc: "gzip bad checksum", in: valid[:len(valid)-8] + "\x00\x00\x00\x00" + valid[len(valid)-4:], wantErr: "checksum"},
		{desc: "gzip magic then garbage", in: "\x1f\x8bxxxxxxxxxxxxx", wantErr: "pack.txt: gzip:"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			var got []uint64
			n, err := ReadFrom(strings.NewReader(tc.in), "pack.txt", func(n uint64) error {
				got = append(got, n)
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !slices.Equal(got, tc.want) || n != len(tc.want) {
				t.Fatalf("got %v (count %d), want %v", got, n, tc.want)
			}
		})
	}
}

func TestReadCallbackErrorStops(t *testing.T) {
	stop := errors.New("stop")
	var seen int
	n, err := ReadFrom(strings.NewReader("1\n2\n3\n"), "p", func(uint64) error {
		seen++
		if seen == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 1 || seen != 2 {
		t.Fatalf("got n=%d seen=%d err=%v; want n=1 seen=2 err=stop unchanged", n, seen, err)
	}
}

func TestReadPath(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		desc    string
		file    string
		content string
		want    int
		wantErr string
	}{
		{desc: "plain file", file: "a.txt", content: "1\n2\n", want: 2},
		{desc: "gzip under a .txt name", file: "b.txt", content: gz(t, "1\n2\n3\n"), want: 3},
		{desc: "plain text under a .gz name", file: "c.txt.gz", content: "4\n", want: 1},
		{desc: "error names the path", file: "d.txt", content: "1\nx\n", wantErr: filepath.Join(dir, "d.txt") + `:2: malformed number "x"`},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			n, err := Read(p, func(uint64) error { return nil })
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.want {
				t.Fatalf("got %d, %v; want %d", n, err, tc.want)
			}
		})
	}
	if _, err := Read(filepath.Join(dir, "missing.txt"), func(uint64) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestParseNumber(t *testing.T) {
	cases := []struct {
		desc string
		in   string
		want uint64
		ok   bool
	}{
		{desc: "zero", in: "0", want: 0, ok: true},
		{desc: "qq number", in: "123456789", want: 123456789, ok: true},
		{desc: "19 digits", in: "9999999999999999999", want: 9999999999999999999, ok: true},
		{desc: "max uint64", in: "18446744073709551615", want: 1<<64 - 1, ok: true},
		{desc: "max uint64 + 1", in: "18446744073709551616", ok: false},
		{desc: "20 nines", in: "99999999999999999999", ok: false},
		{desc: "21 digits", in: "000000000000000000001", ok: false},
		{desc: "empty", in: "", ok: false},
		{desc: "sign", in: "+1", ok: false},
		{desc: "space", in: " 1", ok: false},
		{desc: "letter", in: "1x", ok: false},
		{desc: "colon (after '9')", in: "1:", ok: false},
		{desc: "slash (before '0')", in: "1/", ok: false},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok := ParseNumber([]byte(tc.in))
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("ParseNumber(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			if tc.ok {
				if s := strconv.FormatUint(got, 10); strings.TrimLeft(tc.in, "0") != strings.TrimLeft(s, "0") {
					t.Fatalf("round trip: %q -> %s", tc.in, s)
				}
			}
		})
	}
}

func TestParseNumberAllocs(t *testing.T) {
	b := []byte("18446744073709551615")
	if a := testing.AllocsPerRun(100, func() { ParseNumber(b) }); a != 0 {
		t.Fatalf("ParseNumber allocates %v times per call", a)
	}
}

// makePack returns n numbers, one per line, like a real QQ-number pack.
func makePack(n int) []byte {
	b := make([]byte, 0, n*11)
	for i := range n {
		b = strconv.AppendUint(b, 100000000+uint64(i)*7, 10)
		b = append(b, '\n')
	}
	return b
}

// TestTenMillionLines reads 10 million lines and logs the time (the speed itself is
// measured by BenchmarkReadFrom: a timed assertion fails on a loaded machine).
func TestTenMillionLines(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	data := makePack(10_000_000)
	start := time.Now()
	var sum uint64
	n, err := ReadFrom(bytes.NewReader(data), "big", func(v uint64) error { sum += v; return nil })
	took := time.Since(start)
	if err != nil || n != 10_000_000 {
		t.Fatalf("got %d, %v", n, err)
	}
	t.Logf("10M lines (%d MB) in %v", len(data)>>20, took)
}

func BenchmarkReadFrom(b *testing.B) {
	data := makePack(1_000_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadFrom(bytes.NewReader(data), "bench", func(uint64) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/line")
}

func BenchmarkReadFromGzip(b *testing.B) {
	data := []byte(gz(b, string(makePack(1_000_000))))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadFrom(bytes.NewReader(data), "bench", func(uint64) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/line")
}

func BenchmarkParseNumber(b *testing.B) {
	in := []byte("123456789012")
	for b.Loop() {
		ParseNumber(in)
	}
}
