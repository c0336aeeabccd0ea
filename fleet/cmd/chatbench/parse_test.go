package main

import (
	"encoding/json"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestParseMsg(t *testing.T) {
	us := int64(1764496000123456)
	chat := protocol.ServerMsg{Type: protocol.TypeChat, Seq: 42, TS: us / 1000,
		From: &protocol.User{UserID: "p", Name: "P", Role: chatfleet.RoleProducer},
		Text: benchText(3, us), SendTS: us / 1000}
	enc := func(m protocol.ServerMsg) []byte {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want parsedMsg
		fast bool // the fast path must take it
	}{
		{"bench chat", enc(chat), parsedMsg{typ: "chat", seq: 42, step: 3, sentUS: us, sendTS: us / 1000}, true},
		{"other chat", enc(protocol.ServerMsg{Type: "chat", Seq: 7, Text: `hi "there"`}), parsedMsg{typ: "chat", seq: 7}, true},
		{"join", enc(protocol.ServerMsg{Type: "join", Seq: 9, UserID: "u", ViewerCount: 3}), parsedMsg{typ: "join", seq: 9}, true},
		{"welcome without seq", enc(protocol.ServerMsg{Type: "welcome", Room: "r"}), parsedMsg{typ: "welcome"}, true},
		{"welcome with history", enc(protocol.ServerMsg{Type: "welcome", Seq: 5, History: []json.RawMessage{enc(chat)}}), parsedMsg{typ: "welcome", seq: 5}, true},
		{"ack", enc(protocol.ServerMsg{Type: "ack", Seq: 43, ClientID: "x"}), parsedMsg{typ: "ack", seq: 43}, true},
		{"error", enc(protocol.ServerMsg{Type: "error", Code: "rate_limited", Message: "slow down"}), parsedMsg{typ: "error", code: "rate_limited"}, true},
		{"count", enc(protocol.ServerMsg{Type: "count", ViewerCount: 10000}), parsedMsg{typ: "count"}, true},
		{"other field order falls back", []byte(`{"seq":12,"type":"chat","text":"bench s=2 t=99","sendTs":1}`), parsedMsg{typ: "chat", seq: 12, step: 2, sentUS: 99, sendTS: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseMsg(tt.in)
			if !ok || got != tt.want {
				t.Errorf("parseMsg(%s) = %+v, %v; want %+v", tt.in, got, ok, tt.want)
			}
			if _, fast := parseFast(tt.in); fast != tt.fast {
				t.Errorf("fast path taken: %v, want %v", fast, tt.fast)
			}
		})
	}
	for _, bad := range []string{``, `[]`, `{"seq":1}`, `not json`} {
		if m, ok := parseMsg([]byte(bad)); ok {
			t.Errorf("parseMsg(%q) = %+v, want not ok", bad, m)
		}
	}
}

func TestClientChatDecodes(t *testing.T) {
	b, err := clientChat(5, 1234, 1764496000123456)
	if err != nil {
		t.Fatal(err)
	}
	m, err := protocol.Decode(b)
	if err != nil {
		t.Fatalf("the room would refuse %s: %v", b, err)
	}
	step, us, ok := splitBenchText(m.Text)
	if !ok || step != 5 || us != 1764496000123456 || m.SendTS != 1764496000123 || m.ClientID == "" {
		t.Errorf("decoded %+v (step %d, µs %d)", m, step, us)
	}
}

func TestSplitBenchText(t *testing.T) {
	for _, s := range []string{"", "bench", "bench s=0 t=5", "bench s=x t=5", "bench s=1 t=", "bench s=1", "hello s=1 t=2"} {
		if _, _, ok := splitBenchText(s); ok {
			t.Errorf("splitBenchText(%q) ok", s)
		}
	}
}
