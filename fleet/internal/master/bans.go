package master

import (
	"cmp"
	"context"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/hostapi"
)

// Bounds of one ban and of the lists that carry them.
const (
	maxBanIDLen     = 128 // bytes of a ban id, a user id or a ban's author
	maxBanReasonLen = 200 // bytes of a ban's reason
	maxBansPerCall  = 1000
	// maxBanFrameBytes bounds one bans frame besides ipc.MaxBansPerFrame: a
	// chunk that encodes larger is split.
	maxBanFrameBytes = 1 << 20
	// maxFeedQueue and maxFeedQueueBytes bound the frames queued for one
	// room; a room that falls this far behind gets its whole list again
	// instead.
	maxFeedQueue      = 256
	maxFeedQueueBytes = 16 << 20
	// maxTouched bounds the ban ids remembered as changed during a load.
	maxTouched = 200000
)

// banKeeper holds the bans this host's rooms apply: the fleet's (Room "",
// the operator's, at most MaxFleetBans) and, for each room the host runs,
// that room's own (at most MaxRoomBans). It loads them from the store at
// start, when a room's session starts and every CacheEvery, and sends each
// room its list (the fleet's plus its own, never another room's) over the
// room's control connection: after the cache, a frame with Reset, the
// fleet's bans as frames of a snapshot (16 bytes a banned user, see
// ipc.SnapshotEntry), the room's as frames of Add, and a frame with Done;
// from then on only the changes (ipc.BanUpdate). The snapshot frames are
// built once per version of the fleet's bans and shared by every room. A
// room process of an older binary, which does not take snapshots, gets the
// fleet's bans as Add frames instead, also encoded once per version.
//
// Room bans issued in a room (its `ban` events) apply to that room at once
// and are written to the store in the background, retried while it is down
// (at most MaxPendingBans wait). The admin API (ApplyBans) applies changes
// the control API made in the store. Its methods are safe for concurrent use.
type banKeeper struct {
	m    *Master
	kick chan struct{} // bans are waiting to be stored
	// loaded is closed once the first read of the fleet's bans ended (well
	// or not): rooms get their list after it.
	loaded     chan struct{}
	loadedOnce sync.Once

	buildMu sync.Mutex // one build of the fleet's frames at a time
	logMu   sync.Mutex
	logged  map[string]time.Time // refusals logged, by reason: at most once a second each

	mu          sync.Mutex
	fleet       map[string]chatfleet.Ban // by id
	fleetByUser map[string][]string      // ids of fleet, by user
	fleetVer    int64                    // increases with every change of fleet
	snapshot    *fleetFrames             // fleet as snapshot frames; nil or older: rebuild
	frames      *fleetFrames             // fleet as Add frames (rooms without snapshots); nil or older: rebuild
	rooms       map[string]*roomBans     // the rooms with a control session, by name
	pending     []chatfleet.Ban          // rooms' bans not yet stored (without a store: all of them)
	file        []chatfleet.Ban          // CacheFile's bans, without a store
	touched     map[string]time.Time     // ban ids changed here, when: a load older than that leaves them be
	trimLog     time.Time                // when a load cut at a cap was last logged
}

// fleetFrames are the fleet's bans at version ver as frames of a snapshot,
// or of Add.
type fleetFrames struct {
	ver    int64
	frames [][]byte
}

// roomBans are one room's own bans and the feed of its current session.
type roomBans struct {
	name string
	bans map[string]chatfleet.Ban
	feed *banFeed
}

// Feed states: loading (the room's bans are read; changes are not queued),
// resync (the whole list is due; changes since are queued to follow it),
// live (changes are queued).
const (
	feedLoading = iota
	feedResync
	feedLive
)

// banFeed sends bans frames to one session of a room. Its goroutine
// (runFeed) is the only writer of bans frames on conn; its fields but conn
// and kick are guarded by banKeeper.mu.
type banFeed struct {
	rb       *roomBans
	conn     *ipc.Conn
	log      *slog.Logger
	kick     chan struct{}
	stop     chan struct{}
	state    int
	snapshot bool     // the room takes the fleet's bans as a snapshot
	minVer   int64    // a resync sends the fleet's frames of at least this version
	queue    [][]byte // change frames in order
	queued   int      // bytes in queue
}

