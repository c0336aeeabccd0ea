package room

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

// reqKind is what a request asks of the hub. Connections, SSE handlers and
// POSTs reach the hub only through requests on Room.in; this file is their
// dispatch, by kind and then by message type, and their replies.
type reqKind uint8

const (
	reqRegister   reqKind = iota // a connection is ready for its welcome
	reqMessage                   // a message read from a connection
	reqUnregister                // a connection ended
	reqPost                      // a message POSTed to /send
	reqRemote                    // a message an edge relayed (Room.Remote)
)

// request is what connection goroutines and handlers send to the hub.
type request struct {
	kind   reqKind
	c      *client
	msg    protocol.ClientMsg
	err    error // the message did not decode
	binary bool  // the client sent a binary frame

	// reqPost, reqRemote: the sender and where its single reply goes.
	who    protocol.User
	reply  chan *protocol.ServerMsg
	remote bool // relayed by an edge, which limits the sender's rate

	// Filled by the hub while it handles the request.
	u       *user
	replied bool
	seq     int64 // the event this request caused, for the POST's ack
}

// handle processes one request; a panic is logged and answered with an
// internal error, and the room goes on.
func (h *hub) handle(req *request) {
	defer func() {
		if p := recover(); p != nil {
			h.r.log.Error("panic handling a client message", "type", req.msg.Type, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !req.replied {
				h.fail(req, protocol.CodeInternal, "internal error")
			}
		}
	}()
	switch req.kind {
	case reqRegister:
		h.add(req.c)
	case reqUnregister:
		h.remove(req.c)
	case reqMessage:
		c := req.c
		if c.idx < 0 {
			return // removed meanwhile
		}
		if req.binary {
			h.drop(c, protocol.CloseUnsupported, "binary frames are not supported", false)
			return
		}
		req.who, req.u = c.info, c.user
		h.message(req, c.anon)
	case reqPost:
		req.u = h.pres.users[req.who.UserID]
		if req.u == nil {
			h.fail(req, chatfleet.ECONFLICT, "not in the room: open /events or /ws first")
			return
		}
		h.message(req, false)
		if !req.replied {
			h.reply(req, &protocol.ServerMsg{Type: protocol.TypeAck, Seq: req.seq})
		}
	case reqRemote:
		h.remoteRequest(req)
	}
}

// reply sends the answer to one request: on its connection, or to its POST.
func (h *hub) reply(req *request, m *protocol.ServerMsg) {
	if req.reply != nil {
		if !req.replied { // the channel holds one reply; never block the hub
			req.reply <- m
		}
		req.replied = true
		return
	}
	req.replied = true
	if req.c != nil && req.c.idx >= 0 {
		h.push(req.c, h.encode(m, 0))
	}
}

func (h *hub) fail(req *request, code, msg string) {
	h.reply(req, &protocol.ServerMsg{Type: protocol.TypeError, Code: code, Message: msg, Ref: req.msg.ClientID})
}

// message checks the sender's rate, then does what the message asks; an
// edge passes most messages to its origin (see relay).
func (h *hub) message(req *request, anon bool) {
	now := h.now()
	u := req.u
	if !req.remote && !u.lim.AllowN(now, 1) {
		h.limited(req, now)
		return
	}
	if req.err != nil {
		h.fail(req, chatfleet.ErrorCode(req.err), chatfleet.ErrorMessage(req.err))
		return
	}
	m := &req.msg
	switch m.Type {
	case protocol.TypePing:
		h.reply(req, &protocol.ServerMsg{Type: protocol.TypePong, TS: now.UnixMilli()})
	case protocol.TypeHello, protocol.TypeResume:
		if req.c == nil {
			h.fail(req, protocol.CodeUnsupported, m.Type+" is for WebSocket connections; SSE resumes with Last-Event-ID")
			return
		}
		req.replied = true
		h.welcome(req.c, m.LastSeq, m.HasLastSeq)
	default:
		if h.edge {
			h.relay(req, anon, now)
			return
		}
		h.apply(req, anon, now)
	}
}

// apply does what a message other than ping and hello/resume asks.
func (h *hub) apply(req *request, anon bool, now time.Time) {
	m, u := &req.msg, req.u
	switch m.Type {
	case protocol.TypeChat:
		h.chat(req, anon, now)
	case protocol.TypeViewers:
		h.viewers(req)
	case protocol.TypeStream:
		if req.who.Role != chatfleet.RoleProducer {
			h.fail(req, protocol.CodeForbidden, "only the producer announces the stream")
			return
		}
		h.announce(req)
	case protocol.TypeClose:
		if req.who.Role != chatfleet.RoleProducer {
			h.fail(req, protocol.CodeForbidden, "only the producer closes the room")
			return
		}
		reason := m.Reason
		if reason == "" {
			reason = "the producer closed the room"
		}
		h.reply(req, &protocol.ServerMsg{Type: protocol.TypeAck, Seq: h.seq + 1})
		h.end(protocol.CloseGoingAway, reason, CauseProducer)
	default:
		if !req.who.Role.CanModerate() {
			h.fail(req, protocol.CodeForbidden, m.Type+": only the producer and moderators may moderate")
			return
		}
		if u.modLim == nil || !u.modLim.AllowN(now, 1) {
			h.limited(req, now)
			return
		}
		h.moderate(req, now)
	}
}
