package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

// nShards spreads the viewers' recording over several histograms, so that the
// two cores do not fight over one cache line per bucket.
const nShards = 16

// maxSteps bounds the measured steps of one process.
const maxSteps = 128

// stepRec collects what the viewers receive of one step's messages.
type stepRec struct {
	shards [nShards]struct {
		lat        hist
		deliveries atomic.Int64
		frames     atomic.Int64 // WebSocket messages that carried at least one of the step's chats
		noSendTS   atomic.Int64 // chat without the echoed sendTs
	}
}

func (r *stepRec) latencies() *histSnap {
	var s histSnap
	for i := range r.shards {
		s.add(r.shards[i].lat.snapshot())
	}
	return &s
}

func (r *stepRec) deliveries() (n, frames, noSendTS int64) {
	for i := range r.shards {
		n += r.shards[i].deliveries.Load()
		frames += r.shards[i].frames.Load()
		noSendTS += r.shards[i].noSendTS.Load()
	}
	return n, frames, noSendTS
}

// recorder holds the steps' records; a step's record exists before its
// first message is sent, and late messages still count toward it.
type recorder struct {
	steps [maxSteps + 1]atomic.Pointer[stepRec]
	next  atomic.Int64
}

// newStep returns a fresh step number and its record.
func (rc *recorder) newStep() (int, *stepRec) {
	n := int(rc.next.Add(1))
	if n > maxSteps {
		panic("chatbench: too many steps")
	}
	r := &stepRec{}
	rc.steps[n].Store(r)
	return n, r
}

func (rc *recorder) step(n int) *stepRec {
	if n <= 0 || n > maxSteps {
		return nil
	}
	return rc.steps[n].Load()
}