func newBanKeeper(m *Master) *banKeeper {
	return &banKeeper{m: m, kick: make(chan struct{}, 1), loaded: make(chan struct{}), logged: map[string]time.Time{},
		fleet: map[string]chatfleet.Ban{}, fleetByUser: map[string][]string{}, rooms: map[string]*roomBans{}, touched: map[string]time.Time{}}
}

// loadTimeout bounds one paged read of bans.
func (k *banKeeper) loadTimeout() time.Duration { return 10 * k.m.cfg.StoreTimeout }

// ---- Reading bans from the store (or CacheFile) ----

// refresh reads the fleet's bans and those of every room the host runs and
// sends the rooms what changed.
func (k *banKeeper) refresh(ctx context.Context) {
	k.loadFleet(ctx)
	k.mu.Lock()
	names := slices.Sorted(maps.Keys(k.rooms))
	k.mu.Unlock()
	for _, name := range names {
		k.loadRoom(ctx, name)
	}
	k.prune()
}

// loadFleet reads the fleet's bans and applies the difference.
func (k *banKeeper) loadFleet(ctx context.Context) {
	defer k.loadedOnce.Do(func() { close(k.loaded) })
	cfg := &k.m.cfg
	since := time.Now()
	var want []chatfleet.Ban
	switch {
	case cfg.Store != nil:
		ctx, cancel := context.WithTimeout(ctx, k.loadTimeout())
		defer cancel()
		bans, more, err := chatfleet.AllBans(ctx, cfg.Store, chatfleet.BanFilter{Now: cfg.Now()}, cfg.MaxFleetBans)
		if err != nil {
			k.m.metrics.storeErrors.Inc()
			k.m.log.Warn("load fleet bans", "err", err)
			return
		}
		if more {
			k.logTrim("the store holds more fleet bans than MAX_FLEET_BANS; the rest are not applied", "", cfg.MaxFleetBans)
		}
		want = bans
	case cfg.CacheFile != "":
		k.mu.Lock()
		for _, b := range k.file {
			if b.Room == "" && b.Active(cfg.Now()) && len(want) < cfg.MaxFleetBans {
				want = append(want, b)
			}
		}
		k.mu.Unlock()
	default:
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	add, remove := k.diff(k.fleet, k.fit(want), since)
	k.changeFleet(add, remove)
}

// loadRoom reads the bans of room name (plus its bans not yet stored) and
// applies the difference, if the host still runs it. It reports whether
// the read succeeded.
func (k *banKeeper) loadRoom(ctx context.Context, name string) bool {
	cfg := &k.m.cfg
	since := time.Now()
	var want []chatfleet.Ban
	switch {
	case cfg.Store != nil:
		ctx, cancel := context.WithTimeout(ctx, k.loadTimeout())
		defer cancel()
		bans, more, err := chatfleet.AllBans(ctx, cfg.Store, chatfleet.BanFilter{Room: name, Now: cfg.Now()}, cfg.MaxRoomBans)
		if err != nil {
			k.m.metrics.storeErrors.Inc()
			k.m.log.Warn("load room bans", "room", name, "err", err)
			return false
		}
		if more {
			k.logTrim("the store holds more bans of a room than MAX_ROOM_BANS; the rest are not applied", name, cfg.MaxRoomBans)
		}
		want = bans
	default:
		k.mu.Lock()
		for _, b := range k.file {
			if b.Room == name {
				want = append(want, b)
			}
		}
		k.mu.Unlock()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rb := k.rooms[name]
	if rb == nil {
		return true
	}
	now := cfg.Now()
	for _, b := range k.pending {
		if b.Room == name && b.Active(now) {
			want = append(want, b)
		}
	}
	want = k.fit(want)
	if len(want) > cfg.MaxRoomBans {
		slices.SortFunc(want, byID)
		want = want[:cfg.MaxRoomBans]
	}
	add, remove := k.diff(rb.bans, want, since)
	k.changeRoom(rb, add, remove)
	return true
}

// setFile takes the bans of CacheFile (used without a store): those
// without a room are the fleet's, the others their room's.
func (k *banKeeper) setFile(bans []chatfleet.Ban) {
	k.mu.Lock()
	k.file = bans
	k.mu.Unlock()
}

func (k *banKeeper) logTrim(msg, room string, limit int) {
	k.mu.Lock()
	due := time.Since(k.trimLog) > time.Minute
	if due {
		k.trimLog = time.Now()
	}
	k.mu.Unlock()
	if due {
		k.m.log.Warn(msg, "room", room, "limit", limit)
	}
}

// fit returns the bans of bs a room can be sent: ids and user ids of 1 to
// 128 bytes; longer reasons and authors are cut. Others are logged and
// counted as refused.
func (k *banKeeper) fit(bs []chatfleet.Ban) []chatfleet.Ban {
	out := bs[:0:0]
	for _, b := range bs {
		if b.ID == "" || len(b.ID) > maxBanIDLen || b.UserID == "" || len(b.UserID) > maxBanIDLen {
			k.refuse("invalid", b.Room, "a stored ban has an id or user id of 0 or over 128 bytes")
			continue
		}
		b.Reason = cut(b.Reason, maxBanReasonLen)
		b.By = cut(b.By, maxBanIDLen)
		out = append(out, b)
	}
	return out
}

// cut returns s cut to at most n bytes, on a character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// diff returns what turns have into want, leaving out the bans changed here
// since the read of want began; k.mu must be held.
func (k *banKeeper) diff(have map[string]chatfleet.Ban, want []chatfleet.Ban, since time.Time) (add []chatfleet.Ban, remove []string) {
	wanted := make(map[string]bool, len(want))
	for _, b := range want {
		wanted[b.ID] = true
		if k.changedSince(b.ID, since) {
			continue
		}
		h, ok := have[b.ID]
		if ok && sameBan(h, b) {
			continue
		}
		if ok {
			remove = append(remove, b.ID)
		}
		add = append(add, b)
	}
	for id := range have {
		if !wanted[id] && !k.changedSince(id, since) {
			remove = append(remove, id)
		}
	}
	slices.Sort(remove)
	return add, remove
}

// sameBan compares a and b as the store keeps them: times to the millisecond.
func sameBan(a, b chatfleet.Ban) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.Room == b.Room && a.By == b.By && a.Reason == b.Reason &&
		sameMs(a.Until, b.Until) && sameMs(a.CreatedAt, b.CreatedAt)
}

func sameMs(a, b time.Time) bool {
	return a.IsZero() == b.IsZero() && (a.IsZero() || a.UnixMilli() == b.UnixMilli())
}

func byID(a, b chatfleet.Ban) int { return cmp.Compare(a.ID, b.ID) }

// touch records that ban id changed here now; k.mu must be held.
func (k *banKeeper) touch(id string) {
	if len(k.touched) < maxTouched {
		k.touched[id] = time.Now()
	}
}

func (k *banKeeper) changedSince(id string, since time.Time) bool {
	t, ok := k.touched[id]
	return ok && !t.Before(since)
}

// prune forgets changes older than any load still running.
func (k *banKeeper) prune() {
	old := time.Now().Add(-k.loadTimeout() - time.Second)
	k.mu.Lock()
	defer k.mu.Unlock()
	maps.DeleteFunc(k.touched, func(_ string, t time.Time) bool { return t.Before(old) })
	now := k.m.cfg.Now()
	if k.m.cfg.Store == nil { // without a store the rooms' bans live here until they expire
		k.pending = slices.DeleteFunc(k.pending, func(b chatfleet.Ban) bool { return !b.Active(now) })
	}
}

// ---- Changes, and the frames that carry them ----

// changeFleet applies a change to the fleet's bans and queues it for every
// room; k.mu must be held. It returns how many rooms it queued it for.
//
// A room holds the fleet's bans as a snapshot without ids, so a ban removed
// (or replaced) lifts its user: the change carries, in this order, the bans
// added and the still active fleet bans of every lifted user (Add), the ids
// removed (Remove) and the lifted users (Lift). The room's answer stays
// exact, and nobody still banned is let in between two frames.
func (k *banKeeper) changeFleet(add []chatfleet.Ban, remove []string) int {
	if len(add)+len(remove) == 0 {
		return 0
	}
	adding := make(map[string]bool, len(add))
	for _, b := range add {
		adding[b.ID] = true
	}
	lifted := map[string]bool{}
	drop := func(id string) {
		if old, ok := k.fleet[id]; ok {
			delete(k.fleet, id)
			lifted[old.UserID] = true
		}
	}
	var gone []string // removed and not added again: an Add replaces a ban of the same id
	for _, id := range remove {
		drop(id)
		if !adding[id] {
			gone = append(gone, id)
		}
	}
	for _, b := range add {
		drop(b.ID)
	}
	for user := range lifted {
		ids := slices.DeleteFunc(k.fleetByUser[user], func(id string) bool { return k.fleet[id].UserID != user })
		if len(ids) == 0 {
			delete(k.fleetByUser, user)
		} else {
			k.fleetByUser[user] = ids
		}
	}
	for _, b := range add {
		k.fleet[b.ID] = b
		k.fleetByUser[b.UserID] = append(k.fleetByUser[b.UserID], b.ID)
	}
	k.fleetVer++
	k.frames, k.snapshot = nil, nil
	var frames [][]byte // encoded once for every room, if a room takes changes
	n := 0
	for _, rb := range k.rooms {
		if !takesChanges(rb.feed) {
			continue
		}
		if frames == nil {
			frames = k.fleetChangeFrames(add, gone, lifted, adding)
		}
		if k.enqueue(rb.feed, frames) {
			n++
		}
	}
	return n
}

// fleetChangeFrames encodes a change of the fleet's bans (see changeFleet);
// k.mu must be held.
func (k *banKeeper) fleetChangeFrames(add []chatfleet.Ban, gone []string, lifted, adding map[string]bool) [][]byte {
	users := slices.Sorted(maps.Keys(lifted))
	now := k.m.cfg.Now()
	var again []chatfleet.Ban
	for _, user := range users {
		for _, id := range k.fleetByUser[user] {
			if b := k.fleet[id]; !adding[id] && b.Active(now) {
				again = append(again, b)
			}
		}
	}
	slices.SortFunc(again, byID)
	out := k.banFrames(append(slices.Clip(add), again...), nil)
	out = append(out, k.banFrames(nil, gone)...)
	for len(users) > 0 {
		n := min(len(users), ipc.MaxBansPerFrame)
		out = append(out, k.encode(&ipc.BanUpdate{Lift: users[:n]})...)
		users = users[n:]
	}
	return out
}

// takesChanges reports whether f queues changes (it does once its room's
// bans are read); k.mu must be held.
func takesChanges(f *banFeed) bool { return f != nil && f.state != feedLoading }

// changeRoom applies a change to rb's bans and queues it for that room
// only; k.mu must be held. It reports whether it queued it.
func (k *banKeeper) changeRoom(rb *roomBans, add []chatfleet.Ban, remove []string) bool {
	if len(add)+len(remove) == 0 {
		return false
	}
	for _, id := range remove {
		delete(rb.bans, id)
	}
	for _, b := range add {
		rb.bans[b.ID] = b
	}
	if !takesChanges(rb.feed) {
		return false
	}
	return k.enqueue(rb.feed, k.banFrames(add, remove))
}

// enqueue queues frames for f; k.mu must be held. A feed too far behind is
// given its whole list again. It reports whether f will send them.
func (k *banKeeper) enqueue(f *banFeed, frames [][]byte) bool {
	if !takesChanges(f) {
		return false
	}
	n := 0
	for _, fr := range frames {
		n += len(fr)
	}
	if len(f.queue)+len(frames) > maxFeedQueue || f.queued+n > maxFeedQueueBytes {
		k.resync(f)
		return true
	}
	f.queue = append(f.queue, frames...)
	f.queued += n
	kick(f.kick)
	return true
}

// resync makes the next send of f the whole list; k.mu must be held.
func (k *banKeeper) resync(f *banFeed) {
	f.state, f.queue, f.queued, f.minVer = feedResync, nil, 0, k.fleetVer
	kick(f.kick)
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// banFrames encodes a change as bans frames: removals first, then the
// bans to add, at most ipc.MaxBansPerFrame and maxBanFrameBytes a frame.
func (k *banKeeper) banFrames(add []chatfleet.Ban, remove []string) [][]byte {
	var out [][]byte
	for len(remove) > 0 {
		n := min(len(remove), ipc.MaxBansPerFrame)
		out = append(out, k.encode(&ipc.BanUpdate{Remove: remove[:n]})...)
		remove = remove[n:]
	}
	for len(add) > 0 {
		n := min(len(add), ipc.MaxBansPerFrame)
		out = append(out, k.encodeAdd(add[:n])...)
		add = add[n:]
	}
	return out
}

// encodeAdd encodes add as one frame, or more if it is too large.
func (k *banKeeper) encodeAdd(add []chatfleet.Ban) [][]byte {
	b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: &ipc.BanUpdate{Add: add}})
	if (err != nil || len(b) > maxBanFrameBytes) && len(add) > 1 {
		h := len(add) / 2
		return append(k.encodeAdd(add[:h]), k.encodeAdd(add[h:])...)
	}
	if err != nil { // one ban within the bounds cannot exceed a frame
		k.m.log.Error("encode ban", "err", err)
		return nil
	}
	return [][]byte{b}
}

