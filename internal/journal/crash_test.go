package journal

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	crashDirEnv   = "JOURNAL_CRASH_DIR"
	crashStartEnv = "JOURNAL_CRASH_START"
)

func crashSize(i int) int { return 50 + i*37%1500 }

// drillRounds is FLOODGATE_JOURNAL_ROUNDS (make drill-journal) or def.
func drillRounds(def int) int {
	if n, err := strconv.Atoi(os.Getenv("FLOODGATE_JOURNAL_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return def
}

// TestCrashChild is the process TestCrashKill kills: it appends payloads from four
// goroutines, printing "A <index>" once an Append has returned nil, and replays
// (Pending, print "S <index>" for each record, Commit) at the same time, until it is
// killed. It does nothing in a normal test run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only run as the child of TestCrashKill")
	}
	start, _ := strconv.Atoi(os.Getenv(crashStartEnv))
	time.AfterFunc(60*time.Second, func() { os.Exit(3) }) // the parent is gone
	j, _, err := Open(Options{Dir: dir, SegmentBytes: 16 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var outMu sync.Mutex
	say := func(kind byte, i int) {
		line := append(strconv.AppendInt([]byte{kind, ' '}, int64(i), 10), '\n')
		outMu.Lock()
		os.Stdout.Write(line) // one write per line, unbuffered
		outMu.Unlock()
	}
	var next atomic.Int64
	next.Store(int64(start))
	for range 4 {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if err := j.Append(payload(i, crashSize(i))); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				say('A', i)
			}
		}()
	}
	for {
		es, cur, err := j.Pending(64)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, e := range es {
			var i int
			fmt.Sscanf(string(e.Payload), "grant-%08d|", &i)
			say('S', i)
		}
		if err := j.Commit(cur); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	}
}

// TestCrashKill SIGKILLs a process that appends and replays, at random moments, 20
// times (FLOODGATE_JOURNAL_ROUNDS to change it: make drill-journal). After each kill, Open must find every record whose Append had returned (and
// that was not stored by the replayer before the kill) - 0 lost - and nothing that is
// not a byte-exact payload that was appended, with no damage reported.
func TestCrashKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	acked := make(map[int]bool)
	stored := make(map[int]bool)
	rounds, totalAcks, dupes := drillRounds(20), 0, 0
	if rounds >= 999 {
		t.Fatalf("%d rounds: at most 998 (payload ids have 8 digits)", rounds)
	}
	began := time.Now()
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStartEnv+"="+strconv.Itoa((round+1)*100_000)) // < 10^8: payload ids have 8 digits
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 1 + rand.IntN(400) // acknowledged appends in this round
		sc := bufio.NewScanner(out)
		n, killed := 0, false
		for sc.Scan() {
			kind, num, ok := strings.Cut(sc.Text(), " ")
			i, err := strconv.Atoi(num)
			if !ok || err != nil {
				continue // test framework output
			}
			switch kind {
			case "A":
				acked[i] = true
				n++
			case "S":
				stored[i] = true
			}
			if n >= killAfter && !killed {
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		werr := cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended before the kill (%v): %s", round, werr, stderr.String())
		}
		totalAcks += n

		j, rep, err := Open(Options{Dir: dir, SegmentBytes: 16 << 10})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		if len(rep.Quarantined) != 0 {
			t.Fatalf("round %d: damage after a process kill: %v", round, rep.Quarantined)
		}
		es, _ := all(t, j)
		j.Close()
		pending := make(map[int]bool, len(es))
		for _, e := range es {
			var i int
			if _, err := fmt.Sscanf(string(e.Payload), "grant-%08d|", &i); err != nil || string(e.Payload) != string(payload(i, crashSize(i))) {
				t.Fatalf("round %d: invented record %q", round, trim(e.Payload))
			}
			if pending[i] {
				t.Fatalf("round %d: record %d pending twice", round, i)
			}
			pending[i] = true
			if stored[i] {
				dupes++ // stored, then killed before Commit: replayed again by design
			}
		}
		for i := range acked {
			if !pending[i] && !stored[i] {
				t.Fatalf("round %d: acknowledged record %d lost (neither pending nor stored)", round, i)
			}
		}
		if rounds <= 20 {
			t.Logf("round %d: killed after %d acks; torn %d bytes; %d pending", round, n, rep.TornBytes, len(es))
		}
	}
	t.Logf("%d rounds, %d acknowledged appends, 0 lost, %d stored-then-pending duplicates, %s",
		rounds, totalAcks, dupes, time.Since(began).Round(time.Millisecond))
}

