package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// cacheKeeper holds the shared data rooms need (bans, blocked words, room
// defaults), loads it from the store (or CacheFile) at start and every
// CacheEvery, and pushes every change to all rooms. Bans issued in a room are
// applied fleet-wide at once and written to the store in the background,
// retried until the store takes them: a ban is never lost to a store outage.
type cacheKeeper struct {
	m    *Master
	kick chan struct{}

	mu      sync.Mutex
	c       *chatfleet.Cache // immutable snapshot; replaced on change
	pending []chatfleet.Ban  // bans not yet written to the store
	fileMod time.Time
}

func newCacheKeeper(m *Master) *cacheKeeper {
	return &cacheKeeper{m: m, kick: make(chan struct{}, 1),
		c: &chatfleet.Cache{Version: 1, Defaults: chatfleet.DefaultRoomSettings}}
}

// current returns the snapshot to send to a room.
func (k *cacheKeeper) current() *chatfleet.Cache {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.c
}

// load reads the cache once; on failure the previous snapshot stays.
func (k *cacheKeeper) load(ctx context.Context) error {
	cfg := &k.m.cfg
	var c *chatfleet.Cache
	switch {
	case cfg.Store != nil:
		ctx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
		defer cancel()
		var err error
		if c, err = chatfleet.LoadCache(ctx, cfg.Store, cfg.Now(), 100000); err != nil {
			k.m.metrics.storeErrors.Inc()
			k.m.log.Warn("load cache from store", "err", err)
			return err
		}
	case cfg.CacheFile != "":
		fi, err := os.Stat(cfg.CacheFile)
		if err != nil {
			k.m.log.Error("cache file", "err", err)
			return err
		}
		k.mu.Lock()
		same := fi.ModTime().Equal(k.fileMod)
		k.mu.Unlock()
		if same {
			return nil
		}
		b, err := os.ReadFile(cfg.CacheFile)
		if err != nil {
			return err
		}
		c = &chatfleet.Cache{Defaults: chatfleet.DefaultRoomSettings}
		if err := json.Unmarshal(b, c); err != nil {
			k.m.log.Error("cache file is not a JSON cache", "file", cfg.CacheFile, "err", err)
			return err
		}
		k.mu.Lock()
		k.fileMod = fi.ModTime()
		k.mu.Unlock()
	default:
		return nil
	}
	k.set(c)
	return nil
}

// set installs c (plus bans not yet stored) and pushes it if it changed.
func (k *cacheKeeper) set(c *chatfleet.Cache) {
	k.mu.Lock()
	have := map[string]bool{}
	for _, b := range c.Bans {
		have[b.ID] = true
	}
	for _, b := range k.pending {
		if !have[b.ID] {
			c.Bans = append(c.Bans, b)
		}
	}
	old := k.c
	if reflect.DeepEqual(old.Bans, c.Bans) && reflect.DeepEqual(old.BlockedWords, c.BlockedWords) && old.Defaults == c.Defaults {
		k.mu.Unlock()
		return
	}
	c.Version = old.Version + 1
	k.c = c
	k.mu.Unlock()
	k.push(c)
}

// addBan applies b fleet-wide at once and queues it for the store.
func (k *cacheKeeper) addBan(b chatfleet.Ban) {
	if b.ID == "" {
		b.ID = newID()
	}
	if b.CreatedAt.IsZero() {
		b.CreatedAt = k.m.cfg.Now()
	}
	k.mu.Lock()
	for _, have := range k.c.Bans {
		if have.ID == b.ID {
			k.mu.Unlock()
			return
		}
	}
	c := *k.c
	c.Bans = append(append([]chatfleet.Ban(nil), k.c.Bans...), b)
	c.Version++
	k.c = &c
	if k.m.cfg.Store != nil {
		k.pending = append(k.pending, b)
	}
	k.mu.Unlock()
	k.m.log.Info("ban issued", "ban", b.ID, "room", b.Room, "by", b.By)
	k.push(&c)
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// push sends c to every connected room.
func (k *cacheKeeper) push(c *chatfleet.Cache) {
	k.m.mu.Lock()
	rooms := k.m.roomList()
	k.m.mu.Unlock()
	for _, r := range rooms {
		r.send(ipc.Msg{Type: ipc.TypeCache, Cache: c})
	}
}

// flush writes pending bans to the store; it reports whether all were written.
func (k *cacheKeeper) flush(ctx context.Context) bool {
	k.mu.Lock()
	pending := append([]chatfleet.Ban(nil), k.pending...)
	k.mu.Unlock()
	for _, b := range pending {
		cctx, cancel := context.WithTimeout(ctx, k.m.cfg.StoreTimeout)
		err := k.m.cfg.Store.AddBan(cctx, &b)
		cancel()
		if err != nil && chatfleet.ErrorCode(err) != chatfleet.ECONFLICT {
			k.m.metrics.storeErrors.Inc()
			k.m.log.Warn("store ban (will retry)", "ban", b.ID, "err", err)
			return false
		}
		k.mu.Lock()
		for i := range k.pending {
			if k.pending[i].ID == b.ID {
				k.pending = append(k.pending[:i], k.pending[i+1:]...)
				break
			}
		}
		k.mu.Unlock()
	}
	return true
}

// run refreshes the cache every CacheEvery and writes pending bans, retrying
// every second while the store is down.
func (k *cacheKeeper) run(ctx context.Context) {
	refresh := time.NewTicker(k.m.cfg.CacheEvery)
	defer refresh.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			if k.m.cfg.Store != nil {
				k.flush(ctx)
			}
			k.load(ctx)
		case <-k.kick:
			k.flush(ctx)
		case <-retry.C:
			k.mu.Lock()
			n := len(k.pending)
			k.mu.Unlock()
			if n > 0 {
				k.flush(ctx)
			}
		}
	}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
