package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devnats"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// spreadRoom is one room over three hosts of this machine: the origin on
// the first, an edge on each of the others, all on one embedded NATS.
type spreadRoom struct {
	t      testing.TB
	nats   *devnats.Server
	natsAt devnats.Config
	name   string
	hosts  [3]*host
	ports  [3]int // the room's port on each host: origin, edge 1, edge 2
}

// startSpread starts NATS and three hosts; natsFor, when set, gives the NATS
// URL host i uses (e.g. a proxy in front of the server).
func startSpread(t testing.TB, name string, natsFor func(i int, natsURL string) string) *spreadRoom {
	t.Helper()
	s := &spreadRoom{t: t, name: name, natsAt: devnats.Config{Dir: t.TempDir()}}
	var err error
	if s.nats, err = devnats.Start(s.natsAt); err != nil {
		t.Fatal(err)
	}
	s.natsAt.Port = s.nats.Port()
	t.Cleanup(func() { s.nats.Stop() })
	for i := range s.hosts {
		url := s.nats.URL()
		if natsFor != nil {
			url = natsFor(i, url)
		}
		s.hosts[i] = startHost(t, "NATS_URL="+url)
	}
	s.ports[0] = s.hosts[0].Create(userKey, name, hostapi.RoomOptions{Role: hostapi.RoleOrigin})
	for i := 1; i < 3; i++ {
		s.ports[i] = s.hosts[i].Create(userKey, name, hostapi.RoomOptions{Role: hostapi.RoleEdge})
	}
	return s
}

// url is the room's WebSocket base on host i.
func (s *spreadRoom) url(i int) string { return roomWS(s.ports[i]) }

// pid is the room's process on host i.
func (s *spreadRoom) pid(i int) int { return s.hosts[i].room(s.name).PID }

// watcher is a viewer that follows the room's sequence across reconnects:
// it reconnects (to the next of its URLs after a failure) with lastSeq and
// records any gap.
type watcher struct {
	urls  []string
	token string

	mu     sync.Mutex
	last   int64 // the last seq seen; every one before it was seen
	gaps   []string
	conns  int // connections welcomed
	closes []int
	conn   *websocket.Conn
}

func newWatcher(t testing.TB, room, user string, urls ...string) *watcher {
	return &watcher{urls: urls, token: issue(t, room, user, chatfleet.RoleViewer)}
}

// run keeps w connected until ctx ends; start says which URL to try first.
func (w *watcher) run(ctx context.Context, start int, welcomed chan<- struct{}) {
	i := start
	first := true
	for ctx.Err() == nil {
		w.mu.Lock()
		last := w.last
		w.mu.Unlock()
		lastSeq := int64(-1)
		if !first {
			lastSeq = last
		}
		ws, _, err := testutil.TryDialRoom(w.urls[i%len(w.urls)], w.token, lastSeq)
		if err != nil {
			i++
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		w.mu.Lock()
		w.conn = ws.Conn
		w.mu.Unlock()
		code := w.read(ctx, ws.Conn, first, welcomed)
		first = false
		welcomed = nil
		w.mu.Lock()
		w.closes = append(w.closes, code)
		w.mu.Unlock()
		i++ // the next endpoint: this one failed or sent us away
	}
}

// read reads one connection until it ends; it returns the close code (0:
// none).
func (w *watcher) read(ctx context.Context, c *websocket.Conn, first bool, welcomed chan<- struct{}) int {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	for {
		_, frame, err := c.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			return 0
		}
		protocol.Split(frame, func(b []byte) {
			var m struct {
				Type    string            `json:"type"`
				Seq     int64             `json:"seq"`
				Missed  bool              `json:"missed"`
				History []json.RawMessage `json:"history"`
			}
			if json.Unmarshal(b, &m) != nil {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			switch m.Type {
			case protocol.TypeWelcome:
				w.conns++
				if first {
					w.last = m.Seq
					break
				}
				if m.Missed {
					w.gaps = append(w.gaps, fmt.Sprintf("welcome after %d: missed", w.last))
				}
				for _, h := range m.History {
					var e struct{ Seq int64 }
					json.Unmarshal(h, &e)
					w.saw(e.Seq)
				}
				if m.Seq > w.last {
					w.gaps = append(w.gaps, fmt.Sprintf("welcome at %d after %d", m.Seq, w.last))
					w.last = m.Seq
				}
			case protocol.TypeAck, protocol.TypeCount, protocol.TypeError, protocol.TypePong:
			default:
				if m.Seq > 0 {
					w.saw(m.Seq)
				}
			}
			if m.Type == protocol.TypeWelcome && welcomed != nil {
				welcomed <- struct{}{}
				welcomed = nil
			}
		})
	}
}

// saw records one sequenced event; w.mu is held.
func (w *watcher) saw(seq int64) {
	switch {
	case seq <= w.last:
	case seq == w.last+1:
		w.last = seq
	default:
		w.gaps = append(w.gaps, fmt.Sprintf("%d after %d", seq, w.last))
		w.last = seq
	}
}

func (w *watcher) state() (last int64, gaps []string, conns int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, append([]string(nil), w.gaps...), w.conns
}

// crowd is many watchers.
type crowd struct {
	ws     []*watcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watch connects n viewers, spread over urls (viewer i starts on urls[i %
// len(urls)] and fails over to the next), and waits for all their welcomes.
func watch(t testing.TB, room string, n int, urls ...string) *crowd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &crowd{cancel: cancel}
	t.Cleanup(c.stop)
	welcomed := make(chan struct{}, n)
	for i := range n {
		w := newWatcher(t, room, fmt.Sprintf("v%d", i), urls...)
		c.ws = append(c.ws, w)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); w.run(ctx, i, welcomed) }()
	}
	deadline := time.After(120 * time.Second)
	for range n {
		select {
		case <-welcomed:
		case <-deadline:
			t.Fatalf("not every viewer was welcomed within 120 s")
		}
	}
	return c
}

func (c *crowd) stop() { c.cancel(); c.wg.Wait() }

// caughtUp waits until every watcher has seen seq, then fails the test for
// any gap.
func (c *crowd) caughtUp(t testing.TB, seq int64, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		behind := 0
		var example string
		for i, w := range c.ws {
			if last, _, _ := w.state(); last < seq {
				behind++
				example = fmt.Sprintf("viewer %d at %d", i, last)
			}
		}
		if behind > 0 {
			return fmt.Errorf("%d of %d viewers behind seq %d (%s)", behind, len(c.ws), seq, example)
		}
		return nil
	})
	for i, w := range c.ws {
		if _, gaps, _ := w.state(); len(gaps) > 0 {
			t.Errorf("viewer %d: gaps %v", i, gaps[:min(len(gaps), 5)])
		}
	}
}

