package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
)

// ClientMsg is every message a client sends, flattened: Type says which
// fields are meaningful. Decode fills it strictly; its MarshalJSON writes
// exactly the fields of its type, so Decode(Marshal(m)) gives m back.
type ClientMsg struct {
	Type string

	LastSeq    int64 // hello (optional), resume
	HasLastSeq bool  // hello: whether lastSeq was given; always true for resume

	Text     string // chat
	ClientID string // chat (optional): echoed in the ack or error
	SendTS   int64  // chat (optional): client time in Unix ms, echoed in the broadcast

	Live   bool   // stream
	HLSURL string // stream: when Live, else the room's (given at create) is used

	Page     int // viewers (optional): 0-based
	PageSize int // viewers (optional): 1..MaxPageSize, 0 means the room's default

	Seq int64 // delete: the chat message to delete

	UserID  string // mute, unmute, kick, ban
	Seconds int    // mute (optional, 0: until unmuted), slowmode (0: off)
	Reason  string // kick, ban, close (optional)
	Minutes int    // ban (optional, 0: forever)
	Fleet   bool   // ban: refused (forbidden) when true; fleet bans are the operator's, made through the admin API
}

type kind uint8

const (
	kString kind = iota
	kInt
	kBool
)

func (k kind) String() string {
	return [...]string{"a string", "an integer", "a boolean"}[k]
}

// field describes one field of a client message. For kInt, min and max bound
// the value; for kString, max bounds the length in bytes.
type field struct {
	name     string
	kind     kind
	required bool
	min, max int64
}

var specs = map[string][]field{
	TypeHello:    {{name: "lastSeq", kind: kInt, max: 1<<53 - 1}},
	TypeResume:   {{name: "lastSeq", kind: kInt, required: true, max: 1<<53 - 1}},
	TypeChat:     {{name: "text", kind: kString, required: true, max: 64 << 10}, {name: "clientId", kind: kString, max: MaxClientIDLen}, {name: "sendTs", kind: kInt, max: 1<<53 - 1}},
	TypeStream:   {{name: "live", kind: kBool, required: true}, {name: "hlsUrl", kind: kString, max: MaxHLSURLLen}},
	TypeViewers:  {{name: "page", kind: kInt, max: 1 << 20}, {name: "pageSize", kind: kInt, max: MaxPageSize}},
	TypeDelete:   {{name: "seq", kind: kInt, required: true, min: 1, max: 1<<53 - 1}},
	TypeMute:     {{name: "userId", kind: kString, required: true, max: MaxUserIDLen}, {name: "seconds", kind: kInt, max: MaxMuteSeconds}},
	TypeUnmute:   {{name: "userId", kind: kString, required: true, max: MaxUserIDLen}},
	TypeKick:     {{name: "userId", kind: kString, required: true, max: MaxUserIDLen}, {name: "reason", kind: kString, max: MaxReasonLen}},
	TypeBan:      {{name: "userId", kind: kString, required: true, max: MaxUserIDLen}, {name: "reason", kind: kString, max: MaxReasonLen}, {name: "minutes", kind: kInt, max: MaxBanMinutes}, {name: "fleet", kind: kBool}},
	TypeSlowMode: {{name: "seconds", kind: kInt, required: true, max: MaxSlowMode}},
	TypeClose:    {{name: "reason", kind: kString, max: MaxReasonLen}},
	TypePing:     nil,
}