// TestPowerCutSimulation models a power cut: only bytes covered by a completed fsync
// survive. The Fsync hook records, per file, the size an fsync covered; at random
// moments while 16 goroutines append and a replayer stores and commits, the journal is
// copied with every segment cut to that size (what a power cut would leave at best),
// and Open of the copy must hold every record acknowledged and not yet stored before
// the cut. A Journal that acknowledged before its fsync completed fails this; a process
// kill (TestCrashKill) cannot show that.
func TestPowerCutSimulation(t *testing.T) {
	dir := t.TempDir()
	var (
		mu      sync.Mutex
		durable = make(map[string]int64) // file name -> bytes covered by a completed fsync
	)
	fsync := func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		time.Sleep(300 * time.Microsecond) // like a real fsync: what it covers is durable only when it returns
		mu.Lock()
		durable[filepath.Base(f.Name())] = fi.Size()
		mu.Unlock()
		return nil
	}
	j, _ := open(t, Options{Dir: dir, SegmentBytes: 32 << 10, Fsync: fsync})
	defer j.Close()
	var (
		ackMu        sync.Mutex
		acked        = make(map[int]bool) // acknowledged, not yet stored by the replayer
		early        = make(map[int]bool) // stored before its Append had returned
		next         atomic.Int64
		stop         atomic.Bool
		wg           sync.WaitGroup
		cuts, checks int
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := int(next.Add(1))
				if err := j.Append(payload(i, crashSize(i))); err != nil {
					t.Error(err)
					return
				}
				ackMu.Lock()
				if early[i] {
					delete(early, i) // the replayer stored it before we got here
				} else {
					acked[i] = true
				}
				ackMu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() { // the replayer: "stores" records (forgets them), then commits
		defer wg.Done()
		for !stop.Load() {
			es, cur, err := j.Pending(100)
			if err != nil {
				t.Error(err)
				return
			}
			ackMu.Lock()
			for _, e := range es {
				var i int
				fmt.Sscanf(string(e.Payload), "grant-%08d|", &i)
				if acked[i] {
					delete(acked, i)
				} else {
					early[i] = true
				}
			}
			ackMu.Unlock()
			if err := j.Commit(cur); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		}
	}()
	img := t.TempDir()
	for cut := range drillRounds(8) {
		time.Sleep(time.Duration(1+rand.IntN(20)) * time.Millisecond)
		ackMu.Lock()
		before := make([]int, 0, len(acked))
		for i := range acked {
			before = append(before, i)
		}
		ackMu.Unlock()
		mu.Lock()
		sizes := make(map[string]int64, len(durable))
		for k, v := range durable {
			sizes[k] = v
		}
		mu.Unlock()
		if err := os.RemoveAll(img); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(img, 0o700); err != nil {
			t.Fatal(err)
		}
		// The checkpoint first: one read later than the segments could name a position
		// past what the copy holds. An older one only means more replays.
		if b, err := os.ReadFile(filepath.Join(dir, checkpointName)); err == nil {
			os.WriteFile(filepath.Join(img, checkpointName), b, 0o600)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if _, ok := parseSegmentName(e.Name()); !ok {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if os.IsNotExist(err) {
				continue // committed and deleted meanwhile
			}
			if err != nil {
				t.Fatal(err)
			}
			n := min(sizes[e.Name()], int64(len(b)))
			if err := os.WriteFile(filepath.Join(img, e.Name()), b[:n], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cj, rep := open(t, Options{Dir: img})
		es, _ := all(t, cj)
		cj.Close()
		if len(rep.Quarantined) != 0 {
			t.Fatalf("cut %d: damage %v", cut, rep.Quarantined)
		}
		have := make(map[int]bool, len(es))
		for _, e := range es {
			var i int
			if _, err := fmt.Sscanf(string(e.Payload), "grant-%08d|", &i); err != nil || string(e.Payload) != string(payload(i, crashSize(i))) {
				t.Fatalf("cut %d: invented record %q", cut, trim(e.Payload))
			}
			have[i] = true
		}
		// A record missing from the image is lost unless the replayer stored it after
		// the snapshot (then a checkpoint or segment deletion the copy saw may have
		// passed it legitimately).
		ackMu.Lock()
		for _, i := range before {
			if !have[i] && acked[i] {
				ackMu.Unlock()
				t.Fatalf("cut %d: record %d was acknowledged, not stored, and is not in the image", cut, i)
			}
		}
		ackMu.Unlock()
		if cut < 8 {
			t.Logf("cut %d: %d acknowledged and not stored, %d in the image, torn %d bytes", cut, len(before), len(es), rep.TornBytes)
		}
		cuts, checks = cuts+1, checks+len(before)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d simulated power cuts, %d acknowledged records checked, 0 lost", cuts, checks)
}
