package room

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestPacerWakesAtDueTime(t *testing.T) {
	p := newPacer()
	start := time.Now()
	late := p.wait(start.Add(300 * time.Millisecond))
	early := p.wait(start.Add(10 * time.Millisecond)) // re-arms the timer earlier
	if same := p.wait(start.Add(10*time.Millisecond + 10*time.Microsecond)); same != early {
		t.Error("writers due within one grain got different wake-ups")
	}
	<-early
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Errorf("woken after %v, before it was due", d)
	}
	select {
	case <-late:
		t.Fatal("the later wake-up fired with the earlier one")
	default:
	}
	<-late
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("woken after %v, before it was due", d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.due) != 0 || p.armedAt != 0 {
		t.Errorf("pacer holds %d wake-ups, armed at %d, after all fired", len(p.due), p.armedAt)
	}
}

func TestSharedBatch(t *testing.T) {
	var s shared
	a, b := &frame{data: []byte(`{"a":1}`)}, &frame{data: []byte(`{"b":2}`)}
	if s.prepared([]*frame{a, b}) != nil {
		t.Fatal("the first writer of a batch got a prepared message")
	}
	pm := s.prepared([]*frame{a, b})
	if pm == nil {
		t.Fatal("the second writer of the same batch got none")
	}
	if s.prepared([]*frame{a, b}) != pm {
		t.Error("the third writer got another prepared message")
	}
	// Same length and ends, another frame in the middle: not the same batch.
	c := &frame{data: []byte(`{"c":3}`)}
	if s.prepared([]*frame{a, c}) != nil || s.prepared([]*frame{a, b}) != nil {
		t.Error("a different batch was shared")
	}
	big := &frame{data: make([]byte, maxFrameBytes)}
	s.prepared([]*frame{a, big})
	if s.prepared([]*frame{a, big}) != nil {
		t.Error("a batch over one message's size was shared")
	}
}

// TestWriteDelayGrowsWithAudience: the pause between writes to a connection
// grows with the room's connections, within its bounds.
func TestWriteDelayGrowsWithAudience(t *testing.T) {
	r := &Room{cfg: Config{WriteDelay: 10 * time.Millisecond}}
	for _, tc := range []struct {
		conns int64
		want  time.Duration
	}{{0, 10 * time.Millisecond}, {1000, 15 * time.Millisecond}, {100000, maxWriteDelay}} {
		r.stats.conns.Store(tc.conns)
		if got := r.writeDelay(); got != tc.want {
			t.Errorf("%d conns: write delay %v, want %v", tc.conns, got, tc.want)
		}
	}
	r.cfg.WriteDelay = 0
	if got := r.writeDelay(); got != 0 {
		t.Errorf("no coalescing configured: write delay %v", got)
	}
}

// TestStalledViewerCut: a viewer that stops reading but keeps its read
// deadline alive with pongs, its queue far from full, is cut once a ping
// cannot be written: writes have no deadline of their own.
func TestStalledViewerCut(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SendQueueBytes = 4 << 20
		c.PongWait, c.WriteWait = 2*time.Second, 500*time.Millisecond
		c.Settings.MaxMessageLen = 1000
		c.RoomMsgRate, c.RoomMsgBurst = 1e6, 1e6
	}, envOpts{smallSocketBuffers: true})
	prod := e.dial("prod", chatfleet.RoleProducer)
	stalled := e.dialUnread("stalled")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // pongs, never a read
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if stalled.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	testutil.Eventually(t, waitFor, func() error {
		if n := e.room.Stats().Conns; n != 2 {
			return fmt.Errorf("%d conns", n)
		}
		return nil
	})
	text := strings.Repeat("x", 900)
	for i := range 200 { // 180 KB: far more than the sockets hold, far less than the queue
		prod.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprint(i, text)})
	}
	testutil.Eventually(t, waitFor, func() error {
		if n := e.room.Stats().Conns; n != 1 {
			return fmt.Errorf("%d conns: the stalled viewer is still in", n)
		}
		return nil
	})
	if st := e.room.Stats(); st.SlowDrops != 0 {
		t.Errorf("cut as too slow (%d), not by the ping", st.SlowDrops)
	}
}
