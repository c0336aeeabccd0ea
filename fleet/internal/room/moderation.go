package room

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

// moderation is what the room remembers to moderate: the mutes, and the user
// ids seen with a role above viewer with their rate limiters, so that a
// moderator who left is still protected and reconnecting does not refill its
// limits. It decides; the hub applies the decisions (broadcasts, closes).
// Bans live in Room.bans, shared with the handshakes.
type moderation struct {
	mutes map[string]time.Time // user id -> end of the mute; zero: until unmuted or the room ends
	staff map[string]*staff    // user ids seen with a role above viewer

	maxMutes, maxStaff int
	viewerRate         rate.Limit // a viewer's own message rate
	viewerBurst        int
	staffRate          rate.Limit // a producer's or moderator's: the room's chat ceiling
	staffBurst         int
	modRate            rate.Limit // moderation messages of a producer or moderator
	modBurst           int
}

// staff is what the room remembers of a user id seen with a role above
// viewer, present or not: the highest role, by which moderation ranks it, and
// its rate limiters, so that reconnecting does not refill them.
type staff struct {
	role        chatfleet.Role
	lim, modLim *rate.Limiter
}

// newModeration returns an empty memory with cfg's caps and rates (defaults
// applied).
func newModeration(cfg *Config) moderation {
	return moderation{
		mutes:       map[string]time.Time{},
		staff:       map[string]*staff{},
		maxMutes:    cfg.MaxMutes,
		maxStaff:    cfg.MaxRolesSeen,
		viewerRate:  rate.Limit(cfg.MsgRate),
		viewerBurst: cfg.MsgBurst,
		staffRate:   rate.Limit(cfg.RoomMsgRate),
		staffBurst:  cfg.RoomMsgBurst,
		modRate:     rate.Limit(cfg.ModRate),
		modBurst:    cfg.ModBurst,
	}
}

// limits returns the rate limiters of a user with role: a viewer its own
// rate (modLim nil); a producer or moderator the room's chat ceiling for
// every message (the room's limiter still applies to chat) and the
// moderation rate, the same limiters each time the same id comes back. full
// reports that the id could not be remembered (at MaxRolesSeen): its
// limiters are then fresh ones.
func (m *moderation) limits(id string, role chatfleet.Role) (lim, modLim *rate.Limiter, full bool) {
	if !role.CanModerate() {
		return rate.NewLimiter(m.viewerRate, m.viewerBurst), nil, false
	}
	if st := m.seenRole(id, role); st != nil {
		return st.lim, st.modLim, false
	}
	return rate.NewLimiter(m.staffRate, m.staffBurst), rate.NewLimiter(m.modRate, m.modBurst), true
}

// seenRole remembers that user id held role, if above viewer, and returns
// what the room keeps of it; nil when the id is new and maxStaff ids are
// remembered already.
func (m *moderation) seenRole(id string, role chatfleet.Role) *staff {
	st := m.staff[id]
	if rank(role) == 0 {
		return st
	}
	if st == nil {
		if len(m.staff) >= m.maxStaff {
			return nil
		}
		st = &staff{role: role, lim: rate.NewLimiter(m.staffRate, m.staffBurst), modLim: rate.NewLimiter(m.modRate, m.modBurst)}
		m.staff[id] = st
	}
	if rank(role) > rank(st.role) {
		st.role = role
	}
	return st
}

// highestRole is the highest role user id has held in the room; present is
// its role now (viewer when absent).
func (m *moderation) highestRole(id string, present chatfleet.Role) chatfleet.Role {
	role := chatfleet.RoleViewer
	if st := m.staff[id]; st != nil {
		role = st.role
	}
	if rank(present) > rank(role) {
		role = present
	}
	return role
}

// authorize decides whether by may do msg (mute, unmute, kick or ban) to the
// user msg names, whose highest role in the room is target: it returns the
// error code and message of a refusal, or "" when allowed. The target must
// rank below the moderator, never be the moderator itself nor the room's
// owner; fleet bans are the operator's.
func authorize(msg *protocol.ClientMsg, by protocol.User, owner string, target chatfleet.Role) (code, text string) {
	switch {
	case msg.Type == protocol.TypeBan && msg.Fleet:
		return protocol.CodeForbidden, "ban: fleet bans are made by the operator through the admin API; leave out fleet for a ban from this room"
	case msg.UserID == by.UserID:
		return protocol.CodeInvalid, msg.Type + ": not on yourself"
	case owner != "" && msg.UserID == owner:
		return protocol.CodeForbidden, msg.Type + ": the room's owner cannot be moderated"
	case rank(target) >= rank(by.Role):
		return protocol.CodeForbidden, fmt.Sprintf("%s: a %s cannot act on a %s", msg.Type, by.Role, target)
	}
	return "", ""
}

