package room

import (
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// Flood control: every message spends from its sender's rate limiter (see
// moderation.limits; a user's connections share one), chat also from the
// room's, moderation from the moderator's own. A refused message is a strike;
// more than AbuseStrikes within strikeWindow close the connection.

// strikeWindow is how long strikes count: a pause this long forgives them.
const strikeWindow = 10 * time.Second

// strike counts one refused message of u at now and returns its strikes:
// those since its last pause of strikeWindow.
func (u *user) strike(now time.Time) int {
	if now.Sub(u.strikeAt) > strikeWindow {
		u.strikes = 0
	}
	u.strikes++
	u.strikeAt = now
	return u.strikes
}

// setLimits gives u the rate limits of its role.
func (h *hub) setLimits(u *user) {
	var full bool
	if u.lim, u.modLim, full = h.mod.limits(u.info.UserID, u.info.Role); full {
		h.r.warn("too many producers and moderators to remember", "max", h.r.cfg.MaxRolesSeen)
	}
}

// limited refuses a message over the sender's rate; sustained flooding closes
// the connection with 1008.
func (h *hub) limited(req *request, now time.Time) {
	u := req.u
	if u.strike(now) > h.r.cfg.AbuseStrikes && req.c != nil {
		u.strikes = 0 // POSTs have no connection to close: they keep being refused
		h.r.warn("closing a flooding client", "conn", req.c.id, "user", u.info.UserID)
		h.drop(req.c, protocol.ClosePolicy, "rate limit exceeded", true)
		return
	}
	h.fail(req, protocol.CodeRateLimited, "too many messages: slow down")
}
