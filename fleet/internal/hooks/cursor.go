package hooks

import (
	"context"
	"encoding/json"
	"os"

	"github.com/chatfleet/chatfleet/internal/privfile"
	"github.com/chatfleet/chatfleet/webhook"
)

// Webhook deliveries survive the master: after every batch a sink records,
// per room and URL, the highest seq it is done with (delivered or given up)
// in the room's cursor file (the master's StateDir/rooms/<port>.hooks). A
// master that adopts a running room (after a restart in place, or a kill)
// queues again, from the store, the events after that point, before the
// room's new events. Receivers may see an event twice across a restart;
// its id says so (docs/events.md).
//
// The file's format is shared with masters of other releases, which read
// what this one writes and write what it reads: change it only
// compatibly.

// cursor is the content of a room's cursor file.
type cursor struct {
	Room string           `json:"room"`
	Done map[string]int64 `json:"done"`          // the host's URLs, by URL
	Own  map[string]int64 `json:"own,omitempty"` // the room's own URLs, by URL
}

// of returns the seq t's sink is done with. A file written before rooms
// had their own secrets kept every URL in Done.
func (c *cursor) of(t target) int64 {
	if t.own {
		if seq, ok := c.Own[t.url]; ok {
			return seq
		}
	}
	return c.Done[t.url]
}

// recordDone notes that the sink of t is done with events up to seq, in
// memory and in the room's cursor file.
func (d *Dispatcher) recordDone(t target, seq int64) {
	path := d.cfg.CursorFile(t.room)
	if path == "" {
		return // closed and forgotten: nothing will be adopted
	}
	d.curMu.Lock()
	defer d.curMu.Unlock()
	c := d.cursors[t.room]
	if c == nil {
		c = &cursor{Room: t.room}
		d.cursors[t.room] = c
	}
	m := &c.Done
	if t.own {
		m = &c.Own
	}
	if *m == nil {
		*m = map[string]int64{}
	}
	if seq <= (*m)[t.url] {
		return
	}
	(*m)[t.url] = seq
	b, err := json.Marshal(c)
	if err != nil {
		return
	}
	privfile.Write(path, b)
}

// Replay queues again the events of adopted room r that its webhooks had
// not taken when the previous master stopped, read from the store. Without
// a store, or without a record of r's deliveries, it does nothing. Call it
// before the room's new events are added.
func (d *Dispatcher) Replay(r Room) {
	if len(r.URLs) > 0 && r.Secret == "" {
		d.cfg.Log.Warn("room recorded without a webhook secret of its own (created before per-room secrets): its webhookUrls get no events; create it again to restore them", "room", r.Name)
	}
	if d.cfg.Store == nil || !d.Enabled(r) {
		return
	}
	path := d.cfg.CursorFile(r.Name)
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	var c cursor
	if err != nil || json.Unmarshal(b, &c) != nil || c.Room != r.Name {
		return
	}
	ts := d.targets(r)
	afters := make([]int64, len(ts))
	for i, t := range ts {
		afters[i] = c.of(t) // before sinks start writing to c
	}
	d.curMu.Lock()
	d.cursors[r.Name] = &c
	d.curMu.Unlock()
	for i, t := range ts {
		after := afters[i]
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
		evs, err := d.cfg.Store.Events(ctx, r.Name, after, d.cfg.Queue)
		cancel()
		if err != nil {
			d.cfg.Log.Warn("webhook replay: read room events", "room", r.Name, "err", err)
			return
		}
		if len(evs) == 0 {
			continue
		}
		if s := d.sink(t); s != nil {
			s.push(events(r, evs))
			d.cfg.Log.Info("webhook events queued again after a restart", "room", r.Name, "webhook", webhook.RedactURL(t.url), "events", len(evs), "after", after)
		}
	}
}

// ForgetRoom drops what is known of a room's deliveries once it ended.
func (d *Dispatcher) ForgetRoom(room string) {
	d.curMu.Lock()
	delete(d.cursors, room)
	d.curMu.Unlock()
	d.refMu.Lock()
	delete(d.refusedLs, room)
	d.refMu.Unlock()
}
