package protocol_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want protocol.ClientMsg
		code string // "" when the message is valid
	}{
		{"hello", `{"type":"hello"}`, protocol.ClientMsg{Type: "hello"}, ""},
		{"hello lastSeq", `{"type":"hello","lastSeq":7}`, protocol.ClientMsg{Type: "hello", LastSeq: 7, HasLastSeq: true}, ""},
		{"hello lastSeq zero", `{"type":"hello","lastSeq":0}`, protocol.ClientMsg{Type: "hello", HasLastSeq: true}, ""},
		{"resume", `{"type":"resume","lastSeq":12}`, protocol.ClientMsg{Type: "resume", LastSeq: 12, HasLastSeq: true}, ""},
		{"chat", `{"type":"chat","text":"hi","clientId":"c1","sendTs":1700000000000}`, protocol.ClientMsg{Type: "chat", Text: "hi", ClientID: "c1", SendTS: 1700000000000}, ""},
		{"chat whitespace", " \n{\"type\" : \"chat\", \"text\":\"a\\nb\"}\t", protocol.ClientMsg{Type: "chat", Text: "a\nb"}, ""},
		{"stream live", `{"type":"stream","live":true,"hlsUrl":"https://x/y.m3u8"}`, protocol.ClientMsg{Type: "stream", Live: true, HLSURL: "https://x/y.m3u8"}, ""},
		{"stream offline", `{"type":"stream","live":false}`, protocol.ClientMsg{Type: "stream"}, ""},
		{"viewers", `{"type":"viewers","page":1,"pageSize":20}`, protocol.ClientMsg{Type: "viewers", Page: 1, PageSize: 20}, ""},
		{"viewers defaults", `{"type":"viewers"}`, protocol.ClientMsg{Type: "viewers"}, ""},
		{"delete", `{"type":"delete","seq":3}`, protocol.ClientMsg{Type: "delete", Seq: 3}, ""},
		{"mute", `{"type":"mute","userId":"u1","seconds":60}`, protocol.ClientMsg{Type: "mute", UserID: "u1", Seconds: 60}, ""},
		{"unmute", `{"type":"unmute","userId":"u1"}`, protocol.ClientMsg{Type: "unmute", UserID: "u1"}, ""},
		{"kick", `{"type":"kick","userId":"u1","reason":"spam"}`, protocol.ClientMsg{Type: "kick", UserID: "u1", Reason: "spam"}, ""},
		{"ban", `{"type":"ban","userId":"u1","reason":"r","minutes":5,"fleet":true}`, protocol.ClientMsg{Type: "ban", UserID: "u1", Reason: "r", Minutes: 5, Fleet: true}, ""},
		{"slowmode", `{"type":"slowmode","seconds":0}`, protocol.ClientMsg{Type: "slowmode"}, ""},
		{"close", `{"type":"close"}`, protocol.ClientMsg{Type: "close"}, ""},
		{"ping", `{"type":"ping"}`, protocol.ClientMsg{Type: "ping"}, ""},

		{"invalid utf8", "{\"type\":\"chat\",\"text\":\"\xff\"}", protocol.ClientMsg{}, protocol.CodeInvalidUTF8},
		{"truncated", `{"type":"chat"`, protocol.ClientMsg{}, protocol.CodeInvalidJSON},
		{"empty", ``, protocol.ClientMsg{}, protocol.CodeInvalidJSON},
		{"null", `null`, protocol.ClientMsg{}, protocol.CodeInvalidJSON},
		{"array", `[]`, protocol.ClientMsg{}, protocol.CodeInvalidJSON},
		{"string", `"chat"`, protocol.ClientMsg{}, protocol.CodeInvalidJSON},
		{"trailing", `{"type":"ping"} {}`, protocol.ClientMsg{}, protocol.CodeInvalidJSON},
		{"no type", `{"text":"hi"}`, protocol.ClientMsg{}, protocol.CodeMissingField},
		{"type not string", `{"type":5}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"unknown type", `{"type":"dance"}`, protocol.ClientMsg{}, protocol.CodeUnknownType},
		{"server type", `{"type":"welcome"}`, protocol.ClientMsg{}, protocol.CodeUnknownType},
		{"missing text", `{"type":"chat"}`, protocol.ClientMsg{}, protocol.CodeMissingField},
		{"missing lastSeq", `{"type":"resume"}`, protocol.ClientMsg{}, protocol.CodeMissingField},
		{"missing userId", `{"type":"kick","reason":"x"}`, protocol.ClientMsg{}, protocol.CodeMissingField},
		{"live without url (the room's own is used)", `{"type":"stream","live":true}`, protocol.ClientMsg{Type: "stream", Live: true}, ""},
		{"text null", `{"type":"chat","text":null}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"text number", `{"type":"chat","text":5}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"seq string", `{"type":"delete","seq":"3"}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"seq fraction", `{"type":"delete","seq":3.0}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"seq exponent", `{"type":"delete","seq":3e0}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"seq zero", `{"type":"delete","seq":0}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"seq huge", `{"type":"delete","seq":123456789012345678901234567890}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"negative lastSeq", `{"type":"resume","lastSeq":-1}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"live string", `{"type":"stream","live":"true","hlsUrl":"https://x"}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"slowmode too long", `{"type":"slowmode","seconds":3601}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"page size too big", `{"type":"viewers","pageSize":1000}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"unknown field", `{"type":"ping","x":1}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"field of another type", `{"type":"chat","text":"a","seq":1}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"long userId", `{"type":"kick","userId":"` + strings.Repeat("u", 129) + `"}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
		{"long clientId", `{"type":"chat","text":"a","clientId":"` + strings.Repeat("c", 65) + `"}`, protocol.ClientMsg{}, protocol.CodeInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.Decode([]byte(tt.in))
			if tt.code != "" {
				if code := chatfleet.ErrorCode(err); code != tt.code {
					t.Fatalf("Decode(%q) error %v (code %q), want code %q", tt.in, err, code, tt.code)
				}
				if chatfleet.ErrorMessage(err) == "" {
					t.Error("error without a message")
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Decode(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// Encoding gives the same message back.
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			again, err := protocol.Decode(b)
			if err != nil || again != got {
				t.Fatalf("round trip of %s: %+v, %v", b, again, err)
			}
		})
	}
}

func TestClientMsgMarshal(t *testing.T) {
	b, err := json.Marshal(protocol.ClientMsg{Type: protocol.TypeStream})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"type":"stream","live":false}` {
		t.Errorf("stream offline = %s: a required false must be written", b)
	}
	b, _ = json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: `say "hi" <b>`})
	if m, err := protocol.Decode(b); err != nil || m.Text != `say "hi" <b>` {
		t.Errorf("chat with quotes: %s -> %+v, %v", b, m, err)
	}
	if _, err := json.Marshal(protocol.ClientMsg{Type: "dance"}); err == nil {
		t.Error("unknown type marshalled")
	}
	if got := len(protocol.ClientTypes()); got != 13 {
		t.Errorf("%d client types, want 13", got)
	}
}

