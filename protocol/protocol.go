// Package protocol defines the wire messages of a chat room: what clients send
// to a room and what a room sends to its clients, over WebSocket text frames or
// the SSE fallback. It is shared by the room server, its tests, the load
// generator and docs/protocol.md, which is the reference for every message.
//
// A client frame holds exactly one message, a JSON object with a "type"; Decode
// checks it strictly. A server frame holds one or more messages, each a JSON
// object, separated by '\n' (JSON never contains a raw newline); Split walks
// them. Server messages are one flat struct, ServerMsg, whose zero-valued
// fields are omitted: a field that is absent means its zero value.
package protocol

import (
	"bytes"
	"encoding/json"

	"github.com/chatfleet/chatfleet"
)

// Client message types (client to room).
const (
	TypeHello    = "hello"    // {lastSeq?}: ask for a welcome (recovery from lastSeq if given)
	TypeResume   = "resume"   // {lastSeq}: ask for a welcome holding what came after lastSeq
	TypeChat     = "chat"     // {text, clientId?, sendTs?}
	TypeStream   = "stream"   // {live, hlsUrl}: producer only
	TypeViewers  = "viewers"  // {page?, pageSize?}
	TypeDelete   = "delete"   // {seq}: moderators
	TypeMute     = "mute"     // {userId, seconds?}: moderators
	TypeUnmute   = "unmute"   // {userId}: moderators
	TypeKick     = "kick"     // {userId, reason?}: moderators
	TypeBan      = "ban"      // {userId, reason?, minutes?, fleet?}: moderators
	TypeSlowMode = "slowmode" // {seconds}: moderators
	TypeClose    = "close"    // {reason?}: producer only, ends the room
	TypePing     = "ping"     // {}: answered with pong
)

// Server message types (room to client). TypeChat, TypeStream, TypeViewers,
// TypeSlowMode and TypeClose are used in both directions with different fields.
const (
	TypeWelcome = "welcome" // first message on every connection
	TypeAck     = "ack"     // chat accepted: {clientId, seq}
	TypeError   = "error"   // {code, message, ref?}
	TypeJoin    = "join"    // sequenced: a user's first connection
	TypeLeave   = "leave"   // sequenced: a user's last connection went
	TypeCount   = "count"   // {viewerCount}: when join/leave are not broadcast (large rooms)
	TypeDeleted = "deleted" // sequenced: {target, by}
	TypeMuted   = "muted"   // sequenced
	TypeUnmuted = "unmuted" // sequenced
	TypeKicked  = "kicked"  // sequenced
	TypeBanned  = "banned"  // sequenced
	TypeSystem  = "system"  // {kind, text}; sequenced when sent to the whole room
	TypePong    = "pong"    // {ts}
)

// System message kinds.
const (
	KindGlobal  = "global"  // an operator's message to every room
	KindClosing = "closing" // the room is ending; the connection closes next
	KindDrain   = "drain"   // the host restarts; the connection closes within the window
	KindKicked  = "kicked"  // to the target only, before its connection closes
	KindBanned  = "banned"  // to the target only, before its connection closes

	// KindEntitlement goes to a viewer of a paid room only, before its
	// connection closes with CloseNotEntitled: the text says why.
	KindEntitlement = "entitlement"
	// KindOpened and KindClosed are the room's lifecycle in its history:
	// sequenced by the host daemon when the room is first started and when it
	// has ended (with a store, a room created again with the same name
	// resumes the old history, so it shows both).
	KindOpened = "opened"
	KindClosed = "closed"
)

// Error codes carried by error messages (and by Decode's errors). Codes shared
// with the HTTP API keep the domain's spelling.
const (
	CodeInvalidJSON  = "invalid_json"  // not a JSON object
	CodeInvalidUTF8  = "invalid_utf8"  // the frame is not valid UTF-8
	CodeUnknownType  = "unknown_type"  // "type" names no client message
	CodeMissingField = "missing_field" // a required field is absent
	CodeInvalidField = "invalid_field" // a field has the wrong JSON type or is out of range, or is unknown
	CodeUnsupported  = "unsupported"   // binary frame, or a message the transport cannot carry

	CodeInvalid      = chatfleet.EINVALID   // well-formed but not acceptable: empty text, bad URL, self-target
	CodeTooLarge     = chatfleet.ETOOLARGE  // chat text longer than the room's MaxMessageLen characters
	CodeForbidden    = chatfleet.EFORBIDDEN // the sender's role may not do this
	CodeNotFound     = chatfleet.ENOTFOUND  // no such message or user
	CodeRateLimited  = chatfleet.ERATELIMIT // the sender's or the room's rate is exceeded
	CodeInternal     = chatfleet.EINTERNAL
	CodeMuted        = "muted"         // the sender is muted
	CodeSlowMode     = "slow_mode"     // slow mode: wait before the next message
	CodeLimitReached = "limit_reached" // the room holds as many bans or mutes as it may: lift some first
)

// WebSocket close codes a room uses. 1xxx are the standard ones (RFC 6455);
// 4xxx are the room's own.
const (
	CloseNormal      = 1000 // the client closed
	CloseGoingAway   = 1001 // the room ended: Close, producer closed it, idle timeout
	CloseUnsupported = 1003 // the client sent a binary frame
	ClosePolicy      = 1008 // sustained flooding beyond the rate limit
	CloseTooBig      = 1009 // a frame larger than the read limit
	CloseInternal    = 1011 // the room failed (a recovered panic)
	CloseRestart     = 1012 // the host is draining: reconnect later, the room moves
	CloseReplaced    = 4001 // a new producer connection took over
	CloseKicked      = 4003 // kicked by a moderator; may reconnect
	CloseBanned      = 4004 // banned; a reconnect is refused with 403
	CloseNotEntitled = 4005 // paid room: the entitlement hook denied the viewer, or cannot be reached
	CloseTooSlow     = 4008 // the connection did not keep up with the room
)

