package room

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet/protocol"
)

const (
	readBufferSize = 512      // per connection, held while it lives: client messages are small
	maxFrameBytes  = 32 << 10 // a coalesced frame is cut after this many bytes
	// writeBufferSize holds a whole coalesced frame, so that it goes out in
	// one write (a smaller buffer flushes every time it fills: one syscall
	// per 8 KiB under load). Pooled: held only while writing.
	writeBufferSize = maxFrameBytes
	closeGrace      = 2 * time.Second
)

var (
	writePool = &sync.Pool{}
	newline   = []byte{'\n'}
)

// client is one connection: a WebSocket, or an SSE stream. The hub owns the
// fields marked so; the send queue is guarded by mu, filled by the hub only
// and drained by the connection's writer.
type client struct {
	r          *Room
	id         uint64
	info       protocol.User
	anon       bool
	addr       netip.Addr // the client's address, holding a slot of Room.limits (WebSocket)
	lastSeq    int64      // asked for at the handshake
	hasLastSeq bool

	// Owned by the hub.
	idx  int   // position in hub.clients; -1 when not registered
	user *user // set when registered
	gone bool  // removed or being removed: no more broadcasts
	// An edge's client parked until the edge reaches its lastSeq (hub.park).
	parked bool
	due    time.Time

	ws     *websocket.Conn    // WebSocket; nil for SSE
	notify chan struct{}      // SSE: wakes the handler's writer loop
	cancel context.CancelFunc // SSE: ends the handler

	closeSent atomic.Bool // WebSocket: the close frame is out; stop extending the read deadline

	mu          sync.Mutex
	q, spare    []*frame
	qbytes      int
	writing     bool // a WebSocket writer goroutine runs
	closing     bool // no more frames: the writer closes after the queue
	closeCode   int
	closeReason string
	dead        bool // the transport failed
	lastWrite   time.Time
	ping        *time.Timer
}

func (r *Room) newClient(info protocol.User, anon bool, lastSeq int64, has bool) *client {
	return &client{r: r, id: r.nextID.Add(1), info: info, anon: anon, lastSeq: lastSeq, hasLastSeq: has, idx: -1}
}

// push queues f. It reports false, queueing nothing, when that would put more
// than limit bytes in the queue; a lone frame always fits.
func (c *client) push(f *frame, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead {
		return true
	}
	if len(c.q) > 0 && c.qbytes+len(f.data) > limit {
		return false
	}
	c.q = append(c.q, f)
	c.qbytes += len(f.data)
	c.wakeLocked()
	return true
}