func (k *banKeeper) encode(u *ipc.BanUpdate) [][]byte {
	b, err := ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: u})
	if err != nil {
		k.m.log.Error("encode bans", "err", err)
		return nil
	}
	return [][]byte{b}
}

// fleetFrames returns the fleet's bans as Add frames of at least version
// minVer, encoding them if the last ones are older: for rooms that do not
// take snapshots.
func (k *banKeeper) fleetFrames(minVer int64) [][]byte {
	return k.cached(&k.frames, minVer, func() func() [][]byte {
		bans := slices.Collect(maps.Values(k.fleet))
		return func() [][]byte {
			slices.SortFunc(bans, byID)
			return k.banFrames(bans, nil)
		}
	})
}

// snapshotFrames returns the fleet's bans as the frames of a snapshot of at
// least version minVer, building them if the last ones are older: one entry
// per user with an active fleet ban, its end the latest of that user's
// (forever above all).
func (k *banKeeper) snapshotFrames(minVer int64) [][]byte {
	return k.cached(&k.snapshot, minVer, func() func() [][]byte {
		type userEnd struct {
			user  string
			until int64
		}
		now := k.m.cfg.Now()
		ends := make([]userEnd, 0, len(k.fleet))
		for _, b := range k.fleet {
			if b.Active(now) {
				ends = append(ends, userEnd{b.UserID, untilMs(b)})
			}
		}
		return func() [][]byte {
			return k.encodeSnapshot(func(yield func(string, int64) bool) {
				for _, e := range ends {
					if !yield(e.user, e.until) {
						return
					}
				}
			}, len(ends))
		}
	})
}