// muted reports whether user id is muted at now, forgetting a mute that
// ended.
func (m *moderation) muted(id string, now time.Time) bool {
	until, ok := m.mutes[id]
	if ok && !until.IsZero() && !now.Before(until) {
		delete(m.mutes, id)
		return false
	}
	return ok
}

// mutedUntil returns the end of user id's mute (zero: until unmuted), and
// whether the user is muted at now.
func (m *moderation) mutedUntil(id string, now time.Time) (time.Time, bool) {
	if !m.muted(id, now) {
		return time.Time{}, false
	}
	return m.mutes[id], true
}

// mute mutes user id until (zero: until unmuted), replacing any mute it
// had. It reports false, changing nothing, when a new mute would hold more
// than maxMutes once the ended ones are dropped.
func (m *moderation) mute(id string, until, now time.Time) bool {
	if _, ok := m.mutes[id]; !ok && len(m.mutes) >= m.maxMutes {
		m.pruneMutes(now)
		if len(m.mutes) >= m.maxMutes {
			return false
		}
	}
	m.mutes[id] = until
	return true
}

// unmute lifts the mute of user id; false if it was not muted at now.
func (m *moderation) unmute(id string, now time.Time) bool {
	if !m.muted(id, now) {
		return false
	}
	delete(m.mutes, id)
	return true
}

// pruneMutes drops the mutes that ended.
func (m *moderation) pruneMutes(now time.Time) {
	for id, until := range m.mutes {
		if !until.IsZero() && !now.Before(until) {
			delete(m.mutes, id)
		}
	}
}

// rank orders the roles for moderation: a user acts only on lower ranks.
func rank(r chatfleet.Role) int {
	switch r {
	case chatfleet.RoleProducer:
		return 2
	case chatfleet.RoleModerator:
		return 1
	}
	return 0
}

// moderate does delete, mute, unmute, kick, ban and slowmode for a producer
// or moderator.
func (h *hub) moderate(req *request, now time.Time) {
	m := &req.msg
	by := req.who
	switch m.Type {
	case protocol.TypeSlowMode:
		h.slowMode = m.Seconds
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeSlowMode, Seconds: m.Seconds, By: &by})
		return
	case protocol.TypeDelete:
		if m.Seq > h.seq {
			h.fail(req, protocol.CodeNotFound, fmt.Sprintf("no message %d", m.Seq))
			return
		}
		if e := h.hist.find(m.Seq); e != nil {
			switch {
			case !e.chat:
				h.fail(req, protocol.CodeInvalid, fmt.Sprintf("event %d is not a chat message", m.Seq))
				return
			case e.deleted:
				h.fail(req, protocol.CodeNotFound, fmt.Sprintf("message %d is already deleted", m.Seq))
				return
			}
			e.deleted = true
		}
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeDeleted, Target: m.Seq, By: &by})
		return
	}

	// The rest act on a user, present or not.
	target := h.pres.users[m.UserID]
	present, name := chatfleet.RoleViewer, ""
	if target != nil {
		present, name = target.info.Role, target.info.Name
	} else if ru := h.remote.find(m.UserID); ru != nil {
		present, name = ru.info.Role, ru.info.Name
	}
	if code, text := authorize(m, by, h.r.cfg.Owner, h.mod.highestRole(m.UserID, present)); code != "" {
		h.fail(req, code, text)
		return
	}
	switch m.Type {
	case protocol.TypeMute:
		var until time.Time
		var untilMS int64
		if m.Seconds > 0 {
			until = now.Add(time.Duration(m.Seconds) * time.Second)
			untilMS = until.UnixMilli()
		}
		if !h.mod.mute(m.UserID, until, now) {
			h.fail(req, protocol.CodeLimitReached, fmt.Sprintf("mute: the room holds %d mutes, its most; unmute someone first", len(h.mod.mutes)))
			return
		}
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeMuted, UserID: m.UserID, Name: name, Seconds: m.Seconds, Until: untilMS, By: &by})
	case protocol.TypeUnmute:
		if !h.mod.unmute(m.UserID, now) {
			h.fail(req, protocol.CodeNotFound, m.UserID+" is not muted")
			return
		}
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeUnmuted, UserID: m.UserID, Name: name, By: &by})
	case protocol.TypeKick:
		if target == nil && !h.onEdges(m.UserID) {
			h.fail(req, protocol.CodeNotFound, m.UserID+" is not in the room")
			return
		}
		reason := m.Reason
		if reason == "" {
			reason = "kicked by a moderator"
		}
		req.seq = h.broadcast(&protocol.ServerMsg{Type: protocol.TypeKicked, UserID: m.UserID, Name: name, Reason: m.Reason, By: &by})
		h.disconnect(m.UserID, protocol.KindKicked, reason, protocol.CloseKicked)
	case protocol.TypeBan:
		if _, own := h.r.bans.Len(); own >= h.r.cfg.MaxRoomBans {
			h.fail(req, protocol.CodeLimitReached, fmt.Sprintf("ban: the room holds %d bans, its most; the operator can lift some", own))
			return
		}
		b := chatfleet.Ban{ID: newID(), UserID: m.UserID, Room: h.r.name, By: by.UserID, Reason: m.Reason, CreatedAt: now}
		if m.Minutes > 0 {
			b.Until = now.Add(time.Duration(m.Minutes) * time.Minute)
		}
		h.r.bans.AddLocal(b)
		req.seq = h.ban(b, name, &by)
		h.r.emit(Event{Type: EventBan, Ban: &b})
	}
}

