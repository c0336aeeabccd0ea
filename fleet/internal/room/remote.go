package room

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

// The origin's side of a spread room (docs/scaleout.md): messages its edges
// relay (Remote), handled by the hub like its own clients' (requests.go), and
// the edges' audience (SetRemoteAudience), added to the room's count.

const (
	// maxRemoteUsers bounds the users on edges the origin remembers (slow
	// mode, moderation rate); beyond, the least recently heard is forgotten.
	maxRemoteUsers = 100000
	// maxRemoteName bounds the display name of a relayed sender.
	maxRemoteName = 1024
)

// Remote handles a client message an edge relayed from who (as the edge
// verified it from the join token) as the hub handles its own clients'
// messages: mutes, bans, roles, slow mode, blocked words and the room's rate
// apply; the sender's own message rate is the edge's to limit. It returns
// the server message the sender gets (an ack with the seq of the event the
// message caused, an error, a viewers page), as JSON. It waits for the hub,
// or until ctx ends (then an "unavailable" error). Safe from any goroutine.
func (r *Room) Remote(ctx context.Context, who protocol.User, msg protocol.ClientMsg) json.RawMessage {
	m := r.remote(ctx, who, msg)
	b, err := m.Marshal()
	if err != nil {
		b = []byte(`{"type":"error","code":"internal","message":"internal error"}`)
	}
	return b
}

func (r *Room) remote(ctx context.Context, who protocol.User, msg protocol.ClientMsg) *protocol.ServerMsg {
	ref := protocol.Truncate(msg.ClientID, protocol.MaxClientIDLen)
	fail := func(code, text string) *protocol.ServerMsg {
		return &protocol.ServerMsg{Type: protocol.TypeError, Code: code, Message: text, Ref: ref}
	}
	if r.cfg.Edge != nil {
		return fail(chatfleet.EUNAVAILABLE, "an edge does not answer relayed messages")
	}
	switch {
	case who.UserID == "" || len(who.UserID) > protocol.MaxUserIDLen || !utf8.ValidString(who.UserID):
		return fail(protocol.CodeInvalid, "relayed sender: bad user id")
	case len(who.Name) > maxRemoteName || !utf8.ValidString(who.Name):
		return fail(protocol.CodeInvalid, "relayed sender: bad name")
	case !who.Role.Valid():
		return fail(protocol.CodeInvalid, "relayed sender: bad role")
	}
	// Checked again as a client's message is: the edge may be older or wrong.
	b, err := msg.MarshalJSON()
	if err != nil {
		return fail(protocol.CodeUnknownType, fmt.Sprintf("unknown message type %q", protocol.Truncate(msg.Type, 32)))
	}
	if msg, err = protocol.Decode(b); err != nil {
		return fail(chatfleet.ErrorCode(err), chatfleet.ErrorMessage(err))
	}
	reply := make(chan *protocol.ServerMsg, 1)
	select {
	case <-r.ending:
		return fail(chatfleet.EUNAVAILABLE, "the room is closed")
	default:
	}
	select {
	case r.in <- request{kind: reqRemote, who: who, msg: msg, reply: reply}:
	case <-ctx.Done():
		return fail(chatfleet.EUNAVAILABLE, "the room is busy: try again")
	case <-r.ending:
		return fail(chatfleet.EUNAVAILABLE, "the room is closed")
	}
	select {
	case m := <-reply:
		return m
	case <-ctx.Done():
		return fail(chatfleet.EUNAVAILABLE, "the room is busy: try again")
	case <-r.ending:
		select {
		case m := <-reply: // a close's ack, just before the end
			return m
		default:
			return fail(chatfleet.EUNAVAILABLE, "the room is closed")
		}
	}
}

// SetRemoteAudience takes the users of the room's edges (the sum of their
// reports): the room's count, Stats().Viewers and the presence it reports
// add them to its own. Not for an edge.
func (r *Room) SetRemoteAudience(viewers int) {
	if r.cfg.Edge != nil {
		return
	}
	r.do(func() { r.h.setRemoteAudience(viewers) })
}

func (h *hub) setRemoteAudience(n int) {
	n = max(n, 0)
	if n == h.remoteViewers {
		return
	}
	h.remoteViewers = n
	h.pres.dirty = true // a count within a second, whatever the room's size
	h.publishCounts()
}

// remoteUsers is what the origin keeps of the users its edges relay
// messages of, by user id: at most max, the least recently heard forgotten
// first. The hub owns it.
type remoteUsers struct {
	max  int
	byID map[string]*list.Element // of *user
	lru  list.List                // most recently heard first
}

func newRemoteUsers(max int) remoteUsers {
	return remoteUsers{max: max, byID: map[string]*list.Element{}}
}

// find returns the record of user id, nil if none.
func (ru *remoteUsers) find(id string) *user {
	if e := ru.byID[id]; e != nil {
		return e.Value.(*user)
	}
	return nil
}

// touch returns the record of info's user, made (forgetting the least
// recently heard at the cap) if new, and whether it is new or its role rose.
func (ru *remoteUsers) touch(info protocol.User) (u *user, changed bool) {
	if e := ru.byID[info.UserID]; e != nil {
		ru.lru.MoveToFront(e)
		u = e.Value.(*user)
		u.info.Name = info.Name
		if rank(info.Role) > rank(u.info.Role) {
			u.info.Role = info.Role
			return u, true
		}
		return u, false
	}
	if ru.lru.Len() >= ru.max {
		old := ru.lru.Back()
		ru.lru.Remove(old)
		delete(ru.byID, old.Value.(*user).info.UserID)
	}
	u = &user{info: info}
	ru.byID[info.UserID] = ru.lru.PushFront(u)
	return u, true
}

// remoteRequest handles a message an edge relayed: the sender must not be
// banned, nor carry the owner's id in another role than producer.
func (h *hub) remoteRequest(req *request) {
	who := req.who
	if b, banned := h.banned(who.UserID); banned {
		h.fail(req, protocol.CodeForbidden, banText(b))
		return
	}
	if h.r.cfg.Owner != "" && who.UserID == h.r.cfg.Owner && who.Role != chatfleet.RoleProducer {
		h.fail(req, protocol.CodeForbidden, "this user id is the room owner's: only a producer may carry it")
		return
	}
	u, changed := h.remote.touch(who)
	if changed && u.info.Role.CanModerate() {
		// Its moderation rate, the same limiter as on its other visits;
		// its message rate is the edge's.
		h.setLimits(u)
	}
	req.u, req.remote = u, true
	h.message(req, false)
	if !req.replied {
		h.reply(req, &protocol.ServerMsg{Type: protocol.TypeAck, Seq: req.seq})
	}
}

// onEdges reports whether user id may be on one of the room's edges: it is
// known from a relayed message, or the edges have users.
func (h *hub) onEdges(id string) bool {
	return h.remoteViewers > 0 || h.remote.find(id) != nil
}