// cached returns the frames in *slot if they are of at least version
// minVer; otherwise it takes what it needs of the fleet's bans (collect,
// under k.mu), encodes it (outside k.mu), keeps the frames in *slot if the
// fleet's bans have not changed meanwhile, and returns them. One build at a
// time, so every room waiting for the same version shares one encoding.
func (k *banKeeper) cached(slot **fleetFrames, minVer int64, collect func() func() [][]byte) [][]byte {
	k.buildMu.Lock()
	defer k.buildMu.Unlock()
	k.mu.Lock()
	if ff := *slot; ff != nil && ff.ver >= minVer {
		k.mu.Unlock()
		return ff.frames
	}
	ver := k.fleetVer
	encode := collect()
	k.mu.Unlock()
	frames := encode()
	k.mu.Lock()
	if ver == k.fleetVer {
		*slot = &fleetFrames{ver: ver, frames: frames}
	}
	k.mu.Unlock()
	k.m.metrics.fleetEncodes.Inc()
	return frames
}

// untilMs returns the end of b in Unix milliseconds, 0 for forever.
func untilMs(b chatfleet.Ban) int64 {
	if b.Until.IsZero() {
		return 0
	}
	return max(b.Until.UnixMilli(), 1)
}

// encodeSnapshot returns the snapshot of n (user, end) pairs as frames of at
// most ipc.MaxSnapshotFrameBytes of entries each.
func (k *banKeeper) encodeSnapshot(ends iter.Seq2[string, int64], n int) [][]byte {
	type entry struct {
		key   uint64
		until int64
	}
	es := make([]entry, 0, n)
	for user, until := range ends {
		es = append(es, entry{ipc.BanKey(user), until})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	raw := make([]byte, 0, len(es)*ipc.SnapshotEntry)
	for i := 0; i < len(es); {
		e := es[i]
		// One entry per key: the user's latest end, forever above all (two
		// users share a key once in 2^64: they are banned alike).
		for i++; i < len(es) && es[i].key == e.key; i++ {
			if e.until != 0 && (es[i].until == 0 || es[i].until > e.until) {
				e.until = es[i].until
			}
		}
		raw = ipc.AppendSnapshotEntry(raw, e.key, e.until)
	}
	var frames [][]byte
	for len(raw) > 0 {
		part := raw[:min(len(raw), ipc.MaxSnapshotFrameBytes)]
		raw = raw[len(part):]
		frames = append(frames, k.encode(&ipc.BanUpdate{Snapshot: part})...)
	}
	return frames
}

// ---- Room sessions ----

// attach starts sending bans to room r over c, its new control session
// (after the cache): it reads the room's bans, then sends the whole list,
// then changes. The returned function stops it; call it when the session ends.
// A room that does not take snapshots (an older binary) gets the fleet's
// bans as Add frames.
func (k *banKeeper) attach(r *room, c *ipc.Conn, snapshot bool) (stop func()) {
	f := &banFeed{conn: c, log: r.log, kick: make(chan struct{}, 1), stop: make(chan struct{}), state: feedLoading, snapshot: snapshot}
	k.mu.Lock()
	rb := k.rooms[r.name]
	if rb == nil {
		rb = &roomBans{name: r.name, bans: map[string]chatfleet.Ban{}}
		k.rooms[r.name] = rb
	}
	f.rb = rb
	rb.feed = f
	k.mu.Unlock()
	go k.runFeed(f)
	return func() {
		close(f.stop)
		k.mu.Lock()
		if rb.feed == f {
			rb.feed = nil
		}
		k.mu.Unlock()
	}
}

// forgetRoom drops the bans of a room the host no longer runs.
func (k *banKeeper) forgetRoom(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.rooms, name)
	if k.m.cfg.Store == nil {
		k.pending = slices.DeleteFunc(k.pending, func(b chatfleet.Ban) bool { return b.Room == name })
	}
}

