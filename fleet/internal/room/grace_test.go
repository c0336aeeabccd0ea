package room

import (
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

const testHLS = "https://cdn.example.com/live/x.m3u8"

// A live producer gone for the grace makes the stream offline, with a
// reason, for the viewers and in the stats; on its return the stream is
// live again with the URL it had announced.
func TestProducerGraceEndsAndResumesStream(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ProducerGrace = 300 * time.Millisecond })
	prod := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: testHLS})
	vic.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return m.Live })
	left := time.Now()
	prod.ws.Close()
	off := vic.await(protocol.TypeStream, nil)
	took := time.Since(left)
	if off.Live || off.Reason != ReasonProducerLeft || off.Seq == 0 {
		t.Fatalf("stream event after the grace: %+v", off)
	}
	if took < 300*time.Millisecond {
		t.Fatalf("stream offline after %s, before the 300ms grace", took)
	}
	if st := e.room.Stats(); st.ProducerLive || st.HLSURL != "" {
		t.Fatalf("stats after the grace: %+v", st)
	}
	e.event(EventStream, func(ev Event) bool { return !ev.Live })

	back := e.dial("prod", chatfleet.RoleProducer)
	on := vic.await(protocol.TypeStream, nil)
	if !on.Live || on.HLSURL != testHLS || on.Seq <= off.Seq {
		t.Fatalf("stream event on the producer's return: %+v (offline was seq %d)", on, off.Seq)
	}
	back.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return m.Live })
	if st := e.room.Stats(); !st.ProducerLive || st.HLSURL != testHLS {
		t.Fatalf("stats on return: %+v", st)
	}
}

// A producer back within the grace keeps the stream live: no stream event.
func TestProducerBackWithinGrace(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ProducerGrace = time.Second })
	prod := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: testHLS})
	vic.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return m.Live })
	prod.ws.Close()
	vic.await(protocol.TypeLeave, func(m protocol.ServerMsg) bool { return m.UserID == "prod" })
	back := e.dial("prod", chatfleet.RoleProducer)
	vic.await(protocol.TypeJoin, func(m protocol.ServerMsg) bool { return m.UserID == "prod" })
	// Past the grace, a chat shows nothing came between.
	time.Sleep(1300 * time.Millisecond) // the absence of an event needs the time to pass
	seq := back.chat("still here")
	m := vic.await(protocol.TypeChat, nil)
	if m.Seq != seq {
		t.Fatalf("chat seq %d, want %d", m.Seq, seq)
	}
	if st := e.room.Stats(); !st.ProducerLive {
		t.Fatalf("stats: %+v", st)
	}
}

// A producer that announced offline before leaving does not come back live.
func TestProducerOfflineLeavesNoGrace(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ProducerGrace = 200 * time.Millisecond })
	prod := e.dial("prod", chatfleet.RoleProducer)
	vic := e.dial("vic", chatfleet.RoleViewer)
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: testHLS})
	vic.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return m.Live })
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream})
	vic.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return !m.Live && m.Reason == "" })
	prod.ws.Close()
	vic.await(protocol.TypeLeave, nil)
	back := e.dial("prod", chatfleet.RoleProducer)
	vic.await(protocol.TypeJoin, nil)
	time.Sleep(400 * time.Millisecond) // past the grace: the absence of an event needs the time to pass
	seq := back.chat("after")
	if m := vic.await(protocol.TypeChat, nil); m.Seq != seq {
		t.Fatalf("an event came between: chat seq %d, want %d", m.Seq, seq)
	}
	if st := e.room.Stats(); st.ProducerLive {
		t.Fatalf("stats: %+v", st)
	}
}

