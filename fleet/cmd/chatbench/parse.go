package main

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
)

// The producer's chat text names the step and the send time in microseconds
// (sendTs, the protocol's field, is in milliseconds: too coarse for a p50 of
// a millisecond or two). The viewers take the latency from the text and check
// that sendTs was echoed.
const textPrefix = "bench s="

// benchText returns the chat text for step sent at µs.
func benchText(step int, us int64) string {
	b := make([]byte, 0, 40)
	b = append(b, textPrefix...)
	b = strconv.AppendInt(b, int64(step), 10)
	b = append(b, " t="...)
	b = strconv.AppendInt(b, us, 10)
	return string(b)
}

// parsedMsg is what the load generator needs of one server message.
type parsedMsg struct {
	typ    string // message type
	seq    int64  // 0 if not sequenced
	step   int    // chat from the bench producer: its step, else 0
	sentUS int64  // chat from the bench producer: send time, Unix µs
	sendTS int64  // chat: the echoed sendTs, Unix ms
	code   string // error: its code
}

// parseMsg reads one server message. It takes the fast path for the shape
// the room writes ({"type":"…","seq":N,… with "text" and "sendTs" later)
// and falls back to encoding/json for anything else; ok is false only if the
// message is not a JSON object with a type.
func parseMsg(b []byte) (m parsedMsg, ok bool) {
	if m, ok := parseFast(b); ok {
		return m, true
	}
	sm, err := protocol.DecodeServer(b)
	if err != nil {
		return parsedMsg{}, false
	}
	m = parsedMsg{typ: sm.Type, seq: sm.Seq, sendTS: sm.SendTS, code: sm.Code}
	if sm.Type == protocol.TypeChat {
		m.step, m.sentUS, _ = splitBenchText(sm.Text)
	}
	return m, true
}

// parseFast reads what parseMsg needs without decoding the whole message.
// It relies on the order encoding/json gives ServerMsg's fields: type, seq,
// then the rest. Chat text is looked for only as the bench producer writes it
// (no escapes in it).
func parseFast(b []byte) (m parsedMsg, ok bool) {
	const typeKey = `{"type":"`
	if !bytes.HasPrefix(b, []byte(typeKey)) {
		return m, false
	}
	rest := b[len(typeKey):]
	i := bytes.IndexByte(rest, '"')
	if i <= 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return m, false
	}
	m.typ = internType(rest[:i])
	rest = rest[i+1:]
	const seqKey = `,"seq":`
	if bytes.HasPrefix(rest, []byte(seqKey)) {
		n, r, ok := leadingInt(rest[len(seqKey):])
		if !ok {
			return m, false
		}
		m.seq, rest = n, r
	}
	switch m.typ {
	case protocol.TypeChat:
		const textKey = `"text":"` + textPrefix
		if j := bytes.Index(rest, []byte(textKey)); j >= 0 {
			t := rest[j+len(textKey)-len(textPrefix):]
			end := bytes.IndexByte(t, '"')
			if end < 0 {
				return m, false
			}
			var good bool
			if m.step, m.sentUS, good = splitBenchText(string(t[:end])); !good {
				return m, false
			}
		}
		const tsKey = `"sendTs":`
		if j := bytes.Index(rest, []byte(tsKey)); j >= 0 {
			n, _, ok := leadingInt(rest[j+len(tsKey):])
			if !ok {
				return m, false
			}
			m.sendTS = n
		}
	case protocol.TypeError:
		const codeKey = `"code":"`
		if j := bytes.Index(rest, []byte(codeKey)); j >= 0 {
			c := rest[j+len(codeKey):]
			if end := bytes.IndexByte(c, '"'); end >= 0 {
				m.code = string(c[:end])
			}
		}
	}
	return m, true
}

// splitBenchText reads "bench s=<step> t=<µs>".
func splitBenchText(s string) (step int, us int64, ok bool) {
	rest, found := strings.CutPrefix(s, textPrefix)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, " t=")
	if !found {
		return 0, 0, false
	}
	st, err1 := strconv.Atoi(a)
	t, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || st <= 0 {
		return 0, 0, false
	}
	return st, t, true
}

// leadingInt parses the non-negative integer b starts with.
func leadingInt(b []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n > (1<<62)/10 {
			return 0, b, false
		}
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 {
		return 0, b, false
	}
	return n, b[i:], true
}

// internType returns the type as one of the protocol's constants, so that
// the hot path does not allocate a string per message.
func internType(b []byte) string {
	switch string(b) { // no allocation: the compiler compares in place
	case protocol.TypeChat:
		return protocol.TypeChat
	case protocol.TypeAck:
		return protocol.TypeAck
	case protocol.TypeWelcome:
		return protocol.TypeWelcome
	case protocol.TypeCount:
		return protocol.TypeCount
	case protocol.TypeJoin:
		return protocol.TypeJoin
	case protocol.TypeLeave:
		return protocol.TypeLeave
	case protocol.TypeError:
		return protocol.TypeError
	case protocol.TypeSystem:
		return protocol.TypeSystem
	case protocol.TypePong:
		return protocol.TypePong
	}
	return string(b)
}

// clientChat returns the wire bytes of a chat message from the producer.
func clientChat(step int, n int64, us int64) ([]byte, error) {
	return protocol.ClientMsg{
		Type:     protocol.TypeChat,
		Text:     benchText(step, us),
		ClientID: strconv.FormatInt(n, 36),
		SendTS:   us / 1000,
	}.MarshalJSON()
}
