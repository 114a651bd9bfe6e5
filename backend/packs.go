package backend

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate/internal/packfile"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// PacksConfig configures a packs backend.
type PacksConfig struct {
	// Dir holds the packs: every regular file named <pack>.txt or <pack>.txt.gz is one
	// (format: internal/packfile). Other files and dot-files are ignored.
	Dir string
	// ReloadEvery is how often the files' names, sizes and mtimes are polled; a change
	// triggers a reload. 0 turns polling off (Reload, e.g. on SIGHUP, still works).
	ReloadEvery time.Duration
	Faults      Faults
	Logger      *zap.Logger // nil: no logging
}

// PackInfo describes one loaded pack, as GET /v1/packs lists it. Version is a short hex
// hash of the file's bytes; Count is the number of distinct user numbers in it.
type PackInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Count   int    `json:"count"`
}

// Packs is the number-pack membership service: which eligibility packs a user number
// belongs to. The packs live in memory as one index, replaced whole on reload: a reload
// reads every file into a new index beside the serving one and swaps it in with one
// atomic pointer store; if any file is broken the new index is dropped, the old keeps
// serving and the error (naming file:line) is logged.
//
// Memory: each pack is a sorted, de-duplicated []uint64 - 8 bytes per number, no
// pointers for the GC to scan - plus, for big packs, a coarse bucket index of 0.5 byte
// per number that narrows a binary search to a few entries. 10 million numbers take
// about 85 MB (twice that for a moment during a reload). A map[uint64]bitmask would cost
// 3-5x the memory for no real gain: a lookup is ~100-200 ns per pack either way.
//
//	GET /v1/membership?user=N  {"user":"N","packs":["a","b"]} (sorted; [] when none)
//	GET /v1/packs              [{"name":"a","version":"1f2e3d4c5b6a","count":3}]
//	GET /v1/packs/NAME         the pack's numbers, sorted, one per line; header X-Pack-Version
type Packs struct {
	*Server
	dir   string
	index atomic.Pointer[packIndex]
	gen   atomic.Uint64

	reloadMu  sync.Mutex // one reload at a time; guards the two below
	failedSig []packFile // the directory state the last reload failed on
	lastErr   string     // last reload error logged, so a poll does not repeat it

	stop chan struct{}
	done chan struct{}
}

// packIndex is one immutable generation of loaded packs.
type packIndex struct {
	packs []*pack    // by name
	files []packFile // the directory state it was built from
	list  []byte     // GET /v1/packs body
}

// pack is one loaded pack; immutable once built, shared between generations when its
// file did not change.
type pack struct {
	PackInfo
	quoted []byte   // Name as a JSON string
	nums   []uint64 // sorted, distinct
	file   packFile
	// A coarse index over nums for big packs: numbers n with (n-nums[0])>>shift == b sit
	// in nums[buckets[b]:buckets[b+1]], about 8 of them when the numbers are spread
	// evenly. It costs 0.5 byte per number and turns ~23 cache-missing probes into ~3.
	shift   uint
	buckets []uint32
}

// bucketMin is the pack size from which the bucket index is built.
const bucketMin = 4096

func (pk *pack) buildBuckets() {
	nums := pk.nums
	if len(nums) < bucketMin || len(nums) > math.MaxUint32 {
		return
	}
	span := nums[len(nums)-1] - nums[0]
	k := bits.Len(uint(len(nums) / 8)) // bucket bits: ~8 numbers per bucket
	if l := bits.Len64(span); l > k {
		pk.shift = uint(l - k)
	}
	nb := span>>pk.shift + 1
	pk.buckets = make([]uint32, nb+1)
	for _, n := range nums { // count per bucket, shifted by one ...
		pk.buckets[(n-nums[0])>>pk.shift+1]++
	}
	for b := 1; b < len(pk.buckets); b++ { // ... then prefix sums: first index of each
		pk.buckets[b] += pk.buckets[b-1]
	}
}

// packFile is a pack file as seen by a directory scan.
type packFile struct {
	name string // pack name
	path string
	info os.FileInfo
}

func (f packFile) same(g packFile) bool {
	return f.name == g.name && f.path == g.path && packfile.SameVersion(f.info, g.info)
}

