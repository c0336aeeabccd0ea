package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

// producer is the room's producer connection: it sends the chat messages and
// reads their acks (and its own copy of every broadcast).
type producer struct {
	ws       *websocket.Conn
	acked    atomic.Int64
	maxAck   atomic.Int64 // seq of the newest acked chat
	refused  atomic.Int64 // error answers (rate limited, ...)
	lastCode atomic.Pointer[string]
	welcomed chan struct{}
	done     chan struct{}
	n        int64 // messages sent so far (clientId)
}

func connectProducer(ctx context.Context, src *sourceAddrs, iss *token.Issuer, room string, port int, user string) (*producer, error) {
	ws, err := dialRoom(ctx, src.wsDialer(), iss, room, port, user, chatfleet.RoleProducer)
	if err != nil {
		return nil, err
	}
	p := &producer{ws: ws, welcomed: make(chan struct{}), done: make(chan struct{})}
	go p.read()
	select {
	case <-p.welcomed:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("producer of %s: connection ended before the welcome", room)
	case <-time.After(10 * time.Second):
		ws.Close()
		return nil, fmt.Errorf("producer of %s: no welcome in 10s", room)
	}
}

func (p *producer) read() {
	defer close(p.done)
	var once sync.Once
	for {
		_, r, err := p.ws.NextReader()
		if err != nil {
			return
		}
		bp := framePool.Get().(*[]byte)
		buf, err := readFrame((*bp)[:0], r)
		if err != nil {
			return
		}
		protocol.Split(buf, func(line []byte) {
			m, ok := parseMsg(line)
			if !ok {
				return
			}
			switch m.typ {
			case protocol.TypeWelcome:
				once.Do(func() { close(p.welcomed) })
			case protocol.TypeAck:
				p.acked.Add(1)
				if m.seq > p.maxAck.Load() {
					p.maxAck.Store(m.seq)
				}
			case protocol.TypeError:
				p.refused.Add(1)
				c := m.code
				p.lastCode.Store(&c)
			}
		})
		*bp = buf
		framePool.Put(bp)
	}
}

// send sends chat messages for step at rate per second for d, as scheduled
// (catching up at once when behind), and returns how many it sent and over
// how long. Bounded by d and by rate*d messages.
func (p *producer) send(step int, rate float64, d time.Duration) (sent int64, elapsed time.Duration, err error) {
	limit := int64(rate*d.Seconds()) + 1
	start := time.Now()
	for sent < limit {
		el := time.Since(start)
		if el >= d {
			break
		}
		due := min(int64(el.Seconds()*rate)+1, limit)
		for ; sent < due; sent++ {
			p.n++
			b, err := clientChat(step, p.n, time.Now().UnixMicro())
			if err != nil {
				return sent, time.Since(start), err
			}
			p.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := p.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				return sent, time.Since(start), fmt.Errorf("producer send: %w", err)
			}
		}
		next := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
	}
	return sent, time.Since(start), nil
}

// waitAnswered waits until n messages in all were acked or refused, up to timeout.
func (p *producer) waitAnswered(n int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for p.acked.Load()+p.refused.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func (p *producer) close() {
	p.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseNormal, ""), time.Now().Add(time.Second))
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
	}
	p.ws.Close()
}
