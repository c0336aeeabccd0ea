package room

import (
	"cmp"
	"strings"

	"github.com/chatfleet/chatfleet"
)

// applyCache takes a new cache: blocked words, setting defaults.
func (h *hub) applyCache(c *chatfleet.Cache) {
	h.cache = c
	h.blocked = map[string]bool{}
	for _, w := range c.BlockedWords {
		if w = strings.ToLower(strings.TrimSpace(w)); w != "" {
			h.blocked[w] = true
		}
	}
	h.applySettings()
}

// applySettings resolves the settings: the room's own (Config.Settings), else
// the defaults of the master's cache, else chatfleet.DefaultRoomSettings.
func (h *hub) applySettings() {
	own, def := h.r.cfg.Settings, chatfleet.DefaultRoomSettings
	var cached chatfleet.RoomSettings
	if h.cache != nil {
		cached = h.cache.Defaults
	}
	pick := func(own, cached, def int) int {
		return cmp.Or(own, cached, def)
	}
	h.maxLen = max(1, pick(own.MaxMessageLen, cached.MaxMessageLen, def.MaxMessageLen))
	h.hist.resize(max(1, pick(own.HistorySize, cached.HistorySize, def.HistorySize)))
	idle := pick(own.IdleTimeoutSec, cached.IdleTimeoutSec, def.IdleTimeoutSec)
	if h.edge {
		idle = -1 // its origin's idle timeout ends the room
	}
	h.life.setIdleTimeout(idle, h.producer != nil)
	h.r.maxLen.Store(int64(h.maxLen))
}