func TestServerMsg(t *testing.T) {
	m := protocol.ServerMsg{Type: protocol.TypeChat, Seq: 3, TS: 1000,
		From: &protocol.User{UserID: "u1", Name: "Ann", Role: chatfleet.RoleViewer}, Text: "a\nb"}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsRune(string(b), '\n') {
		t.Fatalf("encoded message holds a raw newline: %s", b)
	}
	want := `{"type":"chat","seq":3,"ts":1000,"from":{"userId":"u1","name":"Ann","role":"viewer"},"text":"a\nb"}`
	if string(b) != want {
		t.Fatalf("Marshal = %s\nwant      %s", b, want)
	}
	got, err := protocol.DecodeServer(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("DecodeServer = %+v, %v", got, err)
	}
	if _, err := protocol.DecodeServer([]byte(`{"seq":1}`)); chatfleet.ErrorCode(err) != protocol.CodeMissingField {
		t.Errorf("message without type: %v", err)
	}
}

func TestSplit(t *testing.T) {
	var got []string
	protocol.Split([]byte("{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}"), func(m []byte) { got = append(got, string(m)) })
	want := []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Split = %q, want %q", got, want)
	}
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"}, // é is two bytes: not split
		{"日本", 4, "日"},
	} {
		if got := protocol.Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

var codes = map[string]bool{
	protocol.CodeInvalidJSON: true, protocol.CodeInvalidUTF8: true, protocol.CodeUnknownType: true,
	protocol.CodeMissingField: true, protocol.CodeInvalidField: true,
}

// FuzzDecode checks that Decode never panics, refuses with one of its codes,
// and that what it accepts encodes back to the same message.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"chat","text":"hi"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := protocol.Decode(b)
		if err != nil {
			if code := chatfleet.ErrorCode(err); !codes[code] {
				t.Fatalf("Decode(%q): error code %q (%v)", b, code, err)
			}
			return
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", m, err)
		}
		again, err := protocol.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Marshal(%+v)) = %s: %v", m, enc, err)
		}
		if again != m {
			t.Fatalf("round trip: %+v -> %s -> %+v", m, enc, again)
		}
	})
}

func BenchmarkServerMsgMarshal(b *testing.B) {
	m := protocol.ServerMsg{Type: protocol.TypeChat, Seq: 123456, TS: 1700000000000,
		From: &protocol.User{UserID: "user-42", Name: "Ann", Role: chatfleet.RoleViewer},
		Text: "hello everyone, how is the stream today?", SendTS: 1700000000000}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeChat(b *testing.B) {
	in := []byte(`{"type":"chat","text":"hello everyone, how is the stream today?","clientId":"c-123","sendTs":1700000000000}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}