// runFeed is f's sender goroutine.
func (k *banKeeper) runFeed(f *banFeed) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-f.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer cancel()
	k.loadRoom(ctx, f.rb.name) // on failure: what is held, and again at the next refresh
	select {
	case <-k.loaded: // a host that just started sends the fleet's bans once it has them
	case <-f.stop:
		return
	}
	k.mu.Lock()
	k.resync(f)
	k.mu.Unlock()
	for {
		select {
		case <-f.stop:
			return
		case <-f.kick:
		}
		for _, frame := range k.next(f) {
			if err := f.conn.SendFrame(frame, 5*time.Second); err != nil {
				f.log.Warn("send bans to room; closing its control connection", "err", err)
				f.conn.Close() // a partial frame poisons the stream
				return
			}
			k.m.metrics.banFrames.Inc()
			k.m.metrics.banBytes.Add(float64(len(frame)))
			if &frame[0] == &doneFrame[0] {
				k.m.metrics.banLists.Inc()
			}
		}
	}
}

var (
	resetFrame, _ = ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: &ipc.BanUpdate{Reset: true}})
	doneFrame, _  = ipc.Encode(ipc.Msg{Type: ipc.TypeBans, Bans: &ipc.BanUpdate{Done: true}})
)

// next returns the frames f is to send now: the whole list if a resync is
// due (Reset, the fleet's snapshot, the room's, Done, then the changes
// queued since),
// else the changes queued.
func (k *banKeeper) next(f *banFeed) [][]byte {
	k.mu.Lock()
	if f.state != feedResync {
		q := f.queue
		f.queue, f.queued = nil, 0
		k.mu.Unlock()
		return q
	}
	minVer, snapshot := f.minVer, f.snapshot
	own := slices.Collect(maps.Values(f.rb.bans))
	k.mu.Unlock()
	var fleet [][]byte
	if snapshot {
		fleet = k.snapshotFrames(minVer)
	} else {
		fleet = k.fleetFrames(minVer)
	}
	slices.SortFunc(own, byID)
	frames := append([][]byte{resetFrame}, fleet...)
	frames = append(frames, k.banFrames(own, nil)...)
	frames = append(frames, doneFrame)
	k.mu.Lock()
	// Changes queued since the resync began follow the list; those already
	// in it apply again to no effect.
	frames = append(frames, f.queue...)
	f.queue, f.queued, f.state = nil, 0, feedLive
	k.mu.Unlock()
	return frames
}

