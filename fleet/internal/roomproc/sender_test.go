package roomproc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/room"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/token"
)

// serveControl gives p a control socket on a real Unix socket and runs its
// master link (acceptMasters, sendLoop) for the test; it returns the
// socket's path. Its write deadline is writeWait.
func serveControl(t *testing.T, p *proc, writeWait time.Duration) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "roomproc") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "ctl.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p.ctl, p.kick, p.writeWait, p.orphanGrace = ln, make(chan struct{}, 1), writeWait, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.acceptMasters()
	go p.sendLoop(ctx)
	return path
}

// connectMaster is a fake master: it connects to the room's control socket,
// says hello, reads ready and waits until the room sends to it.
func connectMaster(t *testing.T, p *proc, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hello, _ := ipc.Encode(ipc.Msg{Type: ipc.TypeHello, Proto: ipc.Version})
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := ipc.Decode(c); err != nil || m.Type != ipc.TypeReady {
		t.Fatalf("ready: %+v %v", m, err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if !p.connected() {
			return errors.New("the room has not taken the master")
		}
		return nil
	})
	return c
}

// logEvent is a log event of one chat message of size bytes.
func logEvent(seq int64, size int) room.Event {
	data := bytes.Repeat([]byte("x"), size)
	return room.Event{Type: room.EventLog, Log: []chatfleet.Event{{Room: "lobby", Seq: seq, Type: "chat", At: time.Now(), Data: data}}}
}

// nextSeq reads the next frame from c, which must be one log event, and
// returns its seq.
func nextSeq(t *testing.T, c net.Conn) int64 {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := ipc.Decode(c)
	if err != nil || m.Type != ipc.TypeEvent || m.Event != room.EventLog || len(m.Events) != 1 {
		t.Fatalf("got %s %s with %d events, %v; want one log event", m.Type, m.Event, len(m.Events), err)
	}
	return m.Events[0].Seq
}

// A master that stops reading makes the room's write time out in the middle
// of a frame: the room closes that connection (nothing follows the partial
// frame on it), and the next master gets every frame not written whole,
// whole and in order, starting with the one cut.
func TestStalledMasterGetsNoPartialFrame(t *testing.T) {
	p := newTestProc()
	path := serveControl(t, p, 200*time.Millisecond)
	m1 := connectMaster(t, p, path)

	// Frames of about 133 KB: a Unix socket's buffer (about 200 KB) takes
	// one and part of the next.
	const n = 12
	for seq := int64(1); seq <= n; seq++ {
		p.onEvent(logEvent(seq, 100_003))
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if p.connected() {
			return errors.New("the room still writes to the master that does not read")
		}
		return nil
	})

	// What the first master got: whole frames of seqs 1, 2, ..., then the
	// start of the next frame, then the end of the stream.
	m1.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(m1)
	if err != nil {
		t.Fatalf("the room did not close the stalled master's connection: %v", err)
	}
	got := int64(0)
	for len(b) >= 4 && len(b)-4 >= int(binary.BigEndian.Uint32(b)) {
		r := bytes.NewReader(b)
		m, err := ipc.Decode(r)
		if err != nil || len(m.Events) != 1 || m.Events[0].Seq != got+1 {
			t.Fatalf("the first master's frame %d: %s with %d events, %v", got+1, m.Type, len(m.Events), err)
		}
		got++
		b = b[len(b)-r.Len():]
	}
	if len(b) == 0 {
		t.Fatal("no partial frame: the write deadline did not hit in the middle of a frame")
	}
	if got >= n {
		t.Fatalf("the first master got all %d frames whole", got)
	}
	t.Logf("the first master got %d frames whole and %d bytes of the next", got, len(b))

	// The next master gets the rest, from the frame that was cut.
	m2 := connectMaster(t, p, path)
	for want := got + 1; want <= n; want++ {
		if seq := nextSeq(t, m2); seq != want {
			t.Fatalf("the second master got seq %d, want %d", seq, want)
		}
	}
}

// An event that cannot be encoded (a frame over ipc.MaxFrame) is dropped
// and counted; the events after it still reach the master.
func TestUnencodableEventDropped(t *testing.T) {
	p := newTestProc()
	path := serveControl(t, p, time.Second)
	m := connectMaster(t, p, path)
	p.onEvent(logEvent(1, 10))
	p.onEvent(logEvent(2, ipc.MaxFrame)) // base64: a third more
	p.onEvent(logEvent(3, 10))
	for _, want := range []int64{1, 3} {
		if seq := nextSeq(t, m); seq != want {
			t.Fatalf("got seq %d, want %d", seq, want)
		}
	}
	if n := p.unencodable.Load(); n != 1 {
		t.Fatalf("%d unencodable messages counted, want 1", n)
	}
	// Still in order after it.
	for seq := int64(4); seq <= 10; seq++ {
		p.onEvent(logEvent(seq, 10))
	}
	for want := int64(4); want <= 10; want++ {
		if seq := nextSeq(t, m); seq != want {
			t.Fatalf("got seq %d, want %d", seq, want)
		}
	}
}

// Without a master the room holds its last maxQueue frames: the oldest are
// dropped, and the next master gets the rest in order.
func TestQueueKeepsTheLastFrames(t *testing.T) {
	p := newTestProc()
	path := serveControl(t, p, time.Second)
	const extra = 5
	for seq := int64(1); seq <= maxQueue+extra; seq++ {
		p.onEvent(logEvent(seq, 10))
	}
	m := connectMaster(t, p, path)
	for want := int64(extra + 1); want <= maxQueue+extra; want++ {
		if seq := nextSeq(t, m); seq != want {
			t.Fatalf("got seq %d, want %d", seq, want)
		}
	}
}

// An idle room reports its stats only every idleStatsEvery intervals, and a
// change at the next interval.
func TestIdleStatsSkipped(t *testing.T) {
	const every = 100 * time.Millisecond
	iss, _ := token.NewIssuer("test-secret-0123456789")
	p := newTestProc()
	rm, err := room.New(room.Config{Name: "lobby", Tokens: iss, Log: p.log, Bans: p.bans, OnEvent: p.onEvent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rm.Run(ctx)
	p.room, p.statsEvery = rm, every
	path := serveControl(t, p, 5*time.Second)
	c := connectMaster(t, p, path)
	go p.statsLoop(ctx, rm)

	nextStats := func() (chatfleet.RoomStats, time.Time) {
		t.Helper()
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := ipc.Decode(c)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type == ipc.TypeStats && m.Stats != nil {
				return *m.Stats, time.Now()
			}
		}
	}
	first, t1 := nextStats()
	second, t2 := nextStats()
	if gap := t2.Sub(t1); gap < (idleStatsEvery-1)*every {
		t.Errorf("unchanged stats %v after the previous, want at least %v", gap, (idleStatsEvery-1)*every)
	}
	if second.Seq != first.Seq || second.Conns != first.Conns {
		t.Errorf("idle room's stats changed: %+v then %+v", first, second)
	}
	rm.Global("hello")
	for {
		s, _ := nextStats()
		if s.Seq > second.Seq {
			break
		}
	}
}