// ban tells the room about b and closes the banned user's connections with
// 4004. It returns the seq of the banned event.
// An edge tells no one (its origin does): it closes the connections.
func (h *hub) ban(b chatfleet.Ban, name string, by *protocol.User) int64 {
	if h.edge {
		h.disconnect(b.UserID, protocol.KindBanned, banText(b), protocol.CloseBanned)
		return 0
	}
	seq := h.broadcast(bannedMsg(b, name, by))
	h.disconnect(b.UserID, protocol.KindBanned, banText(b), protocol.CloseBanned)
	return seq
}

// bannedMsg is the event announcing b of user name, made by by (nil: the
// operator).
func bannedMsg(b chatfleet.Ban, name string, by *protocol.User) *protocol.ServerMsg {
	m := &protocol.ServerMsg{Type: protocol.TypeBanned, UserID: b.UserID, Name: name, Reason: b.Reason, Fleet: b.Room == "", By: by}
	if !b.Until.IsZero() {
		m.Until = b.Until.UnixMilli()
		m.Minutes = int((b.Until.Sub(b.CreatedAt) + time.Minute - 1) / time.Minute)
	}
	return m
}

func banText(b chatfleet.Ban) string {
	s := "you are banned from this room"
	if b.Room == "" {
		s = "you are banned"
	}
	if b.Reason != "" {
		s += ": " + b.Reason
	}
	return s
}

// disconnect closes every connection of user id after a private system
// message.
func (h *hub) disconnect(id, kind, text string, code int) {
	var cs []*client
	for _, c := range h.clients {
		if c.info.UserID == id && !c.gone {
			cs = append(cs, c)
		}
	}
	f := h.private(kind, text)
	for _, c := range cs {
		h.push(c, f)
		h.drop(c, code, text, false)
	}
}

func newID() string { return strings.ToLower(rand.Text()[:20]) }

// banned reports whether a ban keeps user id out of this room now.
func (h *hub) banned(id string) (chatfleet.Ban, bool) {
	return h.r.bans.Banned(id, h.now())
}

// applyBans changes the ban list; connected users a new ban keeps out are
// told and closed.
func (h *hub) applyBans(steps []BanStep) {
	added, err := h.r.bans.Update(steps...)
	if err != nil {
		h.r.log.Error("ban list from the master not applied; keeping the one held", "err", err)
		return
	}
	if slices.ContainsFunc(steps, func(st BanStep) bool { return st.Reset }) {
		// The whole list changed: check everyone present.
		ids := make([]string, 0, len(h.pres.users))
		for id := range h.pres.users {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if b, ok := h.banned(id); ok {
				h.ban(b, h.pres.users[id].info.Name, nil)
			}
		}
		return
	}
	for _, b := range added {
		if u := h.pres.users[b.UserID]; u != nil {
			if b, ok := h.banned(b.UserID); ok {
				h.ban(b, u.info.Name, nil)
			}
		}
	}
}
