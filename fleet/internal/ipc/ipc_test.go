package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
)

func TestRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := NewConn(a), NewConn(b)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	want := []Msg{
		{Type: TypeHello, MasterPID: 42},
		{Type: TypeCache, Cache: &chatfleet.Cache{Version: 3, BlockedWords: []string{"x"}, Bans: []chatfleet.Ban{{ID: "b1", UserID: "u"}}}},
		{Type: TypeDrain, Reason: "upgrade", Deadline: 3 * time.Second},
	}
	go func() {
		for _, m := range want {
			if err := ca.Send(m); err != nil {
				t.Errorf("send: %v", err)
			}
		}
	}()
	for _, w := range want {
		got, err := cb.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if got.Type != w.Type || got.MasterPID != w.MasterPID || got.Deadline != w.Deadline || got.Reason != w.Reason {
			t.Fatalf("got %+v, want %+v", got, w)
		}
		if w.Cache != nil && (got.Cache == nil || got.Cache.Version != 3 || got.Cache.Bans[0].UserID != "u") {
			t.Fatalf("cache not carried: %+v", got.Cache)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	frame := func(body string) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(b, body...)
	}
	huge := binary.BigEndian.AppendUint32(nil, MaxFrame+1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty stream", nil, io.EOF},
		{"truncated header", []byte{0, 0}, ErrFrame},
		{"zero length", []byte{0, 0, 0, 0}, ErrFrame},
		{"oversize", huge, ErrFrame},
		{"truncated body", frame(`{"type":"hello"}`)[:10], ErrFrame},
		{"not json", frame(`nope`), ErrFrame},
		{"no type", frame(`{"room":"x"}`), ErrFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []Msg{{Type: TypeHello, MasterPID: 1}, {Type: TypeStats, Stats: &chatfleet.RoomStats{Conns: 3}}, {Type: TypeEvent, Event: "ban", Ban: &chatfleet.Ban{UserID: "u"}}} {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Decode(bytes.NewReader(in))
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same type.
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := Decode(bytes.NewReader(b))
		if err != nil || m2.Type != m.Type {
			t.Fatalf("round trip: %v %q %q", err, m2.Type, m.Type)
		}
	})
}

// A frame of a snapshot part decodes without encoding/json as it would with
// it; any other bans frame goes through encoding/json.
func TestSnapshotFrames(t *testing.T) {
	var part []byte
	for k := range uint64(1000) {
		part = AppendSnapshotEntry(part, k*7+1, int64(k))
	}
	for _, u := range []*BanUpdate{
		{Snapshot: part},
		{Snapshot: part[:SnapshotEntry]},
		{Reset: true, Snapshot: part},
		{Snapshot: part, Lift: []string{"u"}},
	} {
		frame, err := Encode(Msg{Type: TypeBans, Bans: u})
		if err != nil {
			t.Fatal(err)
		}
		_, fast := decodeSnapshot(frame[4:])
		if want := !u.Reset && u.Lift == nil; fast != want {
			t.Errorf("%+v: fast path %v, want %v (frame %.60s)", u, fast, want, frame[4:])
		}
		m, err := Decode(bytes.NewReader(frame))
		if err != nil || m.Type != TypeBans || !bytes.Equal(m.Bans.Snapshot, u.Snapshot) || m.Bans.Reset != u.Reset || len(m.Bans.Lift) != len(u.Lift) {
			t.Fatalf("decoded %+v %v", m.Bans, err)
		}
	}
	// Not base64: left to encoding/json, which refuses it.
	body := []byte(snapshotPrefix + `AAAA"x` + snapshotSuffix)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := Decode(bytes.NewReader(append(frame, body...))); !errors.Is(err, ErrFrame) {
		t.Fatalf("bad snapshot frame: %v", err)
	}
}

func TestCheckAndSearchSnapshot(t *testing.T) {
	var b []byte
	for k := range uint64(100) {
		b = AppendSnapshotEntry(b, k*2+2, int64(k))
	}
	last, err := CheckSnapshot(b, nil)
	if err != nil || last != 200 {
		t.Fatalf("check: %d %v", last, err)
	}
	for k := range uint64(203) {
		until, ok := SearchSnapshot(b, k)
		if want := k >= 2 && k <= 200 && k%2 == 0; ok != want || ok && until != int64(k/2-1) {
			t.Fatalf("search %d: %d %v", k, until, ok)
		}
	}
	after := uint64(2)
	for _, tc := range []struct {
		b     []byte
		after *uint64
	}{
		{b[:17], nil}, {append(slices.Clone(b[16:32]), b[:16]...), nil}, {b, &after}, {AppendSnapshotEntry(nil, 5, -1), nil},
	} {
		if _, err := CheckSnapshot(tc.b, tc.after); err == nil {
			t.Errorf("%d bytes after %v: no error", len(tc.b), tc.after)
		}
	}
}
