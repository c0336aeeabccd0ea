package master

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devnats"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/fleet/internal/bus"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// hostClient is the host API's client for m.
func hostClient(m *Master) *hostapi.Client {
	return &hostapi.Client{API: "http://" + m.cfg.APIListener.Addr().String(), Key: "k",
		Admin: "http://" + m.cfg.AdminListener.Addr().String() + "/", AdminKey: "a"}
}

// startNATS runs an embedded NATS server for the test.
func startNATS(t *testing.T) bus.Config {
	t.Helper()
	ns, err := devnats.Start(devnats.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	cfg, err := bus.ConfigFromEnv(func(k string) string {
		if k == "NATS_URL" {
			return ns.URL()
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRolesNeedNATS: a host without NATS_URL refuses to create an origin or
// an edge (400 EINVALID, saying why), and every host refuses an unknown role.
func TestRolesNeedNATS(t *testing.T) {
	m, _ := fakeRooms(t, Config{})
	c := hostClient(m)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, role := range []string{hostapi.RoleOrigin, hostapi.RoleEdge, "relay"} {
		_, err := c.CreateRoom(ctx, "spread", hostapi.RoomOptions{Role: role})
		var he *hostapi.Error
		if !errors.As(err, &he) || he.Status != http.StatusBadRequest || he.Err.Code != chatfleet.EINVALID {
			t.Fatalf("create with role %q: %v, want 400 EINVALID", role, err)
		}
		if role != "relay" && !strings.Contains(he.Err.Message, "no NATS_URL") {
			t.Errorf("create with role %q: %q, want the reason (no NATS_URL)", role, he.Err.Message)
		}
	}
	if _, err := c.CreateRoom(ctx, "plain", hostapi.RoomOptions{}); err != nil {
		t.Fatalf("a plain room on a host without NATS: %v", err)
	}
	cfg := Config{NATS: bus.Config{URL: "nats://127.0.0.1:4222"}}
	if err := (RoomOptions{Role: "Edge"}).validate(&cfg); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
		t.Errorf("role Edge on a NATS host: %v, want EINVALID", err)
	}
}

// TestOriginAndEdge runs the origin of a room on one host and an edge of it
// on another, both with NATS and one store: each process is launched with
// its role and the NATS settings; the listings show the roles; the edge
// resumes from nothing (its history comes from the stream) while the origin
// gets room.opened; only the origin's host writes the room's record, and an
// edge's log, life and end reach neither the record nor the event log.
func TestOriginAndEdge(t *testing.T) {
	nats := startNATS(t)
	st := storetest.NewStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ma, dirA := fakeRooms(t, Config{HostID: "host-a", Store: st, NATS: nats, SyncEvery: 50 * time.Millisecond})
	mb, dirB := fakeRooms(t, Config{HostID: "host-b", Store: st, NATS: nats, SyncEvery: 50 * time.Millisecond})
	a, b := hostClient(ma), hostClient(mb)
	opts := hostapi.RoomOptions{Instance: "I1", OwnerID: "owner", Title: "Spread", WebhookURLs: []string{"https://hooks.example.com/in"}}
	origin := opts
	origin.Role = hostapi.RoleOrigin
	if _, err := a.CreateRoom(ctx, "spread", origin); err != nil {
		t.Fatalf("origin: %v", err)
	}
	edge := opts
	edge.Role = hostapi.RoleEdge
	created, err := b.CreateRoom(ctx, "spread", edge)
	if err != nil {
		t.Fatalf("edge: %v", err)
	}
	if created.WebhookSecret != "" {
		t.Errorf("the edge made a webhook secret: an edge delivers nothing")
	}
	if _, err := b.CreateRoom(ctx, "plain", hostapi.RoomOptions{}); err != nil {
		t.Fatalf("plain room: %v", err)
	}

	// Launched with the role and NATS_URL; resumed from nothing (edge) or
	// from room.opened (origin).
	for _, c := range []struct {
		dir, name, role string
		events          int
	}{{dirA, "spread", hostapi.RoleOrigin, 1}, {dirB, "spread", hostapi.RoleEdge, 0}, {dirB, "plain", "", 1}} {
		testutil.Eventually(t, 5*time.Second, func() error {
			recs := records(t, c.dir, c.name)
			if len(recs) < 2 {
				return fmt.Errorf("%s/%s: %d records", c.dir, c.name, len(recs))
			}
			if recs[0].Type != "launch" || recs[0].Role != c.role || recs[0].NATS != nats.URL {
				t.Fatalf("%s (%s) launched as %+v, want role %q and NATS_URL %s", c.name, c.role, recs[0], c.role, nats.URL)
			}
			if recs[1].Type != "resume" || recs[1].Events != c.events {
				t.Fatalf("%s (%s) resumed with %+v, want %d events", c.name, c.role, recs[1], c.events)
			}
			return nil
		})
	}

	// The listings show each room's role.
	roles := func(c *hostapi.Client) []string {
		list, err := c.Rooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range list {
			out = append(out, r.Name+":"+r.Role)
		}
		slices.Sort(out)
		return out
	}
	if got := roles(a); !slices.Equal(got, []string{"spread:origin"}) {
		t.Errorf("host a lists %v", got)
	}
	if got := roles(b); !slices.Equal(got, []string{"plain:", "spread:edge"}) {
		t.Errorf("host b lists %v", got)
	}

	// The store: the origin's host writes the record, the edge's host only
	// its plain room.
	testutil.Eventually(t, 5*time.Second, func() error {
		p, err := st.Room(ctx, "plain")
		if err != nil {
			return err
		}
		if p.HostID != "host-b" {
			return fmt.Errorf("plain is on %s", p.HostID)
		}
		return nil
	})
	// An edge's log is dropped: once host b has its stats sent after the
	// log, its event writer has nothing of it.
	mb.Global("log spread")
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, r := range mb.Rooms() {
			if r.Name == "spread" && r.Stats.Messages == 1000 {
				return nil
			}
		}
		return errors.New("the edge's stats after its log did not come")
	})
	mb.events.flush(ctx)
	testutil.Eventually(t, 5*time.Second, func() error {
		r, err := st.Room(ctx, "spread")
		if err != nil {
			return err
		}
		if r.HostID != "host-a" || r.Port != ma.Rooms()[0].Port || !r.Status.Open() {
			return fmt.Errorf("spread's record %+v, want host a's open room", r)
		}
		evs, err := st.LastEvents(ctx, "spread", 100)
		if err != nil {
			return err
		}
		if len(evs) != 1 || evs[0].Type != "room.opened" {
			return fmt.Errorf("spread's log %+v, want the origin's room.opened alone", evs)
		}
		return nil
	})

	// The edge ends: the room's record and log do not.
	if err := b.CloseRoom(ctx, "spread", "edge gone"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := roles(b); !slices.Equal(got, []string{"plain:"}) {
			return fmt.Errorf("host b lists %v", got)
		}
		return nil
	})
	for range 2 { // two more syncs of host b
		mb.syncOnce(ctx)
	}
	if r, err := st.Room(ctx, "spread"); err != nil || r.HostID != "host-a" || !r.Status.Open() {
		t.Fatalf("after the edge's end: %+v, %v; want host a's open room", r, err)
	}
	if evs, err := st.LastEvents(ctx, "spread", 100); err != nil || len(evs) != 1 {
		t.Fatalf("after the edge's end the log holds %+v, %v; want room.opened alone", evs, err)
	}

	// The origin ends: the room does.
	if err := a.CloseRoom(ctx, "spread", "over"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		r, err := st.Room(ctx, "spread")
		if err != nil {
			return err
		}
		if r.Status.Open() {
			return fmt.Errorf("spread is %s", r.Status)
		}
		return nil
	})
}
