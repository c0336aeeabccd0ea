package room

import (
	"cmp"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// stream is the room's stream state and the producer's grace: a live stream
// whose producer's last connection went stays live for the grace, then is
// announced offline, its URL kept so that the producer's return puts it back
// live. It decides; the hub announces.
type stream struct {
	state protocol.StreamState
	away  string // the URL to go back live with when the producer returns

	graceFor time.Duration
	grace    *time.Timer // nil until first armed
	graceC   <-chan time.Time
}

// announced checks the stream state a producer's message m announces; def is
// the room's URL, for a live stream announced without one. It returns the
// error code and message of a refusal, or "" when st is valid.
func announced(m *protocol.ClientMsg, def string) (st protocol.StreamState, code, text string) {
	st.Live = m.Live
	if !m.Live {
		return st, "", ""
	}
	st.HLSURL = cmp.Or(m.HLSURL, def)
	if st.HLSURL == "" {
		return st, protocol.CodeMissingField, `stream: field "hlsUrl" is required when live is true (the room was created without one)`
	}
	if err := validHLS(st.HLSURL); err != nil {
		return st, protocol.CodeInvalid, "hlsUrl: " + err.Error()
	}
	return st, "", ""
}

// armGrace starts the producer's grace when a live stream has no producer
// (producer false) in a room that goes on.
func (s *stream) armGrace(producer, ended bool) {
	if producer || !s.state.Live || ended {
		return
	}
	if s.grace == nil {
		s.grace = time.NewTimer(s.graceFor)
		s.graceC = s.grace.C
		return
	}
	s.grace.Reset(s.graceFor)
}

func (s *stream) stopGrace() {
	if s.grace != nil {
		s.grace.Stop()
	}
}

// gone reports whether the grace ended a live stream without producer; its
// URL is then kept for the producer's return.
func (s *stream) gone(producer, ended bool) bool {
	if producer || !s.state.Live || ended {
		return false
	}
	s.away = s.state.HLSURL
	return true
}

// back returns the URL a returning producer's stream goes live again with,
// if it left while live and the stream was not announced since.
func (s *stream) back(ended bool) (string, bool) {
	if s.away == "" || s.state.Live || ended {
		return "", false
	}
	url := s.away
	s.away = ""
	return url, true
}

// announce sets the stream state the producer announced.
func (h *hub) announce(req *request) {
	st, code, text := announced(&req.msg, h.r.cfg.HLSURL)
	if code != "" {
		h.fail(req, code, text)
		return
	}
	h.stream.away = ""
	req.seq = h.setStream(st, "")
}

// setStream makes st the stream state, tells the clients (with reason, if
// any) and the master, and returns the event's seq.
func (h *hub) setStream(st protocol.StreamState, reason string) int64 {
	h.stream.state = st
	h.publishStream()
	seq := h.broadcast(&protocol.ServerMsg{Type: protocol.TypeStream, Live: st.Live, HLSURL: st.HLSURL, Reason: reason})
	h.r.emit(Event{Type: EventStream, Live: st.Live, HLSURL: st.HLSURL})
	return seq
}

// publishStream updates the stream state Stats reads from other goroutines.
func (h *hub) publishStream() {
	s := &h.r.stats
	s.live.Store(h.stream.state.Live)
	s.mu.Lock()
	s.hlsURL = h.stream.state.HLSURL
	s.mu.Unlock()
}

// producerGone ends the live stream of a producer gone for the grace,
// keeping its URL for its return.
func (h *hub) producerGone() {
	if !h.stream.gone(h.producer != nil, h.life.ended) {
		return
	}
	h.r.log.Info("producer gone for the grace: stream offline", "grace", h.stream.graceFor)
	h.setStream(protocol.StreamState{}, ReasonProducerLeft)
}

// producerBack puts the stream of a producer who left while live back
// live with the URL it had announced.
func (h *hub) producerBack() {
	if url, ok := h.stream.back(h.life.ended); ok {
		h.setStream(protocol.StreamState{Live: true, HLSURL: url}, "the producer is back")
	}
}