// ClientTypes returns the client message types, sorted.
func ClientTypes() []string {
	ts := make([]string, 0, len(specs))
	for t := range specs {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

func (m *ClientMsg) strField(name string) *string {
	switch name {
	case "text":
		return &m.Text
	case "clientId":
		return &m.ClientID
	case "hlsUrl":
		return &m.HLSURL
	case "userId":
		return &m.UserID
	case "reason":
		return &m.Reason
	}
	panic("protocol: no string field " + name)
}

func (m *ClientMsg) boolField(name string) *bool {
	switch name {
	case "live":
		return &m.Live
	case "fleet":
		return &m.Fleet
	}
	panic("protocol: no bool field " + name)
}

func (m *ClientMsg) setInt(name string, v int64) {
	switch name {
	case "lastSeq":
		m.LastSeq, m.HasLastSeq = v, true
	case "sendTs":
		m.SendTS = v
	case "page":
		m.Page = int(v)
	case "pageSize":
		m.PageSize = int(v)
	case "seq":
		m.Seq = v
	case "seconds":
		m.Seconds = int(v)
	case "minutes":
		m.Minutes = int(v)
	default:
		panic("protocol: no int field " + name)
	}
}

func (m *ClientMsg) getInt(name string) (v int64, set bool) {
	switch name {
	case "lastSeq":
		return m.LastSeq, m.HasLastSeq || m.LastSeq != 0
	case "sendTs":
		return m.SendTS, m.SendTS != 0
	case "page":
		return int64(m.Page), m.Page != 0
	case "pageSize":
		return int64(m.PageSize), m.PageSize != 0
	case "seq":
		return m.Seq, m.Seq != 0
	case "seconds":
		return int64(m.Seconds), m.Seconds != 0
	case "minutes":
		return int64(m.Minutes), m.Minutes != 0
	}
	panic("protocol: no int field " + name)
}

func decodeErr(code, format string, args ...any) error {
	return chatfleet.Errorf(code, format, args...)
}

// Decode parses one client message strictly. It refuses, with a
// *chatfleet.Error carrying the code: invalid UTF-8 (CodeInvalidUTF8), anything
// but one JSON object (CodeInvalidJSON), a missing or unknown type
// (CodeMissingField, CodeUnknownType), a missing required field
// (CodeMissingField), and a field that is unknown, null, of the wrong JSON
// type or out of range (CodeInvalidField). Integers must be JSON integers
// (no fraction or exponent). Room rules (message length, roles, URL scheme,
// an hlsUrl for a stream announced live: its own or the room's) are the
// room's to check.
func Decode(b []byte) (ClientMsg, error) {
	var m ClientMsg
	if !utf8.Valid(b) {
		return m, decodeErr(CodeInvalidUTF8, "message is not valid UTF-8")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return m, decodeErr(CodeInvalidJSON, "message must be one JSON object")
	}
	rt, ok := raw["type"]
	if !ok {
		return m, decodeErr(CodeMissingField, "missing field \"type\"")
	}
	if len(rt) == 0 || rt[0] != '"' || json.Unmarshal(rt, &m.Type) != nil {
		return m, decodeErr(CodeInvalidField, "field \"type\" must be a string")
	}
	spec, ok := specs[m.Type]
	if !ok {
		return ClientMsg{}, decodeErr(CodeUnknownType, "unknown message type %q", truncate(m.Type, 32))
	}
	known := 1
	for _, f := range spec {
		v, ok := raw[f.name]
		if !ok {
			if f.required {
				return m, decodeErr(CodeMissingField, "%s: missing field %q", m.Type, f.name)
			}
			continue
		}
		known++
		if err := m.decodeField(f, v); err != nil {
			return m, err
		}
	}
	if known != len(raw) {
		var unknown []string
		for k := range raw {
			if k != "type" && !slices.ContainsFunc(spec, func(f field) bool { return f.name == k }) {
				unknown = append(unknown, k)
			}
		}
		slices.Sort(unknown)
		return m, decodeErr(CodeInvalidField, "%s: unknown field %q", m.Type, truncate(unknown[0], 32))
	}
	return m, nil
}

func (m *ClientMsg) decodeField(f field, v json.RawMessage) error {
	bad := func() error {
		return decodeErr(CodeInvalidField, "%s: field %q must be %s", m.Type, f.name, f.kind)
	}
	if len(v) == 0 {
		return bad()
	}
	switch f.kind {
	case kString:
		p := m.strField(f.name)
		if v[0] != '"' || json.Unmarshal(v, p) != nil {
			return bad()
		}
		if int64(len(*p)) > f.max {
			return decodeErr(CodeInvalidField, "%s: field %q is longer than %d bytes", m.Type, f.name, f.max)
		}
	case kInt:
		// Only a plain JSON integer: no fraction, no exponent, no leading '+'.
		if bytes.ContainsAny(v, ".eE") || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
			return bad()
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return decodeErr(CodeInvalidField, "%s: field %q is out of range", m.Type, f.name)
		}
		if n < f.min || n > f.max {
			return decodeErr(CodeInvalidField, "%s: field %q must be between %d and %d", m.Type, f.name, f.min, f.max)
		}
		m.setInt(f.name, n)
	case kBool:
		p := m.boolField(f.name)
		if (v[0] != 't' && v[0] != 'f') || json.Unmarshal(v, p) != nil {
			return bad()
		}
	}
	return nil
}

// MarshalJSON writes m with exactly the fields of its type: required ones
// always, optional ones when not zero. It fails for an unknown type.
func (m ClientMsg) MarshalJSON() ([]byte, error) {
	spec, ok := specs[m.Type]
	if !ok {
		return nil, fmt.Errorf("protocol: unknown client message type %q", m.Type)
	}
	b := append(make([]byte, 0, 64), `{"type":`...)
	b = strconv.AppendQuote(b, m.Type) // types are ASCII identifiers
	for _, f := range spec {
		switch f.kind {
		case kString:
			s := *m.strField(f.name)
			if s == "" && !f.required {
				continue
			}
			b = appendKey(b, f.name)
			js, _ := json.Marshal(s)
			b = append(b, js...)
		case kInt:
			n, set := m.getInt(f.name)
			if !set && !f.required {
				continue
			}
			b = appendKey(b, f.name)
			b = strconv.AppendInt(b, n, 10)
		case kBool:
			v := *m.boolField(f.name)
			if !v && !f.required {
				continue
			}
			b = appendKey(b, f.name)
			b = strconv.AppendBool(b, v)
		}
	}
	return append(b, '}'), nil
}

func appendKey(b []byte, name string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// truncate shortens s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Truncate shortens s to at most n bytes without splitting a UTF-8 sequence;
// close reasons, for one, must fit in 123 bytes.
func Truncate(s string, n int) string { return truncate(s, n) }
