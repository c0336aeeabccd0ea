package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

// Relay settings: the origin handles at most relayMaxInFlight relays of a
// room at once, each for at most relayTimeout (the edge waits as long).
const (
	relayMaxInFlight = 1024
	relayTimeout     = 5 * time.Second
)

// ServeRelay answers the relays of room's edges on RelaySubject(room). Each
// Relay is decoded strictly (at most MaxPayload bytes, its message by
// protocol.Decode) and handed to handle on a goroutine of its own, with a
// context that ends after relayTimeout or at stop; handle's bytes, the
// server message the sender gets, are the reply's Msg. A bad request is
// answered with an error message, and one beyond relayMaxInFlight at once
// with an "unavailable" error. stop unsubscribes and ends the handlers'
// contexts; it does not wait for them.
func (c *Conn) ServeRelay(room string, handle func(ctx context.Context, r Relay) json.RawMessage) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	slots := make(chan struct{}, relayMaxInFlight)
	sub, err := c.nc.Subscribe(RelaySubject(room), func(m *nats.Msg) {
		if m.Reply == "" {
			return // not a request: nobody to answer
		}
		r, err := decodeRelay(m.Data)
		if err != nil {
			c.respond(m, errorMsg(err))
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			c.respond(m, errorMsg(chatfleet.Errorf(chatfleet.EUNAVAILABLE, "the origin is busy, try again")))
			return
		}
		go func() {
			defer func() { <-slots }()
			hctx, hcancel := context.WithTimeout(ctx, relayTimeout)
			defer hcancel()
			c.respond(m, handle(hctx, r))
		}()
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bus: serve relay %s: %w", room, err)
	}
	c.flush()
	var once sync.Once
	return func() {
		once.Do(func() {
			sub.Unsubscribe()
			c.flush() // once stop returns, a relay gets no responders
			cancel()
		})
	}, nil
}

// respond replies to the request m with RelayReply{msg}.
func (c *Conn) respond(m *nats.Msg, msg json.RawMessage) {
	if len(msg) == 0 || string(msg) == "null" { // the handler's bug
		msg = errorMsg(errors.New("internal"))
	}
	b, err := json.Marshal(RelayReply{Msg: msg})
	if err != nil { // msg is not valid JSON: the handler's bug
		c.log.Error("relay: reply is not JSON", "err", err)
		b, _ = json.Marshal(RelayReply{Msg: errorMsg(errors.New("internal"))})
	}
	if err := m.Respond(b); err != nil {
		c.log.Warn("relay: reply", "err", err)
	}
}

// decodeRelay decodes a Relay strictly; its errors are *chatfleet.Error.
func decodeRelay(b []byte) (Relay, error) {
	if len(b) > MaxPayload {
		return Relay{}, chatfleet.Errorf(protocol.CodeTooLarge, "relay larger than %d bytes", MaxPayload)
	}
	var raw struct {
		Edge string          `json:"edge"`
		Who  protocol.User   `json:"who"`
		Msg  json.RawMessage `json:"msg"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Relay{}, chatfleet.Errorf(protocol.CodeInvalidJSON, "relay is not a JSON object")
	}
	if raw.Who.UserID == "" {
		return Relay{}, chatfleet.Errorf(protocol.CodeMissingField, "relay without a sender")
	}
	msg, err := protocol.Decode(raw.Msg)
	if err != nil {
		return Relay{}, err
	}
	return Relay{Edge: raw.Edge, Who: raw.Who, Msg: msg}, nil
}

// errorMsg is the error server message for err, a *chatfleet.Error.
func errorMsg(err error) json.RawMessage {
	m := protocol.ServerMsg{Type: protocol.TypeError, Code: chatfleet.ErrorCode(err), Message: "internal error"}
	var e *chatfleet.Error
	if errors.As(err, &e) {
		m.Message = e.Message
	}
	b, _ := json.Marshal(m)
	return b
}

// Relay sends r to room's origin and returns its answer, the server message
// for the sender. It fails when r cannot be encoded or is larger than
// MaxPayload, when nobody serves the room's relays (nats.ErrNoResponders:
// the origin is away), when ctx ends first, or when the answer is not a
// RelayReply.
func (c *Conn) Relay(ctx context.Context, room string, r Relay) (json.RawMessage, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("bus: relay: %w", err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("bus: relay: %d bytes, more than %d", len(b), MaxPayload)
	}
	m, err := c.nc.RequestWithContext(ctx, RelaySubject(room), b)
	if err != nil {
		return nil, fmt.Errorf("bus: relay %s: %w", room, err)
	}
	if len(m.Data) > MaxPayload {
		return nil, fmt.Errorf("bus: relay %s: reply of %d bytes", room, len(m.Data))
	}
	var rep RelayReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || len(rep.Msg) == 0 || string(rep.Msg) == "null" {
		return nil, fmt.Errorf("bus: relay %s: bad reply", room)
	}
	return rep.Msg, nil
}