// Protocol limits, checked by Decode.
const (
	MaxUserIDLen   = 128  // bytes, as in join tokens
	MaxClientIDLen = 64   // bytes
	MaxReasonLen   = 200  // bytes
	MaxHLSURLLen   = 2048 // bytes
	MaxPageSize    = 200
	MaxSlowMode    = 3600      // seconds
	MaxMuteSeconds = 7 * 86400 // seconds
	MaxBanMinutes  = 366 * 24 * 60
)

// User is a participant as other participants see it.
type User struct {
	UserID string         `json:"userId"`
	Name   string         `json:"name"`
	Role   chatfleet.Role `json:"role"`
}

// StreamState is whether the producer's video is live and where to play it.
type StreamState struct {
	Live   bool   `json:"live"`
	HLSURL string `json:"hlsUrl,omitempty"`
}

// ServerMsg is every message a room sends, flattened: Type says which fields
// are meaningful (see docs/protocol.md). Zero-valued fields are omitted on the
// wire, so a client reads an absent field as its zero value. Seq is set on
// sequenced events only (chat, join, leave, deleted, muted, unmuted, kicked,
// banned, stream, slowmode and room-wide system messages).
type ServerMsg struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq,omitempty"`
	TS   int64  `json:"ts,omitempty"` // server time, Unix milliseconds

	// chat
	From   *User  `json:"from,omitempty"`
	Text   string `json:"text,omitempty"`   // chat, system
	SendTS int64  `json:"sendTs,omitempty"` // chat: the sender's sendTs, echoed

	// ack, error
	ClientID string `json:"clientId,omitempty"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
	Ref      string `json:"ref,omitempty"` // error: the clientId of the refused message

	// join, leave, muted, unmuted, kicked, banned: the user concerned
	UserID      string         `json:"userId,omitempty"`
	Name        string         `json:"name,omitempty"`
	Role        chatfleet.Role `json:"role,omitempty"`
	ViewerCount int            `json:"viewerCount,omitempty"` // join, leave, count, welcome

	// viewers
	Page     int    `json:"page,omitempty"`
	PageSize int    `json:"pageSize,omitempty"`
	Users    []User `json:"users,omitempty"`
	Total    int    `json:"total,omitempty"`

	// moderation
	Target  int64  `json:"target,omitempty"` // deleted: the seq of the deleted chat message
	By      *User  `json:"by,omitempty"`     // deleted, muted, unmuted, kicked, banned, slowmode
	Seconds int    `json:"seconds,omitempty"`
	Minutes int    `json:"minutes,omitempty"`
	Until   int64  `json:"until,omitempty"` // muted, banned: Unix ms; absent: no end
	Fleet   bool   `json:"fleet,omitempty"`
	Reason  string `json:"reason,omitempty"`

	// stream
	Live   bool   `json:"live,omitempty"`
	HLSURL string `json:"hlsUrl,omitempty"`

	// system
	Kind string `json:"kind,omitempty"`

	// welcome
	You      *User             `json:"you,omitempty"`
	Room     string            `json:"room,omitempty"`
	Stream   *StreamState      `json:"stream,omitempty"`
	SlowMode int               `json:"slowMode,omitempty"`
	MaxLen   int               `json:"maxLen,omitempty"` // the longest chat text the room takes, in characters
	Muted    bool              `json:"muted,omitempty"`  // the user is muted: until Until (Unix ms), or until unmuted
	History  []json.RawMessage `json:"history,omitempty"`
	Missed   bool              `json:"missed,omitempty"`   // the requested lastSeq is older than the buffer
	FirstSeq int64             `json:"firstSeq,omitempty"` // the oldest seq the buffer still holds

	// close (SSE only: the WebSocket close frame's code and reason)
	CloseCode int `json:"closeCode,omitempty"`
}

// Marshal encodes m as one JSON object without a trailing newline. It cannot
// fail for a ServerMsg built by the room; an error means a History entry is
// not valid JSON.
func (m *ServerMsg) Marshal() ([]byte, error) {
	return json.Marshal(m)
}

// DecodeServer decodes one server message. Unknown fields are ignored, so
// that clients keep working when a room adds fields.
func DecodeServer(b []byte) (ServerMsg, error) {
	var m ServerMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return m, chatfleet.Errorf(CodeInvalidJSON, "invalid server message: %v", err)
	}
	if m.Type == "" {
		return m, chatfleet.Errorf(CodeMissingField, "server message without type")
	}
	return m, nil
}

// Split calls fn with each message of a server frame, in order. Empty lines are
// skipped.
func Split(frame []byte, fn func(msg []byte)) {
	for len(frame) > 0 {
		i := bytes.IndexByte(frame, '\n')
		var line []byte
		if i < 0 {
			line, frame = frame, nil
		} else {
			line, frame = frame[:i], frame[i+1:]
		}
		if len(line) > 0 {
			fn(line)
		}
	}
}

// Sequenced reports whether messages of type t carry a seq when sent to the
// whole room.
func Sequenced(t string) bool {
	switch t {
	case TypeChat, TypeJoin, TypeLeave, TypeDeleted, TypeMuted, TypeUnmuted,
		TypeKicked, TypeBanned, TypeStream, TypeSlowMode, TypeSystem:
		return true
	}
	return false
}
