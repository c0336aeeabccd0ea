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
	Done map[string]int64 `json:"done"`          // the host's WEBHOOK_URLS, by URL
	Own  map[string]int64 `json:"own,omitempty"` // the room's own webhookUrls, by URL
}

// of returns the seq k's sink is done with. A file written before rooms
// had their own secrets kept every URL in Done.
func (c *hookCursor) of(k hookKey) int64 {
	if k.own {
		if seq, ok := c.Own[k.url]; ok {
			return seq
		}
	}
	return c.Done[k.url]
}

// recordDone notes that the sink of k is done with events up to seq, in
// memory and in the room's .hooks file.
func (h *hooks) recordDone(k hookKey, seq int64) {
	r, err := h.m.room(k.room)
	if err != nil {
		return // closed and forgotten: nothing will be adopted
	}
	h.curMu.Lock()
	defer h.curMu.Unlock()
	c := h.cursors[k.room]
	if c == nil {
		c = &hookCursor{Room: k.room}
		h.cursors[k.room] = c
	}
	m := &c.Done
	if k.own {
		m = &c.Own
	}
	if *m == nil {
		*m = map[string]int64{}
	}
	if seq <= (*m)[k.url] {
		return
	}
	(*m)[k.url] = seq
	b, err := json.Marshal(c)
	if err != nil {
		return
	}
	writePrivate(r.path(".hooks"), b)
}

// writePrivate writes b to path through a temporary file, readable by this
// user only (the room state files hold the rooms' webhook secrets).
func writePrivate(path string, b []byte) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // a leftover keeps its mode: start afresh
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// replay queues again the events of adopted room r that its webhooks had
// not taken when the previous master stopped, read from the store. Without
// a store, or without a record of r's deliveries, it does nothing.
func (h *hooks) replay(r *room) {
	if len(r.opts.WebhookURLs) > 0 && r.opts.WebhookSecret == "" {
		h.m.log.Warn("room recorded without a webhook secret of its own (created before per-room secrets): its webhookUrls get no events; create it again to restore them", "room", r.name)
	}
	if h.m.cfg.Store == nil || !h.enabled(r) {
		return
	}
	b, err := os.ReadFile(r.path(".hooks"))
	var c hookCursor
	if err != nil || json.Unmarshal(b, &c) != nil || c.Room != r.name {
		return
	}
	ks := h.targets(r)
	afters := make([]int64, len(ks))
	for i, k := range ks {
		afters[i] = c.of(k) // before sinks start writing to c
	}
	h.curMu.Lock()
	h.cursors[r.name] = &c
	h.curMu.Unlock()
	for i, k := range ks {
		after := afters[i]
		ctx, cancel := context.WithTimeout(context.Background(), h.m.cfg.StoreTimeout)
		evs, err := h.m.cfg.Store.Events(ctx, r.name, after, h.m.cfg.WebhookQueue)
		cancel()
		if err != nil {
			h.m.log.Warn("webhook replay: read room events", "room", r.name, "err", err)
			return
		}
		if len(evs) == 0 {
			continue
		}
		if s := h.sink(k); s != nil {
			s.push(h.events(r, evs))
			h.m.log.Info("webhook events queued again after a restart", "room", r.name, "webhook", redactURL(k.url), "events", len(evs), "after", after)
		}
	}
}

// forgetRoom drops what is known of a room's deliveries once it ended.
func (h *hooks) forgetRoom(name string) {
	h.curMu.Lock()
	delete(h.cursors, name)
	h.curMu.Unlock()
	h.refMu.Lock()
	delete(h.refusedLs, name)
	h.refMu.Unlock()
}