// viewer is one WebSocket client that only reads: one goroutine, a small
// read buffer, frames read into pooled buffers.
type viewer struct {
	id       int
	ws       *websocket.Conn
	last     atomic.Int64 // the seqTracker's, published after every frame
	lost     atomic.Int64
	dups     atomic.Int64
	welcomed atomic.Bool
	closed   atomic.Bool
	closeErr atomic.Pointer[string]
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readFrame reads a whole message from r into buf.
func readFrame(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// run reads until the connection ends.
func (v *viewer) run(a *audience) {
	defer a.wg.Done()
	defer func() {
		v.closed.Store(true)
		a.closed.Add(1)
		v.ws.Close()
	}()
	var t seqTracker
	for {
		_, r, err := v.ws.NextReader()
		if err != nil {
			s := err.Error()
			v.closeErr.Store(&s)
			return
		}
		bp := framePool.Get().(*[]byte)
		buf, err := readFrame((*bp)[:0], r)
		if err != nil {
			s := err.Error()
			v.closeErr.Store(&s)
			return
		}
		now := time.Now().UnixMicro()
		var frameStep *stepRec // the step of the frame's first bench chat, counted once
		protocol.Split(buf, func(line []byte) {
			m, ok := parseMsg(line)
			if !ok {
				a.badMsgs.Add(1)
				return
			}
			if m.typ == protocol.TypeWelcome {
				t.base(m.seq)
				if !v.welcomed.Swap(true) {
					a.welcomed.Add(1)
				}
				return
			}
			if m.seq > 0 {
				t.observe(m.seq)
			}
			if m.step > 0 {
				if sr := a.rec.step(m.step); sr != nil {
					sh := &sr.shards[v.id%nShards]
					sh.lat.record(now - m.sentUS)
					sh.deliveries.Add(1)
					if frameStep == nil {
						frameStep = sr
						sh.frames.Add(1)
					}
					if m.sendTS == 0 {
						sh.noSendTS.Add(1)
					}
				}
			}
		})
		if cap(buf) <= 256<<10 {
			*bp = buf
			framePool.Put(bp)
		}
		v.last.Store(t.last)
		v.lost.Store(t.lost)
		v.dups.Store(t.dups)
	}
}

// audience is the viewers of one room, connected by this process.
type audience struct {
	room     string
	port     int
	viewers  []*viewer
	rec      *recorder
	wg       sync.WaitGroup
	welcomed atomic.Int64
	closed   atomic.Int64
	badMsgs  atomic.Int64
	dialErrs atomic.Int64
}

// connectOpts says how to connect an audience.
type connectOpts struct {
	room    string
	port    int
	ports   []int // when set, viewer i connects to ports[i%len(ports)] instead of port
	n       int
	prefix  string  // user id prefix, unique per audience
	rate    float64 // connects per second
	workers int     // concurrent handshakes
	timeout time.Duration
}

// connectAudience opens n viewers, paced, and waits for every welcome.
func connectAudience(ctx context.Context, src *sourceAddrs, iss *token.Issuer, rec *recorder, o connectOpts) (*audience, error) {
	a := &audience{room: o.room, port: o.port, rec: rec, viewers: make([]*viewer, o.n)}
	if o.n == 0 {
		return a, nil
	}
	if o.rate <= 0 {
		o.rate = 2000
	}
	if o.workers <= 0 {
		o.workers = 32
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	d := src.wsDialer()
	ids := make(chan int, o.n)
	for i := range o.n {
		ids <- i
	}
	close(ids)
	start := time.Now()
	var next atomic.Int64 // pacing: connect i is not started before start + i/rate
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				k := next.Add(1) - 1
				if wait := time.Until(start.Add(time.Duration(float64(k) / o.rate * float64(time.Second)))); wait > 0 {
					time.Sleep(wait)
				}
				if ctx.Err() != nil {
					return
				}
				port := o.port
				if len(o.ports) > 0 {
					port = o.ports[i%len(o.ports)]
				}
				ws, err := dialRoom(ctx, d, iss, o.room, port, fmt.Sprintf("%s%06d", o.prefix, i), chatfleet.RoleViewer)
				if err != nil {
					a.dialErrs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				v := &viewer{id: i, ws: ws}
				a.viewers[i] = v
				a.wg.Add(1)
				go v.run(a)
			}
		}()
	}
	wg.Wait()
	a.compact()
	if firstErr != nil {
		a.close()
		return nil, fmt.Errorf("connect %d viewers to %s: %d failed, first: %w", o.n, o.room, a.dialErrs.Load(), firstErr)
	}
	for a.welcomed.Load() < int64(len(a.viewers)) {
		if ctx.Err() != nil {
			a.close()
			return nil, fmt.Errorf("connect %d viewers to %s: %d welcomed before the timeout", o.n, o.room, a.welcomed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a, nil
}

// compact drops the slots of viewers that failed to connect.
func (a *audience) compact() {
	vs := a.viewers[:0]
	for _, v := range a.viewers {
		if v != nil {
			vs = append(vs, v)
		}
	}
	a.viewers = vs
}

// dialRoom opens one WebSocket to the room with a fresh join token, retrying
// a refused handshake a few times (a backlog overflow under a burst).
func dialRoom(ctx context.Context, d *websocket.Dialer, iss *token.Issuer, room string, port int, user string, role chatfleet.Role) (*websocket.Conn, error) {
	tok, err := iss.Issue(room, "", user, "", role, 2*time.Hour)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ws, resp, err := d.DialContext(ctx, wsURL(port, tok), nil)
		if err == nil {
			return ws, nil
		}
		if resp != nil && resp.StatusCode != 0 && resp.StatusCode != 503 {
			return nil, fmt.Errorf("dial %s as %s: HTTP %d: %w", room, user, resp.StatusCode, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("dial %s as %s: %w", room, user, lastErr)
}

// live returns how many viewers are still connected.
func (a *audience) live() int { return len(a.viewers) - int(a.closed.Load()) }

// counts sums the viewers' seq trackers.
func (a *audience) counts() (lost, dups int64) {
	for _, v := range a.viewers {
		lost += v.lost.Load()
		dups += v.dups.Load()
	}
	return lost, dups
}

// waitCaughtUp waits until every connected viewer has seen seq, up to
// timeout. It returns the events still missing at the end, summed over the
// connected viewers.
func (a *audience) waitCaughtUp(seq int64, timeout time.Duration) (missing int64) {
	deadline := time.Now().Add(timeout)
	for {
		missing = 0
		for _, v := range a.viewers {
			if !v.closed.Load() {
				if d := seq - v.last.Load(); d > 0 {
					missing += d
				}
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closeReasons counts why viewers went, for the report.
func (a *audience) closeReasons() map[string]int {
	m := map[string]int{}
	for _, v := range a.viewers {
		if v.closed.Load() {
			s := "closed"
			if p := v.closeErr.Load(); p != nil {
				s = *p
			}
			m[s]++
		}
	}
	return m
}

// close ends every viewer: a close frame, then the socket; bounded in time.
func (a *audience) close() {
	deadline := time.Now().Add(time.Second)
	for _, v := range a.viewers {
		if !v.closed.Load() {
			v.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(protocol.CloseNormal, ""), deadline)
		}
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, v := range a.viewers {
			v.ws.NetConn().Close()
		}
		<-done
	}
}
