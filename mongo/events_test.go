package mongo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
)

func events(room string, from, to int64, at time.Time) []chatfleet.Event {
	var evs []chatfleet.Event
	for seq := from; seq <= to; seq++ {
		evs = append(evs, chatfleet.Event{Room: room, Seq: seq, Type: "chat", At: at,
			Data: []byte(fmt.Sprintf(`{"seq":%d}`, seq))})
	}
	return evs
}

func seqs(evs []chatfleet.Event) []int64 {
	var s []int64
	for _, ev := range evs {
		s = append(s, ev.Seq)
	}
	return s
}

func TestEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	s := newStore(t, c)
	t0 := c.Now()

	must(t, s.AppendEvents(ctx, events("lobby", 1, 5, t0)))
	// A retried batch overlapping the stored one, sent out of order.
	retry := events("lobby", 3, 8, t0.Add(time.Minute))
	retry[0], retry[5] = retry[5], retry[0]
	retry[1].Type = "changed"
	must(t, s.AppendEvents(ctx, retry))
	must(t, s.AppendEvents(ctx, retry))
	must(t, s.AppendEvents(ctx, events("other", 1, 3, t0)))
	must(t, s.AppendEvents(ctx, nil))

	all, err := s.Events(ctx, "lobby", 0, 0)
	must(t, err)
	if fmt.Sprint(seqs(all)) != "[1 2 3 4 5 6 7 8]" {
		t.Fatalf("events %v, want 1 to 8 once each", seqs(all))
	}
	if all[3].Type != "chat" || !all[3].At.Equal(t0) || string(all[3].Data) != `{"seq":4}` || all[3].Room != "lobby" {
		t.Fatalf("event 4 %+v: the retry must not overwrite the stored event", all[3])
	}

	for _, tc := range []struct {
		after int64
		limit int
		want  string
	}{
		{2, 3, "[3 4 5]"},
		{6, 10, "[7 8]"},
		{8, 10, "[]"},
		{0, -1, "[1 2 3 4 5 6 7 8]"},
	} {
		evs, err := s.Events(ctx, "lobby", tc.after, tc.limit)
		must(t, err)
		if got := fmt.Sprint(seqs(evs)); got != tc.want && !(tc.want == "[]" && len(evs) == 0) {
			t.Fatalf("Events after %d limit %d: %s, want %s", tc.after, tc.limit, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n    int
		want string
	}{{3, "[6 7 8]"}, {100, "[1 2 3 4 5 6 7 8]"}, {0, "[]"}} {
		evs, err := s.LastEvents(ctx, "lobby", tc.n)
		must(t, err)
		if got := fmt.Sprint(seqs(evs)); got != tc.want && !(tc.want == "[]" && len(evs) == 0) {
			t.Fatalf("LastEvents %d: %s, want %s", tc.n, got, tc.want)
		}
	}
	other, err := s.LastEvents(ctx, "other", 10)
	must(t, err)
	if fmt.Sprint(seqs(other)) != "[1 2 3]" {
		t.Fatalf("other room: %v", seqs(other))
	}

	// Trim what is older than a minute after t0: lobby 1-5 and other 1-3.
	n, err := s.TrimEvents(ctx, t0.Add(30*time.Second))
	must(t, err)
	if n != 8 {
		t.Fatalf("trimmed %d events, want 8", n)
	}
	all, err = s.Events(ctx, "lobby", 0, 0)
	must(t, err)
	if fmt.Sprint(seqs(all)) != "[6 7 8]" {
		t.Fatalf("after trimming: %v", seqs(all))
	}

	wantCode(t, s.AppendEvents(ctx, []chatfleet.Event{{Seq: 1}}), chatfleet.EINVALID)
	// Events without a time get the store's clock.
	must(t, s.AppendEvents(ctx, []chatfleet.Event{{Room: "clock", Seq: 1, Type: "join"}}))
	evs, err := s.LastEvents(ctx, "clock", 1)
	must(t, err)
	if len(evs) != 1 || !evs[0].At.Equal(c.Now()) || evs[0].Data != nil {
		t.Fatalf("event without time: %+v, want at %v", evs, c.Now())
	}
}
