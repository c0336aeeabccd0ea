package faults

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet/protocol"
)

// tally follows one WebSocket in its own goroutine and checks that the
// sequenced messages it receives after its welcome have no gap: seq
// welcome+1, +2, ... It reads only the head of each message ({"type":…,
// "seq":N — the order ServerMsg marshals in), so thousands of them cost
// little.
type tally struct {
	c    *websocket.Conn
	done chan struct{}

	mu       sync.Mutex
	welcomed bool
	first    int64 // the welcome's seq
	last     int64 // the last seq received
	seqs     int   // sequenced messages received
	chats    int
	gaps     int
	gapAt    string // the first gap
	errs     map[string]int
	end      error     // how the connection ended
	lastAt   time.Time // when the last frame arrived
	endAt    time.Time
	maxLag   time.Duration // the longest a sequenced message took from the room's clock to this reader
	ourClose atomic.Bool   // the test closed the connection itself
	onText   func(line []byte)
}

// follow starts reading c. idle bounds the wait for any one frame.
func follow(c *websocket.Conn, idle time.Duration) *tally {
	tl := &tally{c: c, done: make(chan struct{}), errs: map[string]int{}}
	go tl.run(idle)
	return tl
}

func (tl *tally) run(idle time.Duration) {
	defer close(tl.done)
	defer tl.c.Close() // as a real client does when its connection fails
	for {
		tl.c.SetReadDeadline(time.Now().Add(idle))
		_, frame, err := tl.c.ReadMessage()
		if err != nil {
			tl.mu.Lock()
			tl.end, tl.endAt = err, time.Now()
			tl.mu.Unlock()
			return
		}
		tl.mu.Lock()
		tl.lastAt = time.Now()
		protocol.Split(frame, tl.line)
		tl.mu.Unlock()
	}
}

// line takes one message; tl.mu is held.
func (tl *tally) line(b []byte) {
	typ, seq, ts := headTS(b)
	if seq > 0 && ts > 0 && typ != protocol.TypeAck && typ != protocol.TypeWelcome {
		tl.maxLag = max(tl.maxLag, time.Since(time.UnixMilli(ts)))
	}
	switch {
	case typ == protocol.TypeWelcome:
		tl.welcomed, tl.first, tl.last = true, seq, seq
	case typ == protocol.TypeError:
		tl.errs[errCode(b)]++
	case typ != protocol.TypeAck && seq > 0:
		if tl.welcomed && seq != tl.last+1 && tl.gaps == 0 {
			tl.gapAt = fmt.Sprintf("seq %d after %d (%s)", seq, tl.last, typ)
		}
		if tl.welcomed && seq != tl.last+1 {
			tl.gaps++
		}
		tl.last = seq
		tl.seqs++
		if typ == protocol.TypeChat {
			tl.chats++
		}
	}
	if tl.onText != nil {
		tl.onText(b)
	}
}

// head reads the type and seq at the start of a server message.
func head(b []byte) (typ string, seq int64) {
	typ, seq, _ = headTS(b)
	return typ, seq
}

// headTS reads the type, seq and ts at the start of a server message
// ({"type":…,"seq":N,"ts":T, the order ServerMsg marshals in).
func headTS(b []byte) (typ string, seq, ts int64) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"type":"`))
	if !ok {
		return "", 0, 0
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return "", 0, 0
	}
	typ, rest = string(rest[:i]), rest[i+1:]
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"seq":`)); ok {
		seq, rest = leadingInt(rest)
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"ts":`)); ok {
		ts, _ = leadingInt(rest)
	}
	return typ, seq, ts
}

func leadingInt(b []byte) (int64, []byte) {
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	n, _ := strconv.ParseInt(string(b[:j]), 10, 64)
	return n, b[j:]
}

func errCode(b []byte) string {
	_, rest, ok := bytes.Cut(b, []byte(`"code":"`))
	if !ok {
		return "?"
	}
	code, _, _ := bytes.Cut(rest, []byte(`"`))
	return string(code)
}

// state returns a snapshot: the last seq, sequenced messages, chats, gaps.
func (tl *tally) state() (last int64, seqs, chats, gaps int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.last, tl.seqs, tl.chats, tl.gaps
}

// reached returns nil once the connection has received seq (and everything
// before it).
func (tl *tally) reached(seq int64) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.gaps > 0 {
		return fmt.Errorf("gap: %s", tl.gapAt)
	}
	if tl.last < seq {
		if tl.end != nil {
			return fmt.Errorf("connection ended at seq %d (want %d): %v", tl.last, seq, tl.end)
		}
		return fmt.Errorf("at seq %d, want %d", tl.last, seq)
	}
	return nil
}

// closeCode returns the close code the connection ended with: the code of
// a close frame, or -1 for an end without one (EOF, reset), 0 while open.
func (tl *tally) closeCode() int {
	select {
	case <-tl.done:
	default:
		return 0
	}
	var ce *websocket.CloseError
	if errors.As(tl.end, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		return ce.Code
	}
	return -1
}