// A room created with an hlsUrl lets the producer announce live without
// one; a room without refuses that.
func TestStreamDefaultURL(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HLSURL = testHLS })
	prod := e.dial("prod", chatfleet.RoleProducer)
	prod.send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true})
	if m := prod.await(protocol.TypeStream, nil); !m.Live || m.HLSURL != testHLS {
		t.Fatalf("stream %+v, want live at the room's URL", m)
	}
	if st := e.room.Stats(); !st.ProducerLive || st.HLSURL != testHLS {
		t.Fatalf("stats %+v", st)
	}

	bare := newEnv(t, nil)
	p2 := bare.dial("prod", chatfleet.RoleProducer)
	if code := p2.errorCode(protocol.ClientMsg{Type: protocol.TypeStream, Live: true}); code != protocol.CodeMissingField {
		t.Fatalf("live without any URL: %q, want %q", code, protocol.CodeMissingField)
	}
	if _, err := New(Config{Name: "x", Tokens: e.tokens, HLSURL: "ftp://cdn/x"}); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
		t.Fatalf("New with a bad hlsUrl: %v", err)
	}
}

// A room restarted while its stream was live (resumed from its events) has
// no producer yet: the grace runs from its start.
func TestResumedLiveStreamWithoutProducer(t *testing.T) {
	live := `{"type":"stream","seq":7,"ts":1,"live":true,"hlsUrl":"` + testHLS + `"}`
	e := newEnv(t, func(c *Config) {
		c.ProducerGrace = 300 * time.Millisecond
		c.Resume = []chatfleet.Event{{Room: testRoom, Seq: 7, Type: protocol.TypeStream, Data: []byte(live)}}
	})
	vic := e.dial("vic", chatfleet.RoleViewer)
	off := vic.await(protocol.TypeStream, func(m protocol.ServerMsg) bool { return m.Seq > 7 })
	if off.Live || off.Reason != ReasonProducerLeft {
		t.Fatalf("stream %+v, want offline", off)
	}
	e.dial("prod", chatfleet.RoleProducer)
	if on := vic.await(protocol.TypeStream, nil); !on.Live || on.HLSURL != testHLS {
		t.Fatalf("stream on return %+v", on)
	}
}

// The stream value type alone: what a producer may announce, and the grace's
// decisions.
func TestStreamDecisions(t *testing.T) {
	for _, tt := range []struct {
		name string
		msg  protocol.ClientMsg
		def  string
		want protocol.StreamState
		code string
	}{
		{"offline", protocol.ClientMsg{HLSURL: testHLS}, "", protocol.StreamState{}, ""},
		{"live", protocol.ClientMsg{Live: true, HLSURL: testHLS}, "", protocol.StreamState{Live: true, HLSURL: testHLS}, ""},
		{"live at the room's URL", protocol.ClientMsg{Live: true}, testHLS, protocol.StreamState{Live: true, HLSURL: testHLS}, ""},
		{"live without URL", protocol.ClientMsg{Live: true}, "", protocol.StreamState{Live: true}, protocol.CodeMissingField},
		{"not http", protocol.ClientMsg{Live: true, HLSURL: "ftp://cdn.example.com/x.m3u8"}, "", protocol.StreamState{}, protocol.CodeInvalid},
	} {
		st, code, _ := announced(&tt.msg, tt.def)
		if code != tt.code || (code == "" && st != tt.want) {
			t.Errorf("%s: announced = %+v %q, want %+v %q", tt.name, st, code, tt.want, tt.code)
		}
	}

	s := stream{state: protocol.StreamState{Live: true, HLSURL: testHLS}}
	if s.gone(true, false) || s.gone(false, true) {
		t.Fatal("the grace ended a stream whose producer is back, or in a room that ended")
	}
	if !s.gone(false, false) || s.away != testHLS {
		t.Fatalf("gone: away %q, want the URL kept", s.away)
	}
	s.state = protocol.StreamState{}
	if url, ok := s.back(false); !ok || url != testHLS || s.away != "" {
		t.Fatalf("back = %q %v, want the kept URL once", url, ok)
	}
	if _, ok := s.back(false); ok {
		t.Fatal("back twice")
	}
}
