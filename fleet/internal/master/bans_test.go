package master

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// fakeRoomEnv names the directory where a fake room process records what
// its master sends it.
const fakeRoomEnv = "MASTER_FAKE_ROOM_DIR"

// TestMain lets this test binary be the room processes of a master under
// test: run as `room ... -port P -name N` with fakeRoomEnv set, it is a fake
// room (fakeRoom).
func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeRoomEnv); dir != "" && len(os.Args) > 1 && os.Args[1] == "room" {
		os.Exit(fakeRoom(dir, os.Args[2:]))
	}
	os.Exit(m.Run())
}

// frameRecord is what a fake room records of one frame from its master.
type frameRecord struct {
	Type    string   `json:"type"`
	Reset   bool     `json:"reset,omitempty"`
	Done    bool     `json:"done,omitempty"`
	Add     []string `json:"add,omitempty"` // ban ids
	Rooms   []string `json:"rooms,omitempty"`
	Remove  []string `json:"remove,omitempty"`
	Lift    []string `json:"lift,omitempty"`
	Snap    []uint64 `json:"snap,omitempty"` // keys of the snapshot part
	Words   int      `json:"words,omitempty"`
	Version int64    `json:"version,omitempty"`
	PID     int      `json:"pid"`
	// A launch record (first of each process): its -role and NATS_URL.
	Role string `json:"role,omitempty"`
	NATS string `json:"nats,omitempty"`
	// A resume: how many events and the seq to continue from.
	Events int   `json:"events,omitempty"`
	Seq    int64 `json:"seq,omitempty"`
}

// fakeRoom serves the control socket (fd 4) as a room would: ready after
// hello (taking snapshots of the fleet's bans, unless its name starts with
// "legacy": a room process of an older binary), then it records every frame
// in dir/<name>.log. A global message
// "ban <room> <json>" makes room <room> send that ban event, "drop <room>"
// makes it close the connection (as a room whose write to its master timed
// out) and wait for another, "log <room>" makes it send a log of one event
// of seq 1000 then stats of 1000 messages; close and drain end it. Its first record is a "launch" with
// its -role and NATS_URL.
func fakeRoom(dir string, args []string) int {
	var name, role string
	var port int
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-name":
			name = args[i+1]
		case "-port":
			fmt.Sscan(args[i+1], &port)
		case "-role":
			role = args[i+1]
		}
	}
	ln, err := net.FileListener(os.NewFile(4, "control"))
	if err != nil {
		return ipc.ExitSetup
	}
	out, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return ipc.ExitSetup
	}
	w := bufio.NewWriter(out)
	line, _ := json.Marshal(frameRecord{Type: "launch", PID: os.Getpid(), Role: role, NATS: os.Getenv("NATS_URL")})
	w.Write(append(line, '\n'))
	w.Flush()