// ---- Bans issued in rooms, and the admin API ----

// roomBan takes a ban a room issued (its `ban` event): a ban of that room
// applies to it at once and is stored in the background. A fleet ban or
// another room's is refused: fleet bans are the operator's.
func (k *banKeeper) roomBan(r *room, b chatfleet.Ban) {
	if b.Room != r.name {
		k.refuse("scope", r.name, "a room may ban only from itself")
		return
	}
	if b.ID == "" {
		b.ID = newID()
	}
	if b.CreatedAt.IsZero() {
		b.CreatedAt = k.m.cfg.Now()
	}
	if err := validBan(b, true); err != nil {
		k.refuse("invalid", r.name, err.Error())
		return
	}
	cfg := &k.m.cfg
	k.mu.Lock()
	rb := k.rooms[r.name]
	switch {
	case rb == nil: // the session ended meanwhile
		k.mu.Unlock()
		return
	case k.holds(rb, b.ID):
		k.mu.Unlock()
		return
	case len(rb.bans) >= cfg.MaxRoomBans:
		k.mu.Unlock()
		k.refuse("cap", r.name, "the room holds MAX_ROOM_BANS bans")
		return
	case len(k.pending) >= cfg.MaxPendingBans:
		k.mu.Unlock()
		k.refuse("queue", r.name, "MAX_PENDING_BANS bans wait for the store")
		return
	}
	k.pending = append(k.pending, b)
	k.touch(b.ID)
	k.changeRoom(rb, []chatfleet.Ban{b}, nil)
	k.mu.Unlock()
	r.log.Info("room ban issued", "ban", b.ID, "by", b.By)
	if cfg.Store != nil {
		kick(k.kick)
	}
}

