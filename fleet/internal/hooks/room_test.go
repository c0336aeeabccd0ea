package hooks

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/webhook"
)

// TestTargets: the host's URLs get every room's events; a room's own URLs
// get its events only with its own secret; a URL given twice gets them
// once.
func TestTargets(t *testing.T) {
	d := New(Config{URLs: []string{"https://host.example.com/in"}, Secret: hookSecret})
	defer d.Stop(time.Second)
	tests := []struct {
		name string
		room Room
		want int
	}{
		{"host URLs only", Room{Name: "a"}, 1},
		{"own URL", Room{Name: "a", URLs: []string{"https://own.example.com/in"}, Secret: "room-secret-0123456789"}, 2},
		{"own URL twice", Room{Name: "a", URLs: []string{"https://own.example.com/in", "https://own.example.com/in"}, Secret: "room-secret-0123456789"}, 2},
		{"own URL without a secret", Room{Name: "a", URLs: []string{"https://own.example.com/in"}}, 1},
	}
	for _, tt := range tests {
		if got := len(d.targets(tt.room)); got != tt.want {
			t.Errorf("%s: %d targets, want %d", tt.name, got, tt.want)
		}
	}
	none := New(Config{})
	defer none.Stop(time.Second)
	if none.Enabled(Room{Name: "a"}) || none.Enabled(Room{Name: "a", URLs: []string{"https://own.example.com/in"}}) {
		t.Error("enabled without a secret")
	}
}

// TestDescribeLifecycle: room.opened and room.closed say where the room is
// (the room's Describe); other log events go out as they are, and events
// added ready-made (room.viewers) untouched.
func TestDescribeLifecycle(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newDispatcher(t, Config{URLs: []string{rc.url}, Wait: 10 * time.Millisecond})
	room := Room{Name: "lobby", Describe: func(ev *webhook.Event) { ev.Port = 34000 }}
	evs := chatEvents(1, 3)
	evs[0].Type, evs[2].Type = webhook.TypeRoomOpened, webhook.TypeRoomClosed
	d.AddLog(room, evs)
	n := 7
	d.Add(room, []webhook.Event{{ID: "lobby:viewers:1", Type: webhook.TypeRoomViewers, Room: "lobby", Viewers: &n}})
	var got []webhook.Event
	testutil.Eventually(t, 5*time.Second, func() error {
		got = nil
		for _, a := range rc.got() {
			got = append(got, a.batch.Events...)
		}
		if len(got) < 4 {
			return fmt.Errorf("%d events delivered", len(got))
		}
		return nil
	})
	for i, want := range []int{34000, 0, 34000, 0} {
		if got[i].Port != want {
			t.Errorf("event %d (%s): port %d, want %d", i, got[i].Type, got[i].Port, want)
		}
	}
	if got[3].Viewers == nil || *got[3].Viewers != 7 {
		t.Errorf("room.viewers: %+v", got[3])
	}
}