accept:
	for {
		ln.(*net.UnixListener).SetDeadline(time.Now().Add(5 * time.Second))
		nc, err := ln.Accept()
		if err != nil {
			return ipc.ExitOrphaned
		}
		c := ipc.NewConn(nc)
		if msg, err := c.Recv(); err != nil || msg.Type != ipc.TypeHello {
			c.Close()
			continue
		}
		c.Send(ipc.Msg{Type: ipc.TypeReady, Room: name, Port: port, PID: os.Getpid(), BanSnapshot: !strings.HasPrefix(name, "legacy")})
		for {
			msg, err := c.Recv()
			if err != nil {
				break
			}
			rec := frameRecord{Type: msg.Type, PID: os.Getpid()}
			switch msg.Type {
			case ipc.TypeResume:
				rec.Events, rec.Seq = len(msg.Events), msg.Seq
			case ipc.TypeCache:
				rec.Words, rec.Version = len(msg.Cache.BlockedWords), msg.Cache.Version
				if len(msg.Cache.Bans) > 0 {
					rec.Add = []string{"cache-holds-bans"}
				}
			case ipc.TypeBans:
				u := msg.Bans
				rec.Reset, rec.Done, rec.Remove, rec.Lift = u.Reset, u.Done, u.Remove, u.Lift
				if _, err := ipc.CheckSnapshot(u.Snapshot, nil); err != nil {
					rec.Snap = []uint64{0} // never a key in these tests
				}
				for i := range len(u.Snapshot) / ipc.SnapshotEntry {
					k, _ := ipc.SnapshotAt(u.Snapshot, i)
					rec.Snap = append(rec.Snap, k)
				}
				for _, b := range u.Add {
					rec.Add = append(rec.Add, b.ID)
					rec.Rooms = append(rec.Rooms, b.Room)
				}
			case ipc.TypeGlobal:
				if msg.Text == "drop "+name {
					c.Close()
					continue accept
				}
				if msg.Text == "log "+name {
					c.Send(ipc.Msg{Type: ipc.TypeEvent, Event: "log", Events: []chatfleet.Event{{Room: name, Seq: 1000, Type: "chat", At: time.Now(), Data: []byte(`{}`)}}})
					c.Send(ipc.Msg{Type: ipc.TypeStats, Stats: &chatfleet.RoomStats{Messages: 1000}}) // after the log: the master handled it
				}
				if f := strings.SplitN(msg.Text, " ", 3); len(f) == 3 && f[0] == "ban" && f[1] == name {
					var b chatfleet.Ban
					json.Unmarshal([]byte(f[2]), &b)
					c.Send(ipc.Msg{Type: ipc.TypeEvent, Event: "ban", Ban: &b})
				}
			case ipc.TypeClose, ipc.TypeDrain:
				w.Flush()
				return ipc.ExitClosed
			}
			line, _ := json.Marshal(rec)
			w.Write(append(line, '\n'))
			w.Flush()
		}
		c.Close()
	}
}

// fakeRooms runs a master on st whose rooms are fake rooms; it returns the
// master and the directory of their records.
func fakeRooms(t *testing.T, cfg Config) (*Master, string) {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Self, cfg.RoomEnv = self, []string{fakeRoomEnv + "=" + dir}
	cfg.DrainWindow, cfg.StopDeadline = 100*time.Millisecond, 5*time.Second
	return startMaster(t, cfg), dir
}