// holds reports whether rb or the bans waiting for the store have id; k.mu
// must be held.
func (k *banKeeper) holds(rb *roomBans, id string) bool {
	if _, ok := rb.bans[id]; ok {
		return true
	}
	return slices.ContainsFunc(k.pending, func(p chatfleet.Ban) bool { return p.ID == id })
}

// refuse counts a refused ban and logs it, at most once a second a reason.
func (k *banKeeper) refuse(reason, room, detail string) {
	k.m.metrics.bansRefused.WithLabelValues(reason).Inc()
	k.logRefusal(reason, room, detail)
}

// logRefusal logs a refused ban, at most once a second a reason.
func (k *banKeeper) logRefusal(reason, room, detail string) {
	k.logMu.Lock()
	due := time.Since(k.logged[reason]) >= time.Second
	if due {
		k.logged[reason] = time.Now()
	}
	k.logMu.Unlock()
	if due {
		k.m.log.Warn("ban refused", "reason", reason, "room", room, "detail", detail)
	}
}

// validBan checks b as the admin API and rooms must give it: EINVALID if not.
func validBan(b chatfleet.Ban, adding bool) error {
	switch {
	case !printable(b.ID, maxBanIDLen):
		return chatfleet.Errorf(chatfleet.EINVALID, "ban id %.40q: want 1 to %d printable bytes", b.ID, maxBanIDLen)
	case adding && !printable(b.UserID, maxBanIDLen):
		return chatfleet.Errorf(chatfleet.EINVALID, "ban %s: userId must be 1 to %d printable bytes", b.ID, maxBanIDLen)
	case len(b.By) > maxBanIDLen || !utf8.ValidString(b.By):
		return chatfleet.Errorf(chatfleet.EINVALID, "ban %s: by must be at most %d bytes of UTF-8", b.ID, maxBanIDLen)
	case len(b.Reason) > maxBanReasonLen || !utf8.ValidString(b.Reason):
		return chatfleet.Errorf(chatfleet.EINVALID, "ban %s: reason must be at most %d bytes of UTF-8", b.ID, maxBanReasonLen)
	}
	if b.Room != "" {
		if err := chatfleet.ValidateRoomName(b.Room); err != nil {
			return chatfleet.Errorf(chatfleet.EINVALID, "ban %s: room: %s", b.ID, chatfleet.ErrorMessage(err))
		}
	}
	return nil
}

