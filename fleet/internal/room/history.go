package room

import (
	"encoding/json"
	"slices"
	"strings"
	"unicode"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

// frame is one encoded server message, shared by every client it is queued
// on; seq is its SSE event id (0: none).
type frame struct {
	data []byte
	seq  int64
}

// entry is one sequenced event kept for joins and recovery.
type entry struct {
	f       *frame
	chat    bool
	deleted bool // a moderator deleted it: not replayed
}

// historyFactor is how many sequenced events the ring holds per chat message
// of the history size: presence and moderation events (200 viewers
// reconnecting are 200 joins) must not push the chat a reconnecting client
// missed out of the ring.
const historyFactor = 8

// history is a ring of the last sequenced events, oldest first. Its seqs
// increase; they are consecutive unless the room resumed from a log with gaps.
// It holds historyFactor times the room's history size in events; a join
// without lastSeq gets the last chats (the history size) only.
type history struct {
	buf   []entry
	start int // index of the oldest entry
	n     int
	chats int // the history size: chat messages given to a fresh join
}

func (h *history) at(i int) *entry { return &h.buf[(h.start+i)%len(h.buf)] }

// resize sets the history size to chats messages, keeping the newest events
// that fit a ring of historyFactor times that.
func (h *history) resize(chats int) {
	h.chats = chats
	size := chats * historyFactor
	if size == len(h.buf) {
		return
	}
	keep := min(h.n, size)
	buf := make([]entry, size)
	for i := range keep {
		buf[i] = *h.at(h.n - keep + i)
	}
	h.buf, h.start, h.n = buf, 0, keep
}

func (h *history) add(f *frame, chat bool) {
	e := entry{f: f, chat: chat}
	if h.n < len(h.buf) {
		h.buf[(h.start+h.n)%len(h.buf)] = e
		h.n++
		return
	}
	h.buf[h.start] = e
	h.start = (h.start + 1) % len(h.buf)
}

// first returns the oldest seq kept, 0 if none.
func (h *history) first() int64 {
	if h.n == 0 {
		return 0
	}
	return h.at(0).f.seq
}

// last returns the newest seq kept, 0 if none.
func (h *history) last() int64 {
	if h.n == 0 {
		return 0
	}
	return h.at(h.n - 1).f.seq
}

// find returns the entry with seq, nil if not kept.
func (h *history) find(seq int64) *entry {
	if h.n == 0 || seq < h.first() || seq > h.last() {
		return nil
	}
	// Seqs are usually consecutive: try the direct index first.
	if i := int(seq - h.first()); i < h.n && h.at(i).f.seq == seq {
		return h.at(i)
	}
	for i := range h.n {
		if e := h.at(i); e.f.seq == seq {
			return e
		}
	}
	return nil
}

// since returns the events a client needs: with has, those after lastSeq,
// and missed when some of them are no longer kept (or lastSeq is unknown to
// this room: above cur, the room's seq); without has (a fresh join), the last
// chat messages, as many as the history size: presence and moderation
// events are state the welcome carries, not history to replay.
// Deleted chat messages are left out.
func (h *history) since(cur, lastSeq int64, has bool) (out []*frame, missed bool) {
	if !has {
		n := 0
		for i := h.n - 1; i >= 0 && n < h.chats; i-- {
			if e := h.at(i); e.chat && !e.deleted {
				n++
			}
		}
		out = make([]*frame, 0, n)
		for i := h.n - 1; i >= 0 && len(out) < n; i-- {
			if e := h.at(i); e.chat && !e.deleted {
				out = append(out, e.f)
			}
		}
		slices.Reverse(out)
		return out, false
	}
	from := 0 // index of the first entry to send
	switch {
	case lastSeq > cur:
		missed = true
	case lastSeq == cur:
		return nil, false
	case h.n == 0:
		return nil, lastSeq < cur
	case lastSeq >= h.first()-1:
		for from < h.n && h.at(from).f.seq <= lastSeq {
			from++
		}
	default:
		missed = true
	}
	for i := from; i < h.n; i++ {
		if e := h.at(i); !e.deleted {
			out = append(out, e.f)
		}
	}
	return out, missed
}

// maskWords replaces every blocked word of text (whole words, any case) by
// as many '*' as it has characters. Words are runs of letters and digits.
func maskWords(text string, blocked map[string]bool) string {
	if len(blocked) == 0 {
		return text
	}
	var b *strings.Builder
	last := 0 // bytes of text already copied to b
	isWord := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
	for i := 0; i < len(text); {
		j := strings.IndexFunc(text[i:], isWord)
		if j < 0 {
			break
		}
		start := i + j
		end := strings.IndexFunc(text[start:], func(r rune) bool { return !isWord(r) })
		if end < 0 {
			end = len(text)
		} else {
			end += start
		}
		if word := text[start:end]; blocked[strings.ToLower(word)] {
			if b == nil {
				b = &strings.Builder{}
				b.Grow(len(text))
			}
			b.WriteString(text[last:start])
			b.WriteString(strings.Repeat("*", len([]rune(word))))
			last = end
		}
		i = end
	}
	if b == nil {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

// resume refills the history from a previous life of the room and restores
// the stream and slow mode state its events announced.
func (h *hub) resume(evs []chatfleet.Event, startSeq int64) {
	h.seq = max(startSeq, 0)
	for _, ev := range evs {
		if ev.Seq <= h.hist.last() || len(ev.Data) == 0 || !json.Valid(ev.Data) {
			continue
		}
		h.hist.add(&frame{data: ev.Data, seq: ev.Seq}, ev.Type == protocol.TypeChat)
		h.seq = max(h.seq, ev.Seq)
		switch ev.Type {
		case protocol.TypeStream, protocol.TypeSlowMode:
			if m, err := protocol.DecodeServer(ev.Data); err == nil {
				if ev.Type == protocol.TypeStream {
					h.stream.state = protocol.StreamState{Live: m.Live, HLSURL: m.HLSURL}
				} else {
					h.slowMode = m.Seconds
				}
			}
		}
	}
	h.r.stats.seq.Store(h.seq)
	h.publishStream()
}