// NewPacks loads every pack in cfg.Dir (any broken file is an error) and starts the
// polling reloader; Shutdown stops it.
func NewPacks(cfg PacksConfig) (*Packs, error) {
	if cfg.Dir == "" {
		return nil, errors.New("packs backend: no packs directory")
	}
	if cfg.ReloadEvery < 0 {
		return nil, fmt.Errorf("packs backend: reload interval %v is negative", cfg.ReloadEvery)
	}
	p := &Packs{dir: cfg.Dir}
	s, err := newServer("packs", cfg.Faults, cfg.Logger, p.handle)
	if err != nil {
		return nil, err
	}
	p.Server = s
	files, err := scanPacks(cfg.Dir)
	if err == nil {
		err = p.build(files, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("packs backend: %w", err)
	}
	if cfg.ReloadEvery > 0 {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.poll(cfg.ReloadEvery)
		s.onClose = func() error {
			close(p.stop)
			<-p.done
			return nil
		}
	}
	return p, nil
}

// List returns the loaded packs, sorted by name.
func (p *Packs) List() []PackInfo {
	idx := p.index.Load()
	out := make([]PackInfo, len(idx.packs))
	for i, pk := range idx.packs {
		out[i] = pk.PackInfo
	}
	return out
}

// Membership returns the names of the packs that hold user, sorted.
func (p *Packs) Membership(user uint64) []string {
	out := []string{}
	for _, pk := range p.index.Load().packs {
		if pk.has(user) {
			out = append(out, pk.Name)
		}
	}
	return out
}

// Generation counts the index swaps: 1 after NewPacks, +1 per successful reload.
func (p *Packs) Generation() uint64 { return p.gen.Load() }

// Reload re-reads every pack file and swaps the new index in. On error (a broken file,
// an unreadable directory) the serving index stays and the error is returned and logged.
func (p *Packs) Reload() error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	files, err := scanPacks(p.dir)
	if err == nil {
		err = p.build(files, nil)
	}
	return p.reportLocked(files, err)
}

// reloadIfChanged rescans the directory and reloads when a pack file was added,
// removed, or changed name, size, mtime or identity (an atomic rename counts). Unchanged
// packs are carried over without re-reading. A state that failed before is not retried.
func (p *Packs) reloadIfChanged() error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	files, err := scanPacks(p.dir)
	if err == nil {
		cur := p.index.Load()
		if sameFiles(files, cur.files) || (p.failedSig != nil && sameFiles(files, p.failedSig)) {
			return nil
		}
		err = p.build(files, cur)
	}
	return p.reportLocked(files, err)
}

// reportLocked logs a reload's outcome; a failure is logged once per distinct error.
func (p *Packs) reportLocked(files []packFile, err error) error {
	if err != nil {
		p.failedSig = files
		if msg := err.Error(); msg != p.lastErr {
			p.lastErr = msg
			p.log.Error("packs: reload failed; the previous packs keep serving",
				zap.String("dir", p.dir), zap.Error(err))
		}
		return err
	}
	p.failedSig, p.lastErr = nil, ""
	return nil
}

func (p *Packs) poll(every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.reloadIfChanged() // logged by reportLocked
		}
	}
}

// build reads files into a new index and swaps it in. Packs of old whose file is the
// same are reused; old == nil re-reads everything.
func (p *Packs) build(files []packFile, old *packIndex) error {
	start := time.Now()
	idx := &packIndex{files: files, packs: make([]*pack, 0, len(files))}
	infos := make([]PackInfo, 0, len(files))
	total, reread := 0, 0
	for _, f := range files {
		var pk *pack
		if old != nil {
			if i, ok := slices.BinarySearchFunc(old.packs, f.name, func(q *pack, name string) int {
				return strings.Compare(q.Name, name)
			}); ok && old.packs[i].file.same(f) {
				pk = old.packs[i]
			}
		}
		if pk == nil {
			var err error
			if pk, err = readPack(f); err != nil {
				return err
			}
			reread++
		}
		idx.packs = append(idx.packs, pk)
		infos = append(infos, pk.PackInfo)
		total += pk.Count
	}
	list, err := json.Marshal(infos)
	if err != nil {
		return err
	}
	idx.list = append(list, '\n')
	p.index.Store(idx)
	gen := p.gen.Add(1)
	p.log.Info("packs: loaded", zap.String("dir", p.dir), zap.Uint64("generation", gen),
		zap.Int("packs", len(idx.packs)), zap.Int("reread", reread), zap.Int("numbers", total),
		zap.Duration("took", time.Since(start)))
	return nil
}

