package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/webhook"
)

// seqs returns the seqs of the events rc got, in the order it got them.
func (rc *receiver) seqs() []int64 {
	var s []int64
	for _, a := range rc.got() {
		for _, ev := range a.batch.Events {
			s = append(s, ev.Seq)
		}
	}
	return s
}

// seqRange returns from, from+1, ..., to.
func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestCursorFile: once a batch is delivered, the room's cursor file says
// how far each URL got, the host's under "done" and the room's own under
// "own", in the format masters of other releases read; readable by this
// user only. A room that is gone gets no file.
func TestCursorFile(t *testing.T) {
	host, own := newReceiver(t, nil), newReceiver(t, nil)
	path := filepath.Join(t.TempDir(), "34000.hooks")
	d := newDispatcher(t, Config{URLs: []string{host.url}, AllowPrivate: true, Wait: 10 * time.Millisecond,
		CursorFile: func(string) string { return path }})
	room := Room{Name: "lobby", URLs: []string{own.url}, Secret: hookSecret}
	d.AddLog(room, chatEvents(1, 3))
	want := fmt.Sprintf(`{"room":"lobby","done":{%q:3},"own":{%q:3}}`, host.url, own.url)
	testutil.Eventually(t, 5*time.Second, func() error {
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			return fmt.Errorf("cursor file %q (%v), want %s", b, err, want)
		}
		return nil
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cursor file mode: %v, %v; want 0600", fi.Mode(), err)
	}

	// Once the master has forgotten the room (CursorFile says ""), its
	// file is not written again.
	d.Stop(time.Second)
	os.Remove(path)
	d2 := newDispatcher(t, Config{URLs: []string{host.url}, Wait: 10 * time.Millisecond, CursorFile: func(string) string { return "" }})
	d2.AddLog(lobby, chatEvents(4, 1))
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := counterValue(t, d2.cfg.Metrics.Deliveries); got != 1 {
			return fmt.Errorf("deliveries %v, want 1", got)
		}
		return nil
	})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a cursor file was written for a room that is gone: %v", err)
	}
}

// TestReplay: a dispatcher that adopts a room queues again, from the
// store, the events after the point each URL reached by the room's cursor
// file, as this release and the one before (no "own": every URL in
// "done") write it; lifecycle events are described again. Without a
// usable cursor file, nothing is replayed.
func TestReplay(t *testing.T) {
	st := storetest.NewStore(t)
	evs := chatEvents(1, 10)
	evs[0].Type = webhook.TypeRoomOpened
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name              string
		file              string // %[1]q: the host's URL, %[2]q: the room's own
		wantHost, wantOwn []int64
	}{
		{"this release", `{"room":"lobby","done":{%[1]q:4},"own":{%[2]q:7}}`, seqRange(5, 10), seqRange(8, 10)},
		{"before own secrets", `{"room":"lobby","done":{%[1]q:0,%[2]q:6}}`, seqRange(1, 10), seqRange(7, 10)},
		{"another room's file", `{"room":"hall","done":{%[1]q:4,%[2]q:7}}`, nil, nil},
		{"not JSON", `{"room":`, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, own := newReceiver(t, nil), newReceiver(t, nil)
			path := filepath.Join(t.TempDir(), "34000.hooks")
			if err := os.WriteFile(path, []byte(fmt.Sprintf(tt.file, host.url, own.url)), 0o600); err != nil {
				t.Fatal(err)
			}
			d := newDispatcher(t, Config{URLs: []string{host.url}, AllowPrivate: true, Wait: 10 * time.Millisecond,
				Store: st, CursorFile: func(string) string { return path }})
			room := Room{Name: "lobby", URLs: []string{own.url}, Secret: hookSecret,
				Describe: func(ev *webhook.Event) { ev.Port = 34000 }}
			d.Replay(room)
			d.RoomDone("lobby")
			d.Stop(5 * time.Second) // delivers what Replay queued
			if got := host.seqs(); !slices.Equal(got, tt.wantHost) {
				t.Errorf("host URL got %v, want %v", got, tt.wantHost)
			}
			if got := own.seqs(); !slices.Equal(got, tt.wantOwn) {
				t.Errorf("room's URL got %v, want %v", got, tt.wantOwn)
			}
			for _, a := range append(host.got(), own.got()...) {
				for _, ev := range a.batch.Events {
					if (ev.Port == 34000) != (ev.Type == webhook.TypeRoomOpened) || ev.ID != fmt.Sprintf("lobby:%d", ev.Seq) {
						t.Errorf("replayed event %+v: want an id, and room.opened alone described", ev)
					}
				}
			}
		})
	}
}