// printable reports whether s is 1 to max bytes of UTF-8 without control characters.
func printable(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// BanChanges are changes the control API made to the stored bans, for the
// admin API's POST /api/v1/bans.
type BanChanges = hostapi.BanChanges

// ApplyBans applies ch at once to the rooms of this host: fleet bans (Room
// "") to every room, a room's bans to that room if the host runs it. It does
// not write the store (the caller did). It returns how many rooms it sent
// changes to, or EINVALID (and applies nothing) for a bad change.
func (m *Master) ApplyBans(ch BanChanges) (int, error) {
	if len(ch.Add) > maxBansPerCall || len(ch.Remove) > maxBansPerCall {
		return 0, chatfleet.Errorf(chatfleet.EINVALID, "at most %d bans to add and %d to remove", maxBansPerCall, maxBansPerCall)
	}
	for _, b := range ch.Add {
		if err := validBan(b, true); err != nil {
			return 0, err
		}
	}
	for _, b := range ch.Remove {
		if err := validBan(b, false); err != nil {
			return 0, err
		}
	}
	return m.bans.apply(ch), nil
}

func (k *banKeeper) apply(ch BanChanges) int {
	cfg := &k.m.cfg
	type change struct {
		add    []chatfleet.Ban
		remove []string
	}
	scopes := map[string]*change{}
	of := func(room string) *change {
		if scopes[room] == nil {
			scopes[room] = &change{}
		}
		return scopes[room]
	}
	for _, b := range ch.Remove {
		c := of(b.Room)
		c.remove = append(c.remove, b.ID)
	}
	for _, b := range ch.Add {
		if b.CreatedAt.IsZero() {
			b.CreatedAt = cfg.Now()
		}
		c := of(b.Room)
		c.add = append(c.add, b)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range ch.Remove {
		k.touch(b.ID)
	}
	for _, b := range ch.Add {
		k.touch(b.ID)
	}
	pushed := map[string]bool{}
	if c := scopes[""]; c != nil {
		c.add = k.capped(c.add, k.fleet, c.remove, cfg.MaxFleetBans, "")
		if k.changeFleet(c.add, c.remove) > 0 {
			for name, rb := range k.rooms {
				if takesChanges(rb.feed) {
					pushed[name] = true
				}
			}
		}
	}
	for room, c := range scopes {
		rb := k.rooms[room]
		if room == "" || rb == nil {
			continue
		}
		c.add = k.capped(c.add, rb.bans, c.remove, cfg.MaxRoomBans, room)
		if k.changeRoom(rb, c.add, c.remove) {
			pushed[room] = true
		}
	}
	return len(pushed)
}

// capped returns the bans of add that fit in have (after remove) within
// limit; the others are refused. k.mu must be held.
func (k *banKeeper) capped(add []chatfleet.Ban, have map[string]chatfleet.Ban, remove []string, limit int, room string) []chatfleet.Ban {
	n := len(have)
	for _, id := range remove {
		if _, ok := have[id]; ok {
			n--
		}
	}
	out := add[:0:0]
	for _, b := range add {
		if _, ok := have[b.ID]; !ok {
			if n >= limit {
				k.m.metrics.bansRefused.WithLabelValues("cap").Inc()
				continue
			}
			n++
		}
		out = append(out, b)
	}
	if len(out) < len(add) {
		k.logRefusal("cap", room, "the fleet or the room holds its cap of bans (MAX_FLEET_BANS, MAX_ROOM_BANS)")
	}
	return out
}

// ---- Writing rooms' bans to the store ----

// unstored returns how many rooms' bans wait for the store.
func (k *banKeeper) unstored() int {
	if k.m.cfg.Store == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.pending)
}

// flush writes the bans waiting for the store, all in one call (one write
// per room: bans that pile up while a write runs go together in the next).
func (k *banKeeper) flush(ctx context.Context) {
	st := k.m.cfg.Store
	if st == nil {
		return
	}
	k.mu.Lock()
	pending := slices.Clone(k.pending)
	k.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, k.m.cfg.StoreTimeout)
	err := st.AddBans(cctx, pending)
	cancel()
	if err != nil {
		k.m.metrics.storeErrors.Inc()
		k.m.log.Warn("store bans (will retry)", "bans", len(pending), "err", err)
		return
	}
	done := make(map[string]bool, len(pending))
	for _, b := range pending {
		done[b.ID] = true
	}
	k.mu.Lock()
	k.pending = slices.DeleteFunc(k.pending, func(p chatfleet.Ban) bool { return done[p.ID] })
	k.mu.Unlock()
}

// counts returns the fleet's bans and the rooms' bans held.
func (k *banKeeper) counts() (fleet, rooms int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, rb := range k.rooms {
		rooms += len(rb.bans)
	}
	return len(k.fleet), rooms
}