// scanPacks lists the pack files of dir, sorted by pack name.
func scanPacks(dir string) ([]packFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []packFile
	for _, e := range entries {
		file := e.Name()
		var name string
		switch {
		case strings.HasPrefix(file, "."):
			continue
		case strings.HasSuffix(file, ".txt.gz"):
			name = strings.TrimSuffix(file, ".txt.gz")
		case strings.HasSuffix(file, ".txt"):
			name = strings.TrimSuffix(file, ".txt")
		default:
			continue
		}
		path := filepath.Join(dir, file)
		info, err := os.Stat(path) // follows symlinks
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			continue
		}
		files = append(files, packFile{name: name, path: path, info: info})
	}
	slices.SortFunc(files, func(a, b packFile) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(files); i++ {
		if files[i].name == files[i-1].name {
			return nil, fmt.Errorf("pack %q has two files, %s and %s; keep one",
				files[i].name, files[i-1].path, files[i].path)
		}
	}
	return files, nil
}

func sameFiles(a, b []packFile) bool {
	return slices.EqualFunc(a, b, packFile.same)
}

// readPack reads one pack file, hashing its bytes for the version.
func readPack(f packFile) (*pack, error) {
	fh, err := packfile.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	h := sha256.New()
	nums := make([]uint64, 0, f.info.Size()/10+16) // a 9-10 digit number and '\n' per line
	if _, err := fh.Numbers(h, func(n uint64) error {
		nums = append(nums, n)
		return nil
	}); err != nil {
		return nil, err
	}
	slices.Sort(nums)
	nums = slices.Compact(nums)
	if cap(nums)-len(nums) > len(nums)/4 {
		nums = slices.Clone(nums) // do not keep a mostly empty tail
	}
	pk := &pack{
		PackInfo: PackInfo{Name: f.name, Version: hex.EncodeToString(h.Sum(nil)[:6]), Count: len(nums)},
		quoted:   appendJSONString(nil, []byte(f.name)),
		nums:     nums,
		file:     f,
	}
	pk.buildBuckets()
	return pk, nil
}

func (pk *pack) has(n uint64) bool {
	nums := pk.nums
	if len(nums) == 0 || n < nums[0] || n > nums[len(nums)-1] {
		return false
	}
	if pk.buckets != nil {
		b := (n - nums[0]) >> pk.shift
		nums = nums[pk.buckets[b]:pk.buckets[b+1]]
	}
	_, ok := slices.BinarySearch(nums, n)
	return ok
}

var (
	membershipHead = []byte(`{"user":"`)
	membershipMid  = []byte(`","packs":[`)
	membershipTail = []byte("]}\n")
	packsPrefix    = []byte("/v1/packs/")
)

func (p *Packs) handle(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	switch {
	case string(path) == "/v1/membership":
		if p.injectFaults(ctx) {
			return
		}
		p.membership(ctx)
	case string(path) == "/v1/packs":
		ctx.Response.Header.SetContentTypeBytes(contentJSON)
		ctx.Response.SetBodyRaw(p.index.Load().list)
	case bytes.HasPrefix(path, packsPrefix):
		p.dump(ctx, path[len(packsPrefix):])
	default:
		writeJSONError(ctx, fasthttp.StatusNotFound,
			fmt.Sprintf("no endpoint %s; try GET /v1/membership?user=N or GET /v1/packs", path))
	}
}

// membership answers GET /v1/membership without allocating.
func (p *Packs) membership(ctx *fasthttp.RequestCtx) {
	arg := ctx.QueryArgs().Peek("user")
	n, ok := packfile.ParseNumber(arg)
	if !ok {
		if len(arg) == 0 {
			writeJSONError(ctx, fasthttp.StatusBadRequest, "missing query parameter user")
		} else {
			writeJSONError(ctx, fasthttp.StatusBadRequest,
				fmt.Sprintf("user %q is not a number (want 1 to 20 decimal digits)", arg))
		}
		return
	}
	var buf [512]byte
	b := append(buf[:0], membershipHead...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, membershipMid...)
	first := true
	for _, pk := range p.index.Load().packs {
		if pk.has(n) {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, pk.quoted...)
		}
	}
	b = append(b, membershipTail...)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.Response.SetBody(b)
}

// dump answers GET /v1/packs/NAME with the pack's numbers, one per line, so a cache can
// load a whole pack at once; X-Pack-Version tells which version it got.
func (p *Packs) dump(ctx *fasthttp.RequestCtx, name []byte) {
	idx := p.index.Load()
	i, ok := slices.BinarySearchFunc(idx.packs, name, func(q *pack, name []byte) int {
		return strings.Compare(q.Name, string(name))
	})
	if !ok {
		writeJSONError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no pack %q", name))
		return
	}
	pk := idx.packs[i]
	ctx.Response.Header.Set("X-Pack-Version", pk.Version)
	ctx.Response.Header.SetContentTypeBytes(contentText)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		var buf [24]byte
		for _, n := range pk.nums {
			w.Write(append(strconv.AppendUint(buf[:0], n, 10), '\n'))
		}
	})
}
