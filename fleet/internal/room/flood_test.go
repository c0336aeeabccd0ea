package room

import (
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MsgRate = 0.001; c.MsgBurst = 3; c.AbuseStrikes = 5 })
	vic := e.dial("vic", chatfleet.RoleViewer)
	for i := range 3 {
		vic.chat(fmt.Sprint("burst ", i))
	}
	if code := vic.errorCode(protocol.ClientMsg{Type: protocol.TypeChat, Text: "one too many"}); code != protocol.CodeRateLimited {
		t.Fatalf("over the rate: %q", code)
	}
	// Moderators are not limited per user.
	mod := e.dial("mod", chatfleet.RoleModerator)
	for i := range 10 {
		mod.chat(fmt.Sprint("mod ", i))
	}
	// Sustained flooding: closed with 1008.
	for range 10 {
		if err := vic.ws.WriteJSON(protocol.ClientMsg{Type: protocol.TypeChat, Text: "flood"}); err != nil {
			break
		}
	}
	vic.expectClose(protocol.ClosePolicy)
	mod.chat("the room is fine")
}

func TestRoomRateCeiling(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RoomMsgRate = 0.001; c.RoomMsgBurst = 4 })
	var cs []*tclient
	for i := range 3 {
		cs = append(cs, e.dial(fmt.Sprintf("user%d", i), chatfleet.RoleViewer))
	}
	accepted, refused := 0, 0
	for i := range 9 {
		c := cs[i%3]
		c.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hi", ClientID: fmt.Sprint(i)})
		m := c.await("", func(m protocol.ServerMsg) bool { return m.Type == protocol.TypeAck || m.Type == protocol.TypeError })
		switch {
		case m.Type == protocol.TypeAck:
			accepted++
		case m.Code == protocol.CodeRateLimited:
			refused++
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	if accepted != 4 || refused != 5 {
		t.Fatalf("%d accepted, %d refused; want 4 and 5", accepted, refused)
	}
	// Nobody was closed for the room's ceiling.
	for _, c := range cs {
		c.send(protocol.ClientMsg{Type: protocol.TypePing})
		c.await(protocol.TypePong, nil)
	}
}

func TestReadLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReadLimit = 512 })
	vic := e.dial("vic", chatfleet.RoleViewer)
	vic.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: strings.Repeat("a", 400)})
	vic.await(protocol.TypeChat, nil)
	vic.ws.WriteJSON(protocol.ClientMsg{Type: protocol.TypeChat, Text: strings.Repeat("a", 600)})
	vic.expectClose(protocol.CloseTooBig)
	e.dial("bob", chatfleet.RoleViewer).chat("fine")
}

func TestMaxConnsPerUser(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnsPerUser = 2 })
	e.dial("vic", chatfleet.RoleViewer)
	e.dial("vic", chatfleet.RoleViewer)
	c, _, err := e.dialURL(e.wsURL(url.Values{"token": {e.token("vic", chatfleet.RoleViewer)}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.name = "vic#3"
	c.expectClose(protocol.ClosePolicy)
}

// TestSlowViewer has one viewer stop reading while 50 others read: the slow
// one is dropped, the others get every message, in order.
func TestSlowViewer(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SendQueueBytes = 64 << 10
		c.Settings.MaxMessageLen = 1000
		c.RoomMsgRate, c.RoomMsgBurst = 1e6, 1e6
	}, envOpts{smallSocketBuffers: true})
	prod := e.dial("prod", chatfleet.RoleProducer)

	e.dialUnread("slow") // the slow viewer, never read

	const viewers = 50
	var cs []*tclient
	for i := range viewers {
		cs = append(cs, e.dial(fmt.Sprintf("viewer%02d", i), chatfleet.RoleViewer))
	}
	testutil.Eventually(t, waitFor, func() error {
		if st := e.room.Stats(); st.Conns != viewers+2 {
			return fmt.Errorf("%d conns", st.Conns)
		}
		return nil
	})

	// Each viewer collects chat texts in the background.
	var mu sync.Mutex
	got := make([][]string, viewers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m := <-c.msgs:
					if m.Type == protocol.TypeChat {
						mu.Lock()
						got[i] = append(got[i], m.Text)
						mu.Unlock()
					}
				case <-c.done:
					return
				case <-stop:
					return
				}
			}
		}()
	}
	received := func(n int) error {
		mu.Lock()
		defer mu.Unlock()
		for i := range got {
			if len(got[i]) < n {
				return fmt.Errorf("viewer %d has %d of %d messages", i, len(got[i]), n)
			}
		}
		return nil
	}

	// The producer sends in rounds of 10 messages of ~1 KB, each round once
	// every reader has the previous one, until the slow viewer is dropped.
	var sent []string
	pad := strings.Repeat("x", 950)
	for round := 0; e.room.Stats().SlowDrops == 0; round++ {
		if round == 200 {
			t.Fatalf("slow viewer not dropped after %d messages", len(sent))
		}
		for range 10 {
			text := fmt.Sprintf("%05d %s", len(sent), pad)
			prod.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text})
			sent = append(sent, text)
		}
		testutil.Eventually(t, waitFor, func() error { return received(len(sent)) })
	}
	for range 10 { // more after the drop
		text := fmt.Sprintf("%05d %s", len(sent), pad)
		prod.send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text})
		sent = append(sent, text)
	}
	testutil.Eventually(t, waitFor, func() error { return received(len(sent)) })
	close(stop)
	wg.Wait()

	st := e.room.Stats()
	if st.SlowDrops != 1 || st.Conns != viewers+1 {
		t.Fatalf("stats %+v: want exactly the slow viewer dropped", st)
	}
	for i := range got {
		if !slices.Equal(got[i], sent) {
			t.Fatalf("viewer %d got %d messages, not the %d sent in order", i, len(got[i]), len(sent))
		}
	}
	t.Logf("slow viewer dropped after %d messages of ~1 KB", len(sent)-10)
}
