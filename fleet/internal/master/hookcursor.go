package master

import (
	"context"
	"encoding/json"
	"os"
)

// Webhook deliveries survive the master: after every batch a sink records,
// per room and URL, the highest seq it is done with (delivered or given up)
// in StateDir/rooms/<port>.hooks. A master that adopts a running room
// (after a restart in place, or a kill) queues again, from the store, the
// events after that point, before the room's new events. Receivers may see
// an event twice across a restart; its id says so (docs/events.md).

// hookCursor is the content of a room's .hooks file.
type hookCursor struct {
	Room string           `json:"room"`
	Done map[string]int64 `json:"done"` // by URL
}

// recordDone notes that the sink of room and u is done with events up to
// seq, in memory and in the room's .hooks file.
func (h *hooks) recordDone(room, u string, seq int64) {
	r, err := h.m.room(room)
	if err != nil {
		return // closed and forgotten: nothing will be adopted
	}
	h.curMu.Lock()
	defer h.curMu.Unlock()
	c := h.cursors[room]
	if c == nil {
		c = map[string]int64{}
		h.cursors[room] = c
	}
	if seq <= c[u] {
		return
	}
	c[u] = seq
	b, err := json.Marshal(hookCursor{Room: room, Done: c})
	if err != nil {
		return
	}
	path := r.path(".hooks")
	if err := os.WriteFile(path+".tmp", b, 0o600); err == nil {
		os.Rename(path+".tmp", path)
	}
}

// replay queues again the events of adopted room r that its webhooks had
// not taken when the previous master stopped, read from the store. Without
// a store, or without a record of r's deliveries, it does nothing.
func (h *hooks) replay(r *room) {
	if h.m.cfg.Store == nil || !h.enabled(r) {
		return
	}
	b, err := os.ReadFile(r.path(".hooks"))
	var c hookCursor
	if err != nil || json.Unmarshal(b, &c) != nil || c.Room != r.name {
		return
	}
	h.curMu.Lock()
	h.cursors[r.name] = c.Done
	h.curMu.Unlock()
	for _, u := range h.targets(r) {
		ctx, cancel := context.WithTimeout(context.Background(), h.m.cfg.StoreTimeout)
		evs, err := h.m.cfg.Store.Events(ctx, r.name, c.Done[u], h.m.cfg.WebhookQueue)
		cancel()
		if err != nil {
			h.m.log.Warn("webhook replay: read room events", "room", r.name, "err", err)
			return
		}
		if len(evs) == 0 {
			continue
		}
		if s := h.sink(r.name, u); s != nil {
			s.push(h.events(r, evs))
			h.m.log.Info("webhook events queued again after a restart", "room", r.name, "webhook", redactURL(u), "events", len(evs), "after", c.Done[u])
		}
	}
}

// forgetRoom drops what is known of a room's deliveries once it ended.
func (h *hooks) forgetRoom(name string) {
	h.curMu.Lock()
	delete(h.cursors, name)
	h.curMu.Unlock()
}
