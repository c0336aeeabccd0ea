package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// Bounds of the blocked words a host takes from the store or CacheFile,
// whatever it holds, so that the cache frame stays far below ipc.MaxFrame:
// 5,000 words of 100 bytes, each escaped to at most 6 bytes a byte, is
// about 3 MB.
const (
	maxBlockedWords   = 5000
	maxBlockedWordLen = 100 // bytes
)

// cacheKeeper holds what every room gets in the cache frame (blocked words
// and room defaults; never bans, see bans.go), loads it from the store (or
// CacheFile) at start and every CacheEvery, and pushes a change to every
// room. The frame is encoded once per version and shared by every room.
type cacheKeeper struct {
	m *Master

	loadMu sync.Mutex // one load at a time, so versions follow the order of loads

	mu      sync.Mutex
	c       *chatfleet.Cache // immutable snapshot; replaced on change
	frame   []byte           // c encoded as a cache frame
	cut     int              // blocked words the bounds left out of c
	fileMod time.Time
}

func newCacheKeeper(m *Master) *cacheKeeper {
	k := &cacheKeeper{m: m}
	// Versions continue across masters (an adopted room ignores a cache
	// older than the one it has), so they start from the clock.
	k.install(&chatfleet.Cache{Version: m.cfg.Now().UnixNano(), Defaults: chatfleet.DefaultRoomSettings})
	return k
}

// current returns the snapshot.
func (k *cacheKeeper) current() *chatfleet.Cache {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.c
}

// currentFrame returns the snapshot encoded as a cache frame, to send to a room.
func (k *cacheKeeper) currentFrame() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.frame
}

// cutWords returns how many blocked words the bounds left out.
func (k *cacheKeeper) cutWords() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cut
}

// load reads blocked words and defaults once (and, from CacheFile, its bans
// for bans.go); on failure the previous snapshot stays.
func (k *cacheKeeper) load(ctx context.Context) error {
	_, err := k.loadPushed(ctx)
	return err
}

// refresh reloads the cache from the store (or CacheFile) at once and makes
// sure every connected room has it, whether it changed or not; it returns the
// rooms it reached. EUNAVAILABLE if the host has neither store nor CacheFile,
// or the store does not answer.
func (k *cacheKeeper) refresh(ctx context.Context) (int, error) {
	cfg := &k.m.cfg
	if cfg.Store == nil && cfg.CacheFile == "" {
		return 0, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "this host has no store (MONGODB_URI) nor CACHE_FILE to reload")
	}
	n, err := k.loadPushed(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "the host could not reload its cache"), err)
	}
	if n < 0 { // unchanged: push it again, for a room that missed it
		n = k.push(k.currentFrame())
	}
	return n, nil
}

// loadPushed is load, returning the rooms a changed cache was pushed to, or
// -1 if nothing changed.
func (k *cacheKeeper) loadPushed(ctx context.Context) (int, error) {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	cfg := &k.m.cfg
	c := &chatfleet.Cache{Defaults: chatfleet.DefaultRoomSettings}
	switch {
	case cfg.Store != nil:
		ctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
		defer cancel()
		var err error
		if c.BlockedWords, err = cfg.Store.BlockedWords(ctx); err == nil {
			c.Defaults, err = cfg.Store.RoomDefaults(ctx)
		}
		if err != nil {
			k.m.metrics.storeErrors.Inc()
			k.m.log.Warn("load cache from store", "err", err)
			return -1, err
		}
	case cfg.CacheFile != "":
		fi, err := os.Stat(cfg.CacheFile)
		if err != nil {
			k.m.log.Error("cache file", "err", err)
			return -1, err
		}
		k.mu.Lock()
		same := fi.ModTime().Equal(k.fileMod)
		k.mu.Unlock()
		if same {
			return -1, nil
		}
		b, err := os.ReadFile(cfg.CacheFile)
		if err != nil {
			return -1, err
		}
		if err := json.Unmarshal(b, c); err != nil {
			k.m.log.Error("cache file is not a JSON cache", "file", cfg.CacheFile, "err", err)
			return -1, err
		}
		k.mu.Lock()
		k.fileMod = fi.ModTime()
		k.mu.Unlock()
		k.m.bans.setFile(c.Bans)
		c.Bans = nil
	default:
		return -1, nil
	}
	return k.set(c), nil
}

// boundWords returns words without those longer than maxBlockedWordLen and
// beyond maxBlockedWords, and how many it left out.
func boundWords(words []string) ([]string, int) {
	out := make([]string, 0, min(len(words), maxBlockedWords))
	for _, w := range words {
		if len(w) <= maxBlockedWordLen && len(out) < maxBlockedWords {
			out = append(out, w)
		}
	}
	return out, len(words) - len(out)
}

// set installs c (its bans are ignored) and pushes it if it changed; it
// returns the rooms it pushed to, -1 if nothing changed.
func (k *cacheKeeper) set(c *chatfleet.Cache) int {
	words, cut := boundWords(c.BlockedWords)
	c = &chatfleet.Cache{BlockedWords: words, Defaults: c.Defaults}
	k.mu.Lock()
	old := k.c
	if slices.Equal(old.BlockedWords, c.BlockedWords) && old.Defaults == c.Defaults {
		k.mu.Unlock()
		return -1
	}
	c.Version = old.Version + 1
	k.mu.Unlock()
	if cut > 0 {
		k.m.log.Warn("blocked words left out: at most 5000 words of at most 100 bytes are pushed to rooms",
			"words", len(words)+cut, "left_out", cut)
	}
	if !k.install(c) {
		return -1
	}
	k.mu.Lock()
	k.cut = cut
	frame := k.frame
	k.mu.Unlock()
	return k.push(frame)
}

// install encodes c and makes it current; it reports whether it could.
func (k *cacheKeeper) install(c *chatfleet.Cache) bool {
	c.Bans = []chatfleet.Ban{}
	frame, err := ipc.Encode(ipc.Msg{Type: ipc.TypeCache, Cache: c})
	if err != nil { // cannot happen within the bounds; keep the last good one
		k.m.log.Error("encode cache", "err", err)
		return false
	}
	k.mu.Lock()
	k.c, k.frame = c, frame
	k.mu.Unlock()
	return true
}

// push sends the cache frame to every connected room and returns how many
// it reached.
func (k *cacheKeeper) push(frame []byte) int {
	k.m.mu.Lock()
	rooms := k.m.roomList()
	k.m.mu.Unlock()
	n := 0
	for _, r := range rooms {
		if r.sendFrame(ipc.TypeCache, frame) == nil {
			n++
		}
	}
	return n
}

// run refreshes the cache and the fleet's and rooms' bans every CacheEvery,
// and writes rooms' bans not yet stored, retrying every second while the
// store is down.
func (k *cacheKeeper) run(ctx context.Context) {
	refresh := time.NewTicker(k.m.cfg.CacheEvery)
	defer refresh.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	bans := k.m.bans
	bans.refresh(ctx) // rooms get their lists once the fleet's bans are read
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			bans.flush(ctx)
			k.load(ctx)
			bans.refresh(ctx)
		case <-bans.kick:
			bans.flush(ctx)
		case <-retry.C:
			if bans.unstored() > 0 {
				bans.flush(ctx)
			}
		}
	}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
