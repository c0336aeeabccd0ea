package master

import "github.com/chatfleet/chatfleet/fleet/internal/hooks"

// The master's side of webhook delivery (package hooks): the dispatcher's
// configuration from the master's, and the rooms as the dispatcher sees
// them. Which events go out is decided where they happen: a room's log
// (events.go), its lifecycle and viewers (lifecycle.go).

// newHooks returns the dispatcher of m's rooms' webhooks, configured from
// m.cfg (defaults set) and counting in m.metrics.
func newHooks(m *Master) *hooks.Dispatcher {
	cfg := &m.cfg
	return hooks.New(hooks.Config{
		HostID:       cfg.HostID,
		URLs:         cfg.WebhookURLs,
		Secret:       cfg.WebhookSecret,
		AllowPrivate: cfg.WebhookAllowPrivate,
		Queue:        cfg.WebhookQueue,
		Wait:         cfg.WebhookWait,
		Backoff:      cfg.WebhookBackoff,
		MaxAge:       cfg.WebhookMaxAge,
		Timeout:      cfg.WebhookTimeout,
		Store:        cfg.Store, // a nil Store stays nil: no replay
		StoreTimeout: cfg.StoreTimeout,
		CursorFile:   m.hookCursorFile,
		Metrics: hooks.Metrics{
			Deliveries: m.metrics.hookDeliveries,
			Failures:   m.metrics.hookFailures,
			Dropped:    m.metrics.hookDropped,
			Refused:    m.metrics.hookRefused,
		},
		Log: m.log,
		Now: cfg.Now,
	})
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
