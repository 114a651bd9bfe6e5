package numberpack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/cespare/xxhash/v2"

	"github.com/floodgate/floodgate/internal/bytesconv"
	"github.com/floodgate/floodgate/internal/packfile"
)

// String packs (keys: string): keys that are not user numbers - openids, account names -
// one per line. They stay on the store number packs had before the Set: a bigcache per
// pack file (shared between routes like a Set), an entry per distinct key with an empty
// value, sized exactly before it is filled so that it never evicts (bigcache #239, #267):
//
//   - LifeWindow is the longest Duration and CleanWindow is 0: no entry ever expires and
//     no cleaner goroutine runs.
//   - HardMaxCacheSize is split evenly across shards; the loader knows every key before
//     it creates the cache, so it sizes every shard's queue for the fullest one (+25%).
//   - Nothing is written after the swap, so bigcache's eviction paths (inside Set) never
//     run once it serves.
//   - And the load is checked: any removal during the fill, or a count that differs from
//     the distinct keys read (two keys with one 64-bit hash: bigcache keeps one), fails
//     the load; the previous version keeps serving.
//
// A hit costs bigcache's copy of the key (1 allocation); numbers in a Set cost none.

// keySet is one loaded string pack.
type keySet struct {
	cache *bigcache.BigCache
	n     int
}

func (k *keySet) has(key []byte) bool {
	_, err := k.cache.Get(bytesconv.String(key))
	return err == nil
}

func (k *keySet) Len() int { return k.n }

type xxHasher struct{}

func (xxHasher) Sum64(key string) uint64 { return xxhash.Sum64String(key) }

const (
	minShards       = 16
	maxShards       = 1024
	numbersPerShard = 8 << 10
	// hintPerShard is the initial hashmap size per shard. bigcache sizes both its index
	// and its (unused here) stats map from MaxEntriesInWindow/Shards, so a large hint
	// would cost a second, empty index; the index grows as entries come instead.
	hintPerShard = 64
	entryHeader  = 8 + 8 + 2 // bigcache's timestamp, hash and key length
)

func shardCount(n int) int {
	s := minShards
	for s < maxShards && s*numbersPerShard < n {
		s <<= 1
	}
	return s
}

// queueBytes is how many bytes bigcache's queue takes for one entry of a keyLen-byte key
// and a width-byte value (its varint length header included).
func queueBytes(keyLen, width int) int {
	l := entryHeader + keyLen + width
	switch {
	case l < 127:
		return l + 1
	case l < 16382:
		return l + 2
	}
	return l + 3
}

// readKeySet reads a string pack file into a keySet.
func readKeySet(path string, stop <-chan struct{}) (*keySet, fileVersion, error) {
	f, err := packfile.Open(path)
	if err != nil {
		return nil, fileVersion{}, err
	}
	defer f.Close()
	h := packfile.NewHasher()
	keys := map[string]struct{}{}
	k := 0
	_, err = f.Keys(h, func(key []byte) error {
		if k++; k&0xffff == 0 && stopped(stop) {
			return errStopped
		}
		keys[string(key)] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, fileVersion{}, err
	}
	after, err := f.Unchanged()
	if err != nil {
		return nil, fileVersion{}, err
	}
	shards := shardCount(len(keys))
	perShard := make([]int, shards)
	for key := range keys {
		perShard[xxhash.Sum64String(key)&uint64(shards-1)] += queueBytes(len(key), 0)
	}
	maxShard := 64
	for _, b := range perShard {
		maxShard = max(maxShard, b+64) // +64: the queue's margins
	}
	entrySize := (maxShard + hintPerShard - 1) / hintPerShard
	var removed atomic.Int64
	cache, err := bigcache.New(context.Background(), bigcache.Config{
		Shards:             shards,
		LifeWindow:         time.Duration(math.MaxInt64),
		CleanWindow:        0,
		MaxEntriesInWindow: shards * hintPerShard,
		MaxEntrySize:       entrySize,
		HardMaxCacheSize:   (shards*entrySize*hintPerShard*5/4 + 1<<20 - 1) >> 20,
		Hasher:             xxHasher{},
		OnRemoveWithReason: func(string, []byte, bigcache.RemoveReason) { removed.Add(1) },
		Logger:             nopLogger{},
	})
	if err != nil {
		return nil, fileVersion{}, err
	}
	k = 0
	for key := range keys {
		if k++; k&0xffff == 0 && stopped(stop) {
			return nil, fileVersion{}, errStopped
		}
		if err := cache.Set(key, nil); err != nil {
			return nil, fileVersion{}, fmt.Errorf("%s: %w: %v", path, errLostKeys, err)
		}
	}
	if r := removed.Load(); r > 0 || cache.Len() != len(keys) {
		return nil, fileVersion{}, fmt.Errorf("%s: %w: %d of %d keys missing, %d removed", path, errLostKeys, len(keys)-cache.Len(), len(keys), r)
	}
	return &keySet{cache: cache, n: len(keys)}, fileVersion{info: after, hash: h.Sum64()}, nil
}

// errLostKeys marks a string pack load whose cache lost keys while it was filled.
var errLostKeys = errors.New("the cache lost keys while loading")

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