// say has the producer send n chat messages and returns the seq of the last.
func say(t testing.TB, p *testutil.WS, prefix string, n int) int64 {
	t.Helper()
	var last int64
	for i := range n {
		p.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("%s %d", prefix, i)})
		last = p.Next(protocol.TypeAck, 20*time.Second).Seq
	}
	return last
}

// TestSpreadRoom: viewers on two edges get the origin's events in its order
// with its seq; a viewer on an edge chats through the origin; the count is
// the whole room's.
func TestSpreadRoom(t *testing.T) {
	s := startSpread(t, "spread", nil)
	prod := join(t, s.ports[0], s.name, "owner", chatfleet.RoleProducer)
	c := watch(t, s.name, 40, s.url(1), s.url(2))
	last := say(t, prod, "hello", 30)
	c.caughtUp(t, last, 30*time.Second)

	// A viewer on edge 2 chats: the producer on the origin sees it, with the
	// ack's seq, and so does a viewer on edge 1.
	talker := joinAt(t, s.url(2), s.name, "talker", chatfleet.RoleViewer)
	talker.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "from the edge", ClientID: "c1"})
	ack := talker.Next(protocol.TypeAck, 15*time.Second)
	for {
		m := prod.Next(protocol.TypeChat, 15*time.Second)
		if m.Text == "from the edge" {
			if m.Seq != ack.Seq || m.From == nil || m.From.UserID != "talker" {
				t.Errorf("origin got %+v, want seq %d from talker", m, ack.Seq)
			}
			break
		}
	}
	c.caughtUp(t, ack.Seq, 30*time.Second)

	// The count the producer sees includes the edges' viewers.
	testutil.Eventually(t, 20*time.Second, func() error {
		m, err := prod.TryNext(protocol.TypeCount, 5*time.Second)
		if err != nil {
			return err
		}
		if m.ViewerCount < 41 {
			return fmt.Errorf("count %d, want at least 41", m.ViewerCount)
		}
		return nil
	})

	// A producer's token is refused at an edge.
	ws := testutil.DialRoom(t, s.url(1), issue(t, s.name, "owner", chatfleet.RoleProducer), -1)
	if _, err := ws.TryNext(protocol.TypeWelcome, 10*time.Second); err == nil || ws.Closed == nil || ws.Closed.Code != protocol.ClosePolicy {
		t.Errorf("producer at an edge: %v, want close %d", err, protocol.ClosePolicy)
	}

	// The producer closes the room: every edge's viewers are told 1001.
	prod.Send(protocol.ClientMsg{Type: protocol.TypeClose})
	testutil.Eventually(t, 20*time.Second, func() error {
		m, err := talker.TryNext(protocol.TypeChat, 5*time.Second)
		if talker.Closed != nil && talker.Closed.Code == protocol.CloseGoingAway {
			return nil
		}
		return fmt.Errorf("talker: %v %v", m.Type, err)
	})
}