// records returns what room name was sent so far.
func records(t *testing.T, dir, name string) []frameRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil
	}
	var out []frameRecord
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r frameRecord
		if json.Unmarshal([]byte(l), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// heldBans is what a room holds after the bans frames it got: the overlay
// of whole bans (room by id) and the snapshot's keys (true: not lifted).
type heldBans struct {
	ids  map[string]string
	snap map[uint64]bool
}

// banList replays the bans frames of recs (from the last Reset on) and
// returns what the room would hold, whether Done came, and an error if
// the frames break the contract (a cache after bans, bans before a cache,
// bans in the cache, a snapshot not right after the Reset or not sorted).
func banList(recs []frameRecord) (heldBans, bool, error) {
	held, done, cache := heldBans{ids: map[string]string{}, snap: map[uint64]bool{}}, false, false
	var last uint64
	inSnap := false // the frames since the Reset were all Reset or snapshot parts
	for _, r := range recs {
		switch r.Type {
		case ipc.TypeCache:
			cache = true
			if len(r.Add) > 0 {
				return heldBans{}, false, fmt.Errorf("the cache carries bans")
			}
		case ipc.TypeBans:
			if !cache {
				return heldBans{}, false, fmt.Errorf("bans before the cache")
			}
			if r.Reset {
				held, done, inSnap, last = heldBans{ids: map[string]string{}, snap: map[uint64]bool{}}, false, true, 0
			}
			if len(r.Snap) > 0 && !inSnap {
				return heldBans{}, false, fmt.Errorf("a snapshot part after other frames: %+v", r)
			}
			for _, k := range r.Snap {
				if len(held.snap) > 0 && k <= last {
					return heldBans{}, false, fmt.Errorf("snapshot keys out of order")
				}
				held.snap[k], last = true, k
			}
			inSnap = inSnap && (r.Reset || len(r.Snap) > 0) && !r.Done
			for _, id := range r.Remove {
				delete(held.ids, id)
			}
			for _, u := range r.Lift {
				if _, ok := held.snap[ipc.BanKey(u)]; ok {
					held.snap[ipc.BanKey(u)] = false
				}
			}
			for i, id := range r.Add {
				held.ids[id] = r.Rooms[i]
			}
			done = done || r.Done
		}
	}
	return held, done, nil
}

// wantBans polls until room name holds exactly want (after Done): ban ids
// in its overlay, and "@user" for each user of its snapshot not lifted.
func wantBans(t *testing.T, dir, name string, timeout time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	testutil.Eventually(t, timeout, func() error {
		held, done, err := banList(records(t, dir, name))
		if err != nil {
			t.Fatalf("room %s: %v", name, err)
		}
		var got []string
		for id := range held.ids {
			got = append(got, id)
		}
		live := 0
		for _, ok := range held.snap {
			if ok {
				live++
			}
		}
		for _, w := range want {
			if u, ok := strings.CutPrefix(w, "@"); ok && held.snap[ipc.BanKey(u)] {
				got = append(got, w)
				live--
			}
		}
		for range live {
			got = append(got, "@?")
		}
		slices.Sort(got)
		if !done || !slices.Equal(got, want) {
			return fmt.Errorf("room %s holds %v (done %v), want %v", name, got, done, want)
		}
		return nil
	})
}

func postBans(t *testing.T, m *Master, body string) (int, string) {
	t.Helper()
	return testutil.Do(t, "POST", "http://"+m.cfg.AdminListener.Addr().String()+"/api/v1/bans", "a", body)
}

func banJSON(id, user, room string) string {
	b, _ := json.Marshal(chatfleet.Ban{ID: id, UserID: user, Room: room, By: "admin", Reason: "r"})
	return string(b)
}

// TestBansReachOnlyTheirRooms: each room gets, after the cache (which holds
// no bans), the fleet's bans as a snapshot and its own as Add, between Reset
// and Done, never another room's; admin changes reach the rooms as deltas (a
// fleet ban removed lifts its user from the snapshot); a room's ban applies
// to that room only, and a room's fleet ban or ban of another room is
// refused. A room of an older binary gets the fleet's bans as Add.
func TestBansReachOnlyTheirRooms(t *testing.T) {
	st := storetest.NewStore(t)
	ctx := context.Background()
	for _, b := range []chatfleet.Ban{
		{ID: "f1", UserID: "troll"}, {ID: "f2", UserID: "spammer"},
		{ID: "a1", UserID: "u1", Room: "a"}, {ID: "b1", UserID: "u2", Room: "b"},
		{ID: "f-old", UserID: "gone", Until: time.Now().Add(-time.Minute)},
	} {
		if err := st.AddBan(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	st.SetBlockedWords(ctx, []string{"darn", strings.Repeat("x", maxBlockedWordLen+1)})
	m, dir := fakeRooms(t, Config{Store: st, CacheEvery: time.Hour})
	for _, name := range []string{"a", "b"} {
		if _, err := m.CreateRoom(ctx, name, RoomOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantBans(t, dir, "a", 5*time.Second, "@troll", "@spammer", "a1")
	wantBans(t, dir, "b", 5*time.Second, "@troll", "@spammer", "b1")
	if recs := records(t, dir, "a"); recs[0].Type != "launch" || recs[1].Type != ipc.TypeResume || recs[2].Type != ipc.TypeCache || recs[2].Words != 1 {
		t.Fatalf("first frames %+v, want resume, then the cache with the one blocked word within bounds", recs[:3])
	}
	if n := m.cache.cutWords(); n != 1 {
		t.Errorf("words left out = %d, want 1", n)
	}

	t.Run("admin changes are deltas to the rooms they concern", func(t *testing.T) {
		before := len(records(t, dir, "b"))
		start := time.Now()
		status, body := postBans(t, m, `{"add":[`+banJSON("f3", "new-troll", "")+`,`+banJSON("a2", "u3", "a")+`,`+banJSON("z1", "u4", "elsewhere")+
			`],"remove":[{"id":"f1"}]}`)
		if status != 200 || body != `{"data":{"rooms":2}}` {
			t.Fatalf("post bans: %d %s", status, body)
		}
		// f1 is lifted (its user troll has no other ban), f3 comes whole.
		wantBans(t, dir, "a", time.Second, "@spammer", "f3", "a1", "a2")
		wantBans(t, dir, "b", time.Second, "@spammer", "f3", "b1")
		t.Logf("admin ban reached both rooms in %v", time.Since(start))
		for _, r := range records(t, dir, "b")[before:] {
			if r.Reset {
				t.Fatalf("a change was sent as a whole list: %+v", r)
			}
		}
	})

	t.Run("a room bans only in itself", func(t *testing.T) {
		refused := func() float64 { return metricValue(t, m, "chatserver_bans_refused_total") }
		before := refused()
		for _, b := range []string{banJSON("", "flood", ""), banJSON("x9", "victim", "b")} {
			m.Global("ban a " + b) // the fake room a sends it as its ban event
		}
		m.Global("ban a " + banJSON("a3", "rude", "a"))
		wantBans(t, dir, "a", 2*time.Second, "@spammer", "f3", "a1", "a2", "a3")
		if got := refused() - before; got != 2 {
			t.Fatalf("refused %v bans, want the fleet ban and the other room's", got)
		}
		wantBans(t, dir, "b", time.Second, "@spammer", "f3", "b1")
		testutil.Eventually(t, 5*time.Second, func() error {
			bans, err := st.Bans(ctx, chatfleet.BanFilter{Room: "a", Limit: 10})
			if err != nil || len(bans) != 2 || bans[1].ID != "a3" {
				return fmt.Errorf("room a's stored bans %+v %v", bans, err)
			}
			return nil
		})
		fleet, _ := st.CountBans(ctx, "", time.Time{})
		if fleet != 3 { // f1, f2, f-old: nothing a room sent became a fleet ban
			t.Fatalf("%d fleet bans stored, want 3", fleet)
		}
	})

	t.Run("bad input applies nothing", func(t *testing.T) {
		long := strings.Repeat("u", 129)
		many := make([]string, maxBansPerCall+1)
		for i := range many {
			many[i] = banJSON(fmt.Sprint("m", i), "u", "")
		}
		for _, body := range []string{
			`{"add":[` + banJSON("ok1", "u", "") + `,` + banJSON("bad", long, "") + `]}`,
			`{"add":[` + banJSON("ok2", "u", "a/b") + `]}`,
			`{"add":[{"id":"","userId":"u"}]}`,
			`{"add":[{"id":"r","userId":"u","reason":"` + strings.Repeat("<", 201) + `"}]}`,
			`{"add":[` + strings.Join(many, ",") + `]}`,
			`{"remove":[{"id":"a\u0001"}]}`,
			`{"ban":[]}`,
		} {
			status, resp := postBans(t, m, body)
			if status != 400 || !strings.Contains(resp, `"code":"invalid"`) {
				t.Errorf("post %.60s: %d %s, want 400 invalid", body, status, resp)
			}
		}
		wantBans(t, dir, "b", time.Second, "@spammer", "f3", "b1")
	})

	t.Run("a restarted room gets its whole list again, encoded once for the fleet", func(t *testing.T) {
		encodes := metricValue(t, m, "chatserver_fleet_ban_encodes_total")
		r, _ := m.room("b")
		r.kill() // closing: the room ends; create it again
		testutil.Eventually(t, 5*time.Second, func() error {
			if _, err := m.room("b"); err == nil {
				return fmt.Errorf("room b still runs")
			}
			return nil
		})
		os.Remove(filepath.Join(dir, "b.log"))
		for _, name := range []string{"b", "c"} {
			if _, err := m.CreateRoom(ctx, name, RoomOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		wantBans(t, dir, "b", 5*time.Second, "@spammer", "@new-troll", "b1")
		wantBans(t, dir, "c", 5*time.Second, "@spammer", "@new-troll")
		if got := metricValue(t, m, "chatserver_fleet_ban_encodes_total") - encodes; got > 1 {
			t.Fatalf("the fleet's bans were encoded %v times for two room starts, want at most once", got)
		}
		if _, err := m.CreateRoom(ctx, "legacy-d", RoomOptions{}); err != nil {
			t.Fatal(err)
		}
		wantBans(t, dir, "legacy-d", 5*time.Second, "f2", "f3")
		// A crashed room is started again and gets its list again.
		pid := records(t, dir, "c")[0].PID
		syscall.Kill(pid, syscall.SIGKILL)
		testutil.Eventually(t, 5*time.Second, func() error {
			recs := records(t, dir, "c")
			if last := recs[len(recs)-1]; last.PID == pid || !last.Done {
				return fmt.Errorf("no whole list for the restarted room yet: %+v", last)
			}
			return nil
		})
		wantBans(t, dir, "c", time.Second, "@spammer", "@new-troll")
	})

	t.Run("a refresh sends what changed in the store", func(t *testing.T) {
		st.RemoveBan(ctx, "f1") // removed through the admin API before: the control API removed it
		st.RemoveBan(ctx, "f2")
		st.RemoveBan(ctx, "b1")
		st.AddBan(ctx, &chatfleet.Ban{ID: "b2", UserID: "u5", Room: "b"})
		st.AddBan(ctx, &chatfleet.Ban{ID: "f4", UserID: "u6"})
		st.AddBan(ctx, &chatfleet.Ban{ID: "f3", UserID: "new-troll"}) // posted before: the control API stored it
		m.bans.refresh(ctx)
		// f2 removed lifts spammer; f3 changed (as stored) lifts new-troll
		// and comes whole; f4 is new.
		wantBans(t, dir, "b", time.Second, "f3", "f4", "b2")
		wantBans(t, dir, "c", time.Second, "f3", "f4")
		wantBans(t, dir, "legacy-d", time.Second, "f3", "f4")
	})
}

// metricValue reads a metric of m's registry (summed over its labels).
func metricValue(t *testing.T, m *Master, name string) float64 {
	t.Helper()
	mfs, err := m.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if c := mt.GetCounter(); c != nil {
				v += c.GetValue()
			}
			if g := mt.GetGauge(); g != nil {
				v += g.GetValue()
			}
		}
	}
	return v
}

// TestRoomBanBounds: a room's bans beyond MAX_ROOM_BANS, or beyond
// MAX_PENDING_BANS waiting for the store (without a store: held until they
// expire), are refused and counted; admin bans beyond MAX_FLEET_BANS too.
func TestRoomBanBounds(t *testing.T) {
	m, dir := fakeRooms(t, Config{MaxRoomBans: 3, MaxPendingBans: 4, MaxFleetBans: 2})
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if _, err := m.CreateRoom(ctx, name, RoomOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantBans(t, dir, "a", 5*time.Second)
	refused := func(reason string) float64 {
		var d dto.Metric
		m.metrics.bansRefused.WithLabelValues(reason).Write(&d)
		return d.GetCounter().GetValue()
	}
	for i := range 4 {
		m.Global("ban a " + banJSON(fmt.Sprint("a", i), "u", "a"))
	}
	wantBans(t, dir, "a", 2*time.Second, "a0", "a1", "a2")
	testutil.Eventually(t, 2*time.Second, func() error {
		if refused("cap") != 1 {
			return fmt.Errorf("refused at the cap: %v, want 1", refused("cap"))
		}
		return nil
	})
	for i := range 2 {
		m.Global("ban b " + banJSON(fmt.Sprint("b", i), "u", "b"))
	}
	wantBans(t, dir, "b", 2*time.Second, "b0")
	testutil.Eventually(t, 2*time.Second, func() error {
		if refused("queue") != 1 {
			return fmt.Errorf("refused for the queue: %v, want 1", refused("queue"))
		}
		return nil
	})
	status, body := postBans(t, m, `{"add":[`+banJSON("f1", "u", "")+`,`+banJSON("f2", "u", "")+`,`+banJSON("f3", "u", "")+`]}`)
	if status != 200 {
		t.Fatalf("post: %d %s", status, body)
	}
	wantBans(t, dir, "b", 2*time.Second, "b0", "f1", "f2")
	if refused("cap") != 2 {
		t.Fatalf("refused at the cap: %v, want 2", refused("cap"))
	}
}

// TestBlockedWordsBounded: whatever the store holds, the cache frame keeps
// at most 5,000 words of at most 100 bytes, and fits in a frame even when
// every byte is escaped.
func TestBlockedWordsBounded(t *testing.T) {
	words := []string{strings.Repeat("<", maxBlockedWordLen+1)}
	for range maxBlockedWords + 1000 {
		words = append(words, strings.Repeat("<", maxBlockedWordLen))
	}
	kept, cut := boundWords(words)
	if len(kept) != maxBlockedWords || cut != 1001 {
		t.Fatalf("kept %d, cut %d; want %d and 1001", len(kept), cut, maxBlockedWords)
	}
	m, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	m.cache.set(&chatfleet.Cache{BlockedWords: words, Defaults: chatfleet.DefaultRoomSettings})
	frame := m.cache.currentFrame()
	if n := len(m.cache.current().BlockedWords); n != maxBlockedWords {
		t.Fatalf("cache holds %d words", n)
	}
	if len(frame) > ipc.MaxFrame {
		t.Fatalf("cache frame of %d bytes, over %d", len(frame), ipc.MaxFrame)
	}
	t.Logf("worst cache frame: %d bytes", len(frame))
	if m.cache.cutWords() != 1001 {
		t.Fatalf("words left out = %d", m.cache.cutWords())
	}
}

// BenchmarkBanList measures the master's part of a room's whole list with
// 100,000 fleet bans and 10,000 of the room's own: building the fleet's
// snapshot (once per version, shared by every room), the Add frames of
// older rooms, and the frames of one room start.
func BenchmarkBanList(b *testing.B) {
	m, err := New(Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	k := m.bans
	now := time.Now()
	for i := range 100000 {
		id := fmt.Sprintf("%024x", i)
		k.fleet[id] = chatfleet.Ban{ID: id, UserID: fmt.Sprint("user-", i), By: "admin", Reason: "spam", CreatedAt: now}
	}
	k.fleetVer = 1
	rb := &roomBans{name: "t", bans: map[string]chatfleet.Ban{}}
	for i := range 10000 {
		id := fmt.Sprintf("r%023x", i)
		rb.bans[id] = chatfleet.Ban{ID: id, UserID: fmt.Sprint("user-", i), Room: "t", By: "mod", Reason: "spam", CreatedAt: now}
	}
	b.Run("fleet snapshot", func(b *testing.B) {
		var n int
		for b.Loop() {
			k.snapshot = nil
			n = 0
			for _, fr := range k.snapshotFrames(1) {
				n += len(fr)
			}
		}
		b.ReportMetric(float64(n), "bytes")
	})
	b.Run("fleet encode as Add", func(b *testing.B) {
		for b.Loop() {
			k.frames = nil
			k.fleetFrames(1)
		}
	})
	b.Run("room start", func(b *testing.B) {
		k.snapshotFrames(1)
		f := &banFeed{rb: rb, snapshot: true}
		var n int
		for b.Loop() {
			k.mu.Lock()
			k.resync(f)
			k.mu.Unlock()
			n = 0
			for _, fr := range k.next(f) {
				n += len(fr)
			}
		}
		b.ReportMetric(float64(n), "bytes/list")
	})
}

// TestCacheFileBans: without a store, CACHE_FILE's bans without a room are
// the fleet's and go to every room, the others to their room only; a
// changed file reaches the rooms as changes, and a room's own ban is kept.
func TestCacheFileBans(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cache.json")
	write := func(bans ...chatfleet.Ban) {
		b, _ := json.Marshal(chatfleet.Cache{Bans: bans, BlockedWords: []string{"darn"}, Defaults: chatfleet.DefaultRoomSettings})
		os.WriteFile(file, b, 0o600)
	}
	write(chatfleet.Ban{ID: "f1", UserID: "troll"}, chatfleet.Ban{ID: "a1", UserID: "u", Room: "a"}, chatfleet.Ban{ID: "z1", UserID: "u", Room: "z"})
	m, dir := fakeRooms(t, Config{CacheFile: file, CacheEvery: time.Hour})
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if _, err := m.CreateRoom(ctx, name, RoomOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantBans(t, dir, "a", 5*time.Second, "@troll", "a1")
	wantBans(t, dir, "b", 5*time.Second, "@troll")
	m.Global("ban b " + banJSON("b1", "rude", "b"))
	wantBans(t, dir, "b", 2*time.Second, "@troll", "b1")

	write(chatfleet.Ban{ID: "f2", UserID: "troll2"}, chatfleet.Ban{ID: "a1", UserID: "u", Room: "a"})
	later := time.Now().Add(time.Minute)
	os.Chtimes(file, later, later)
	m.cache.load(ctx)
	m.bans.refresh(ctx)
	wantBans(t, dir, "a", 2*time.Second, "f2", "a1")
	wantBans(t, dir, "b", 2*time.Second, "f2", "b1")
}

// TestFeedFallsBehind: a room that does not take its changes has at most
// maxFeedQueue frames (maxFeedQueueBytes) queued; beyond, the queue is
// dropped and the room's whole list is due instead.
func TestFeedFallsBehind(t *testing.T) {
	m, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k := m.bans
	rb := &roomBans{name: "slow", bans: map[string]chatfleet.Ban{}, feed: &banFeed{state: feedLive}}
	rb.feed.rb = rb
	k.rooms["slow"] = rb
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range maxFeedQueue {
		k.changeFleet([]chatfleet.Ban{{ID: fmt.Sprint("f", i), UserID: "u"}}, nil)
	}
	if f := rb.feed; f.state != feedLive || len(f.queue) != maxFeedQueue {
		t.Fatalf("after %d changes: state %d, %d queued", maxFeedQueue, f.state, len(f.queue))
	}
	k.changeFleet([]chatfleet.Ban{{ID: "one-more", UserID: "u"}}, nil)
	if f := rb.feed; f.state != feedResync || len(f.queue) != 0 || f.minVer != k.fleetVer {
		t.Fatalf("one change more: state %d, %d queued, minVer %d of %d; want a resync", f.state, len(f.queue), f.minVer, k.fleetVer)
	}
	big := strings.Repeat("<", maxBanReasonLen)
	var bans []chatfleet.Ban
	for i := range ipc.MaxBansPerFrame {
		bans = append(bans, chatfleet.Ban{ID: fmt.Sprintf("%0128d", i), UserID: fmt.Sprintf("%0128d", i), Reason: big})
	}
	rb.feed.state = feedLive
	for i := 0; rb.feed.state == feedLive; i++ {
		if i > maxFeedQueueBytes/ipc.MaxBansPerFrame/100 {
			t.Fatalf("%d bytes queued and no resync", rb.feed.queued)
		}
		k.changeRoom(rb, bans, nil)
	}
}

// TestFleetSnapshot: the fleet's snapshot holds one entry per user with an
// active fleet ban (its latest end, forever above all), sorted, in frames
// built once per version and shared by every room; removing a ban lifts its
// user and sends the user's other active bans whole, before the lift.
func TestFleetSnapshot(t *testing.T) {
	m, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k := m.bans
	now := time.Now()
	hour := now.Add(time.Hour).Truncate(time.Millisecond)
	k.mu.Lock()
	k.changeFleet([]chatfleet.Ban{
		{ID: "a", UserID: "forever"},
		{ID: "b1", UserID: "two-ends", Until: hour}, {ID: "b2", UserID: "two-ends", Until: hour.Add(time.Hour)},
		{ID: "c1", UserID: "both", Until: hour}, {ID: "c2", UserID: "both"},
		{ID: "d", UserID: "ended", Until: now.Add(-time.Minute)},
	}, nil)
	feeds := map[string]*banFeed{}
	for _, name := range []string{"r1", "r2"} {
		rb := &roomBans{name: name, bans: map[string]chatfleet.Ban{}}
		feeds[name] = &banFeed{rb: rb, state: feedLive, snapshot: true, kick: make(chan struct{}, 1)}
		rb.feed = feeds[name]
		k.rooms[name] = rb
		k.resync(feeds[name])
	}
	k.mu.Unlock()
	encodes := func() float64 { return metricValue(t, m, "chatserver_fleet_ban_encodes_total") }

	list1, list2 := k.next(feeds["r1"]), k.next(feeds["r2"])
	if len(list1) != 3 || len(list2) != 3 || &list1[1][0] != &list2[1][0] {
		t.Fatalf("lists of %d and %d frames, want Reset, one shared snapshot frame, Done", len(list1), len(list2))
	}
	if got := encodes(); got != 1 {
		t.Fatalf("snapshot built %v times for two rooms, want once", got)
	}
	msg, err := ipc.Decode(strings.NewReader(string(list1[1])))
	if err != nil {
		t.Fatal(err)
	}
	snap := msg.Bans.Snapshot
	if _, err := ipc.CheckSnapshot(snap, nil); err != nil || len(snap) != 3*ipc.SnapshotEntry {
		t.Fatalf("snapshot of %d bytes: %v; want 3 sorted entries", len(snap), err)
	}
	for user, want := range map[string]int64{"forever": 0, "two-ends": hour.Add(time.Hour).UnixMilli(), "both": 0} {
		if got, ok := ipc.SearchSnapshot(snap, ipc.BanKey(user)); !ok || got != want {
			t.Errorf("%s: end %d %v, want %d", user, got, ok, want)
		}
	}
	if _, ok := ipc.SearchSnapshot(snap, ipc.BanKey("ended")); ok {
		t.Error("an ended ban is in the snapshot")
	}

	// Removing c2 lifts "both": c1, still active, comes whole first.
	k.mu.Lock()
	k.changeFleet(nil, []string{"c2"})
	k.mu.Unlock()
	d1, d2 := k.next(feeds["r1"]), k.next(feeds["r2"])
	if len(d1) != 3 || &d1[0][0] != &d2[0][0] {
		t.Fatalf("change of %d frames (shared: %v), want Add, Remove, Lift", len(d1), len(d2) > 0 && &d1[0][0] == &d2[0][0])
	}
	var steps []ipc.BanUpdate
	for _, fr := range d1 {
		msg, err := ipc.Decode(strings.NewReader(string(fr)))
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, *msg.Bans)
	}
	if len(steps[0].Add) != 1 || steps[0].Add[0].ID != "c1" || !slices.Equal(steps[1].Remove, []string{"c2"}) || !slices.Equal(steps[2].Lift, []string{"both"}) {
		t.Fatalf("change %+v, want Add c1, Remove c2, Lift both", steps)
	}
	// A new version is built once more, without "both"'s forever.
	k.mu.Lock()
	k.resync(feeds["r1"])
	k.mu.Unlock()
	list := k.next(feeds["r1"])
	if got := encodes(); got != 2 {
		t.Fatalf("snapshot built %v times, want twice", got)
	}
	msg, _ = ipc.Decode(strings.NewReader(string(list[1])))
	if got, _ := ipc.SearchSnapshot(msg.Bans.Snapshot, ipc.BanKey("both")); got != hour.UnixMilli() {
		t.Fatalf("both's end %d, want %d", got, hour.UnixMilli())
	}
	if k.fleetByUser["both"] == nil || len(k.fleetByUser["both"]) != 1 {
		t.Fatalf("index of both: %v", k.fleetByUser["both"])
	}
}

// TestFleetSnapshotFrames: 100,000 fleet bans make a snapshot of 1.6 MB in
// frames within the frame limit.
func TestFleetSnapshotFrames(t *testing.T) {
	m, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k := m.bans
	for i := range 100000 {
		id := fmt.Sprint("f", i)
		k.fleet[id] = chatfleet.Ban{ID: id, UserID: fmt.Sprintf("u%0127d", i)}
	}
	var raw []byte
	frames := k.snapshotFrames(0)
	for _, fr := range frames {
		if len(fr) > ipc.MaxFrame {
			t.Fatalf("frame of %d bytes", len(fr))
		}
		msg, err := ipc.Decode(strings.NewReader(string(fr)))
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, msg.Bans.Snapshot...)
	}
	if _, err := ipc.CheckSnapshot(raw, nil); err != nil || len(raw) != 100000*ipc.SnapshotEntry {
		t.Fatalf("snapshot of %d bytes in %d frames: %v", len(raw), len(frames), err)
	}
	t.Logf("100,000 fleet bans: a snapshot of %d bytes in %d frames", len(raw), len(frames))
}