func (c *client) wakeLocked() {
	if c.notify != nil {
		select {
		case c.notify <- struct{}{}:
		default:
		}
		return
	}
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// shut closes the queue: the writer sends what is queued (nothing if discard),
// then closes the connection with code and reason. Only the hub calls it,
// except at the very end of the room.
func (c *client) shut(code int, reason string, discard bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing, c.closeCode, c.closeReason = true, code, protocol.Truncate(reason, 123)
	if discard {
		c.q, c.qbytes = nil, 0
	}
	if !c.dead {
		c.wakeLocked()
	}
}

// kill cuts the transport at once.
func (c *client) kill() {
	if c.ws != nil {
		c.ws.NetConn().Close()
	}
	if c.cancel != nil {
		c.cancel()
	}
}

// take returns the queued frames and whether the queue is closed, leaving
// the queue empty. It waits first, if needed, so that writes to one
// connection are at least WriteDelay apart: what arrives meanwhile is
// coalesced into the same write. With linger it waits so even when the queue
// is empty, for frames that come soon; waited reports whether it waited.
func (c *client) take(linger bool) (batch []*frame, closing, dead, waited bool) {
	c.mu.Lock()
	if d := c.r.writeDelay(); d > 0 && (len(c.q) > 0 || linger) && !c.closing && !c.dead {
		if at := c.lastWrite.Add(d); time.Until(at) > 0 {
			c.mu.Unlock()
			<-c.r.pace.wait(at)
			c.mu.Lock()
			waited = true
		}
	}
	batch, closing, dead = c.q, c.closing, c.dead
	c.q, c.spare, c.qbytes = c.spare[:0], nil, 0
	c.mu.Unlock()
	return batch, closing, dead, waited
}

// written records a write and keeps batch's array for the next one.
func (c *client) written(batch []*frame, err error) {
	clear(batch)
	c.mu.Lock()
	c.lastWrite = time.Now()
	if cap(batch) <= 256 {
		c.spare = batch[:0]
	}
	if err != nil {
		c.dead, c.q, c.qbytes = true, nil, 0
	}
	c.mu.Unlock()
}

// writeLoop is a WebSocket's writer: started when frames arrive on an idle
// connection, it writes until the queue is empty, then ends, so that an
// idle connection has no writer goroutine. While frames come faster than
// WriteDelay it stays for the next write instead of ending and being
// started again: a goroutine per write costs more than a wait.
func (c *client) writeLoop() {
	defer func() {
		if p := recover(); p != nil {
			c.r.log.Error("panic in connection writer", "conn", c.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			c.mu.Lock()
			c.dead, c.writing = true, false
			c.mu.Unlock()
			c.kill()
		}
	}()
	linger := false
	for {
		batch, closing, dead, waited := c.take(linger)
		if dead {
			c.mu.Lock()
			c.writing, c.spare = false, nil
			c.mu.Unlock()
			return
		}
		if len(batch) == 0 {
			c.mu.Lock()
			if len(c.q) > 0 { // arrived while taking: go on
				c.mu.Unlock()
				continue
			}
			c.writing, c.spare = false, nil
			code, reason := c.closeCode, c.closeReason
			c.mu.Unlock()
			if closing && c.closeSent.CompareAndSwap(false, true) {
				c.sendClose(code, reason)
			}
			return
		}
		err := c.writeBatch(batch)
		c.written(batch, err)
		if err != nil {
			c.kill()
			return
		}
		// Frames come densely (this batch waited for WriteDelay, or several
		// arrived meanwhile): stay for the next round.
		linger = waited || len(batch) > 1
	}
}

// writeBatch writes frames as few WebSocket messages, each holding one or
// more server messages separated by '\n'. A batch that other connections
// write too goes out as their shared prepared message.
//
// The write has no deadline of its own: re-arming one per write cost 7 % of
// the room's CPU. A peer that stops reading is cut when its queue overflows
// (tooSlow) or when the next ping cannot be written within WriteWait.
func (c *client) writeBatch(batch []*frame) error {
	if pm := c.r.shared.prepared(batch); pm != nil {
		return c.ws.WritePreparedMessage(pm)
	}
	var w io.WriteCloser
	n := 0
	for _, f := range batch {
		if w != nil && n+1+len(f.data) > maxFrameBytes {
			if err := w.Close(); err != nil {
				return err
			}
			w = nil
		}
		if w == nil {
			var err error
			if w, err = c.ws.NextWriter(websocket.TextMessage); err != nil {
				return err
			}
			n = 0
		} else {
			w.Write(newline)
			n++
		}
		if _, err := w.Write(f.data); err != nil {
			return err
		}
		n += len(f.data)
	}
	return w.Close()
}

// writeCost is about what one write to a connection costs the room: the
// write syscall alone takes ~5 µs on loopback here, 7-10 µs with the runtime
// around it.
const (
	writeCost     = 5 * time.Microsecond
	maxWriteDelay = 100 * time.Millisecond
)

// writeDelay is the least time between two writes to one connection: the
// configured WriteDelay plus what a round of writes to every connection of
// the room costs, at most maxWriteDelay. A round then takes at most about
// half of the time between rounds, whatever the rate, and a big audience
// gets more messages per write: at N=1,000 and 200 msg/s, 15 ms gave 3.3
// messages a write and 1.8 µs of CPU per delivery, where 10 ms gave 2.3 and
// 2.7 µs, for a p99 of 18.6 ms against 17.5 (docs/performance.md).
func (r *Room) writeDelay() time.Duration {
	d := r.cfg.WriteDelay
	if d <= 0 {
		return 0
	}
	return min(d+time.Duration(r.stats.conns.Load())*writeCost, maxWriteDelay)
}

// sendClose sends the close frame; the peer's answer ends the reader, which
// closes the connection, or closeGrace does.
func (c *client) sendClose(code int, reason string) {
	err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(c.r.cfg.WriteWait))
	if err != nil {
		c.kill()
		return
	}
	c.ws.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
}

func (c *client) startPing() {
	c.mu.Lock()
	c.ping = time.AfterFunc(c.r.pingPeriod(), c.sendPing)
	c.mu.Unlock()
}

func (c *client) sendPing() {
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.r.cfg.WriteWait)); err != nil {
		c.kill()
		return
	}
	c.mu.Lock()
	if !c.dead && !c.closing {
		c.ping.Reset(c.r.pingPeriod())
	}
	c.mu.Unlock()
}