// TestSpreadEdgeKilled: kill -9 of an edge with 2,000 viewers; they
// reconnect to the other edge with lastSeq and miss nothing.
func TestSpreadEdgeKilled(t *testing.T) {
	const n = 2000
	s := startSpread(t, "edgekill", nil)
	prod := join(t, s.ports[0], s.name, "owner", chatfleet.RoleProducer)
	c := watch(t, s.name, n, s.url(1), s.url(2))
	last := say(t, prod, "before", 5)
	c.caughtUp(t, last, 60*time.Second)

	syscall.Kill(s.pid(1), syscall.SIGKILL)
	last = say(t, prod, "during", 20)
	c.caughtUp(t, last, 90*time.Second)
	moved := 0
	for _, w := range c.ws {
		if _, _, conns := w.state(); conns > 1 {
			moved++
		}
	}
	if moved < n/2 {
		t.Errorf("%d viewers reconnected, want at least the %d of the killed edge", moved, n/2)
	}
	t.Logf("%d viewers, %d reconnected after the kill, no gap", n, moved)
}

// TestSpreadOriginKilled: kill -9 of the origin; its master starts it again,
// and viewers on the edges see every event with no gap.
func TestSpreadOriginKilled(t *testing.T) {
	s := startSpread(t, "originkill", nil)
	prod := join(t, s.ports[0], s.name, "owner", chatfleet.RoleProducer)
	c := watch(t, s.name, 100, s.url(1), s.url(2))
	last := say(t, prod, "before", 10)
	c.caughtUp(t, last, 30*time.Second)

	pid := s.pid(0)
	syscall.Kill(pid, syscall.SIGKILL)
	testutil.Eventually(t, 30*time.Second, func() error {
		if r := s.hosts[0].room(s.name); r.PID == pid || r.PID == 0 {
			return fmt.Errorf("origin: %+v", r)
		}
		return nil
	})
	prod = join(t, s.ports[0], s.name, "owner", chatfleet.RoleProducer)
	after := say(t, prod, "after", 10)
	if after <= last {
		t.Fatalf("the restarted origin's seq %d does not continue from %d", after, last)
	}
	c.caughtUp(t, after, 60*time.Second)
}

// TestSpreadNATSRestart: the NATS server stops mid-stream and comes back on
// the same data; nothing the origin sequenced meanwhile is lost to the edges.
func TestSpreadNATSRestart(t *testing.T) {
	s := startSpread(t, "natsrestart", nil)
	prod := join(t, s.ports[0], s.name, "owner", chatfleet.RoleProducer)
	c := watch(t, s.name, 100, s.url(1), s.url(2))
	last := say(t, prod, "before", 10)
	c.caughtUp(t, last, 30*time.Second)

	s.nats.Stop()
	during := say(t, prod, "during", 10) // the origin goes on; the publisher holds the events
	var err error
	if s.nats, err = devnats.Start(s.natsAt); err != nil {
		t.Fatal(err)
	}
	after := say(t, prod, "after", 5)
	if after <= during {
		t.Fatalf("seq %d after %d", after, during)
	}
	c.caughtUp(t, after, 90*time.Second)
}

// TestSpreadPartitionedEdge: an edge cut from NATS sends its viewers away
// (1012) instead of serving a stale room; they recover on the other edge.
func TestSpreadPartitionedEdge(t *testing.T) {
	var px *proxy
	s := startSpread(t, "partition", func(i int, natsURL string) string {
		if i != 1 {
			return natsURL
		}
		px = newProxy(t, "nats", strings.TrimPrefix(natsURL, "nats://"))
		return "nats://" + px.Addr // only edge 1 reaches NATS through the proxy
	})

	prod := join(t, s.ports[0], s.name, "owner", chatfleet.RoleProducer)
	c := watch(t, s.name, 100, s.url(1), s.url(2))
	last := say(t, prod, "before", 5)
	c.caughtUp(t, last, 30*time.Second)

	px.Add("cut", "timeout", "downstream", map[string]any{"timeout": 0})
	px.Add("cut-up", "timeout", "upstream", map[string]any{"timeout": 0})
	testutil.Eventually(t, 60*time.Second, func() error {
		sent := 0
		for _, w := range c.ws {
			w.mu.Lock()
			for _, code := range w.closes {
				if code == protocol.CloseRestart {
					sent++
					break
				}
			}
			w.mu.Unlock()
		}
		if sent < len(c.ws)/2 {
			return fmt.Errorf("%d viewers sent away with 1012, want the partitioned edge's %d", sent, len(c.ws)/2)
		}
		return nil
	})
	after := say(t, prod, "after", 10)
	c.caughtUp(t, after, 60*time.Second)
	var moved atomic.Int64
	for _, w := range c.ws {
		if _, _, conns := w.state(); conns > 1 {
			moved.Add(1)
		}
	}
	t.Logf("%d viewers moved off the partitioned edge, no gap", moved.Load())
}
