package lb

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

func TestScore(t *testing.T) {
	host := func(rooms, maxRooms, conns, maxConns int, cpu float64) chatfleet.Host {
		return chatfleet.Host{
			Capacity: chatfleet.Capacity{MaxRooms: maxRooms, MaxConns: maxConns},
			Load:     chatfleet.Load{Rooms: rooms, Conns: conns, CPU: cpu},
		}
	}
	tests := []struct {
		name    string
		host    chatfleet.Host
		pending int
		want    float64
	}{
		{"idle", host(0, 10, 0, 1000, 0), 0, 0},
		{"rooms dominate", host(5, 10, 100, 1000, 0), 0, 0.5},
		{"conns dominate", host(1, 10, 800, 1000, 0), 0, 0.8},
		{"pending rooms count", host(2, 10, 0, 1000, 0), 3, 0.5},
		{"cpu adds its weight per core", host(5, 10, 0, 1000, 2), 0, 0.5 + 2*CPUWeight},
		{"over capacity", host(12, 10, 0, 1000, 0), 0, 1.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Score(tt.host, tt.pending); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Score = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFull(t *testing.T) {
	tests := []struct {
		name                 string
		rooms, conns, pendng int
		want                 bool
	}{
		{"room left", 9, 0, 0, false},
		{"rooms at capacity", 10, 0, 0, true},
		{"pending fills it", 8, 0, 2, true},
		{"conns at capacity", 0, 100, 0, true},
		{"conns below", 0, 99, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := chatfleet.Host{Capacity: chatfleet.Capacity{MaxRooms: 10, MaxConns: 100}, Load: chatfleet.Load{Rooms: tt.rooms, Conns: tt.conns}}
			if got := Full(h, tt.pendng); got != tt.want {
				t.Errorf("Full = %v, want %v", got, tt.want)
			}
		})
	}
}

func newTestRegistry(t *testing.T) (*registry, *testutil.Clock) {
	t.Helper()
	c := testutil.NewClock(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
	r := &registry{
		downAfter:   15 * time.Second,
		forgetAfter: time.Minute,
		now:         c.Now,
		intn:        rand.New(rand.NewPCG(1, 2)).IntN,
		log:         slog.New(slog.DiscardHandler),
		hosts:       map[string]*entry{},
	}
	return r, c
}

func testHost(id string) chatfleet.Host {
	return chatfleet.Host{
		ID: id, APIURL: "http://10.0.0.1:8080", RoomHost: id + ".example.com",
		PortMin: 34000, PortMax: 34999, Region: "eu-west-1", Zone: "eu-west-1a", Version: "1.0.0",
		Capacity: chatfleet.Capacity{MaxRooms: 100, MaxConns: 10000},
		State:    chatfleet.HostAccepting,
	}
}

// picks runs n picks and counts them by host id.
func picks(t *testing.T, r *registry, n int, req chatfleet.PickRequest) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		h, err := r.pick(req)
		if err != nil {
			t.Fatalf("pick: %v", err)
		}
		got[h.ID]++
	}
	return got
}

func TestRegistry(t *testing.T) {
	t.Run("first heartbeat registers, next ones update", func(t *testing.T) {
		r, c := newTestRegistry(t)
		if _, created := r.heartbeat(testHost("a")); !created {
			t.Error("first heartbeat: created = false")
		}
		c.Add(time.Second)
		h, created := r.heartbeat(testHost("a"))
		if created {
			t.Error("second heartbeat: created = true")
		}
		if !h.LastSeen.Equal(c.Now()) {
			t.Errorf("LastSeen = %v, want %v", h.LastSeen, c.Now())
		}
	})

	t.Run("down after the window, back with a heartbeat, forgotten later", func(t *testing.T) {
		r, c := newTestRegistry(t)
		r.heartbeat(testHost("a"))
		c.Add(14 * time.Second)
		if h, _ := r.host("a"); h.State != chatfleet.HostAccepting {
			t.Fatalf("after 14s: state %q, want accepting", h.State)
		}
		c.Add(time.Second)
		if h, _ := r.host("a"); h.State != chatfleet.HostDown {
			t.Fatalf("after 15s: state %q, want down", h.State)
		}
		if _, err := r.pick(chatfleet.PickRequest{}); chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Fatalf("pick with the only host down: err %v, want unavailable", err)
		}
		r.heartbeat(testHost("a"))
		if h, _ := r.host("a"); h.State != chatfleet.HostAccepting {
			t.Fatalf("after a new heartbeat: state %q, want accepting", h.State)
		}
		c.Add(15*time.Second + time.Minute)
		if _, ok := r.host("a"); ok {
			t.Fatal("host still listed after the down window and forgetAfter")
		}
	})

	t.Run("never picks down, draining, full or excluded hosts", func(t *testing.T) {
		r, c := newTestRegistry(t)
		r.heartbeat(testHost("down"))
		c.Add(20 * time.Second)
		draining := testHost("draining")
		draining.State = chatfleet.HostDraining
		r.heartbeat(draining)
		full := testHost("full")
		full.Load.Rooms = full.Capacity.MaxRooms
		r.heartbeat(full)
		fullConns := testHost("fullconns")
		fullConns.Load.Conns = fullConns.Capacity.MaxConns
		r.heartbeat(fullConns)
		r.heartbeat(testHost("excluded"))
		r.heartbeat(testHost("ok"))

		got := picks(t, r, 50, chatfleet.PickRequest{Exclude: []string{"excluded"}})
		if got["ok"] != 50 {
			t.Errorf("picks = %v, want all 50 on ok", got)
		}
		_, err := r.pick(chatfleet.PickRequest{Exclude: []string{"excluded", "ok"}})
		if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Fatalf("err = %v, want unavailable", err)
		}
		want := "(6 known: 1 down, 1 draining, 2 full, 2 excluded)"
		if !strings.Contains(chatfleet.ErrorMessage(err), want) {
			t.Errorf("message %q does not contain %q", chatfleet.ErrorMessage(err), want)
		}
	})

	t.Run("pending rooms spread picks and fill a host", func(t *testing.T) {
		r, _ := newTestRegistry(t)
		for _, id := range []string{"a", "b", "c"} {
			h := testHost(id)
			h.Capacity.MaxRooms = 40
			r.heartbeat(h)
		}
		got := picks(t, r, 90, chatfleet.PickRequest{})
		for id, n := range got {
			if n < 28 || n > 32 {
				t.Errorf("host %s got %d of 90 picks, want 28..32 (all %v)", id, n, got)
			}
		}
		// 120 rooms of capacity, 90 pending: 30 more fit, then none.
		picks(t, r, 30, chatfleet.PickRequest{})
		if _, err := r.pick(chatfleet.PickRequest{}); chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Fatalf("pick past capacity: err %v, want unavailable", err)
		}
	})

	t.Run("a heartbeat with more rooms retires pending picks", func(t *testing.T) {
		r, _ := newTestRegistry(t)
		h := testHost("a")
		r.heartbeat(h)
		picks(t, r, 5, chatfleet.PickRequest{})
		h.Load.Rooms = 3
		r.heartbeat(h)
		if n := len(r.hosts["a"].pending); n != 2 {
			t.Errorf("pending = %d, want 2 (5 picked, 3 reported)", n)
		}
		h.Load.Rooms = 1 // rooms closed: nothing retires
		r.heartbeat(h)
		if n := len(r.hosts["a"].pending); n != 2 {
			t.Errorf("pending = %d, want 2", n)
		}
	})

	t.Run("pending picks expire after the down window", func(t *testing.T) {
		r, c := newTestRegistry(t)
		h := testHost("a")
		r.heartbeat(h)
		picks(t, r, 5, chatfleet.PickRequest{})
		c.Add(15 * time.Second)
		r.heartbeat(h)
		if n := len(r.hosts["a"].pending); n != 0 {
			t.Errorf("pending = %d, want 0", n)
		}
	})

	t.Run("prefers the region, falls back to any", func(t *testing.T) {
		r, _ := newTestRegistry(t)
		for id, region := range map[string]string{"eu1": "eu-west-1", "eu2": "eu-west-1", "us1": "us-east-1"} {
			h := testHost(id)
			h.Region = region
			r.heartbeat(h)
		}
		got := picks(t, r, 30, chatfleet.PickRequest{Region: "ap-south-1"})
		if len(got) != 3 {
			t.Errorf("picks in an unknown region = %v, want all three hosts", got)
		}
		got = picks(t, r, 30, chatfleet.PickRequest{Region: "us-east-1"})
		if got["us1"] != 30 {
			t.Errorf("picks in us-east-1 = %v, want all on us1", got)
		}
		got = picks(t, r, 30, chatfleet.PickRequest{Region: "us-east-1", Exclude: []string{"us1"}})
		if got["eu1"]+got["eu2"] != 30 {
			t.Errorf("picks with us1 excluded = %v, want all in eu-west-1", got)
		}
	})

	t.Run("prefers the emptier host", func(t *testing.T) {
		r, _ := newTestRegistry(t)
		busy := testHost("busy")
		busy.Load.Rooms = 90
		r.heartbeat(busy)
		r.heartbeat(testHost("idle"))
		got := picks(t, r, 80, chatfleet.PickRequest{})
		if got["busy"] != 0 {
			t.Errorf("picks = %v, want none on busy until idle reaches its load", got)
		}
	})

	t.Run("concurrent picks", func(t *testing.T) {
		r, _ := newTestRegistry(t)
		r.intn = rand.IntN // the seeded source is not safe for concurrent use
		for i := range 3 {
			r.heartbeat(testHost(fmt.Sprint("h", i)))
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 30 {
					if _, err := r.pick(chatfleet.PickRequest{}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		var total int
		for _, e := range r.hosts {
			total += len(e.pending)
		}
		if total != 240 {
			t.Errorf("pending = %d, want 240", total)
		}
	})
}
