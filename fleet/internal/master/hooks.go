package master

import "github.com/chatfleet/chatfleet/fleet/internal/hooks"

// The master's side of webhook delivery (package hooks): the dispatcher's
// configuration from the master's, and the rooms as the dispatcher sees
// them. Which events go out is decided where they happen: a room's log
// (events.go), its lifecycle and viewers (lifecycle.go).

// newHooks returns the dispatcher of m's rooms' webhooks, configured from
// m.cfg.Webhooks with what the master knows (defaults set) and counting in
// m.metrics.
func newHooks(m *Master) *hooks.Dispatcher {
	cfg := m.cfg.Webhooks
	cfg.HostID, cfg.Store = m.cfg.HostID, m.cfg.Store // a nil Store stays nil: no replay
	cfg.StoreTimeout, cfg.CursorFile = m.cfg.StoreTimeout, m.hookCursorFile
	cfg.Metrics = hooks.Metrics{
		Deliveries: m.metrics.hookDeliveries,
		Failures:   m.metrics.hookFailures,
		Dropped:    m.metrics.hookDropped,
		Refused:    m.metrics.hookRefused,
	}
	cfg.Log, cfg.Now = m.log, m.cfg.Now
	return hooks.New(cfg)
}

// hookCursorFile is where the webhook deliveries of the room named name are
// recorded, StateDir/rooms/<port>.hooks, beside its state file; "" once the
// master has forgotten the room.
func (m *Master) hookCursorFile(name string) string {
	r, err := m.room(name)
	if err != nil {
		return ""
	}
	return r.path(".hooks")
}

// hookRoom returns r as its webhooks see it.
func (r *room) hookRoom() hooks.Room {
	return hooks.Room{Name: r.name, URLs: r.opts.WebhookURLs, Secret: r.opts.WebhookSecret, Describe: r.describe}
}