func (c *client) stopPing() {
	c.mu.Lock()
	if c.ping != nil {
		c.ping.Stop()
	}
	c.dead = true
	c.q, c.spare, c.qbytes = nil, nil, 0
	c.mu.Unlock()
}

// pingPeriod is half of PongWait: a pong has the other half to come back,
// even from a peer (or a room process) that is starved for a while.
func (r *Room) pingPeriod() time.Duration { return r.cfg.PongWait / 2 }

// extend pushes the read deadline out: the peer is alive.
func (c *client) extend() {
	if !c.closeSent.Load() {
		c.ws.SetReadDeadline(time.Now().Add(c.r.cfg.PongWait))
	}
}

// readLoop is a WebSocket's reader: it registers the connection, then passes
// every message it reads to the hub, until the connection ends.
func (r *Room) readLoop(c *client) {
	defer r.connDone(c)
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in connection reader", "conn", c.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseInternal, "internal error"), time.Now().Add(time.Second))
		}
		c.stopPing()
		c.ws.NetConn().Close()
		r.send(request{kind: reqUnregister, c: c})
	}()
	ws := c.ws
	ws.SetReadLimit(r.readLimit())
	ws.SetReadDeadline(time.Now().Add(r.cfg.PongWait))
	ws.SetPongHandler(func(string) error { c.extend(); return nil })
	if !r.send(request{kind: reqRegister, c: c}) {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseGoingAway, "room closed"), time.Now().Add(time.Second))
		return
	}
	c.startPing()
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				lingerClose(ws)
			}
			return
		}
		c.extend()
		req := request{kind: reqMessage, c: c}
		if typ != websocket.TextMessage {
			req.binary = true
		} else {
			req.msg, req.err = protocol.Decode(data)
		}
		if !r.send(req) {
			return
		}
	}
}

// lingerClose reads and discards what the peer still sends for a moment, so
// that closing the socket does not reset the connection before the peer
// reads the close frame.
func lingerClose(ws *websocket.Conn) {
	nc := ws.NetConn()
	nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, nc, 1<<20)
}

// send passes req to the hub; false if the room ended.
func (r *Room) send(req request) bool {
	select {
	case <-r.ending:
		return false
	default:
	}
	select {
	case r.in <- req:
		return true
	case <-r.ending:
		return false
	}
}

// connStart and connDone track connection goroutines, so that Run can wait
// for clients to be closed.
func (r *Room) connStart(c *client) {
	r.live.Add(1)
	r.connsMu.Lock()
	r.conns[c] = struct{}{}
	r.connsMu.Unlock()
}

func (r *Room) connDone(c *client) {
	r.connsMu.Lock()
	delete(r.conns, c)
	r.connsMu.Unlock()
	if c.ws != nil {
		r.limits.release(c.addr)
	}
	r.live.Add(-1)
}

// streamSSE is an SSE connection's writer loop, run by its handler: it
// writes the queued frames as events until the queue closes or the client
// goes.
func (r *Room) streamSSE(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, c *client) {
	keepalive := time.NewTicker(r.pingPeriod())
	defer keepalive.Stop()
	write := func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(r.cfg.WriteWait))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			if write([]byte(": ping\n\n")) != nil {
				return
			}
			continue
		case <-c.notify:
		}
		for {
			batch, closing, dead, _ := c.take(false)
			if dead {
				return
			}
			if len(batch) == 0 {
				if closing {
					c.mu.Lock()
					code, reason := c.closeCode, c.closeReason
					c.mu.Unlock()
					m := protocol.ServerMsg{Type: protocol.TypeClose, CloseCode: code, Reason: reason}
					b, _ := m.Marshal()
					write(append(append([]byte("data: "), b...), "\n\n"...))
					return
				}
				break
			}
			buf = buf[:0]
			for _, f := range batch {
				if f.seq > 0 {
					buf = append(buf, "id: "...)
					buf = strconv.AppendInt(buf, f.seq, 10)
					buf = append(buf, '\n')
				}
				buf = append(buf, "data: "...)
				buf = append(buf, f.data...)
				buf = append(buf, "\n\n"...)
			}
			err := write(buf)
			c.written(batch, err)
			if err != nil {
				return
			}
			if cap(buf) > 64<<10 {
				buf = nil
			}
		}
	}
}
