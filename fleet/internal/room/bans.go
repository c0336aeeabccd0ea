package room

import (
	"fmt"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// BanList holds the bans a room applies, as the master sends them (ipc
// "bans" frames): the fleet's bans as a snapshot (16 bytes a banned user,
// see ipc.SnapshotEntry, searched in place), the users lifted from it since,
// and an overlay of whole bans: the fleet's bans added since the snapshot,
// the room's own, and the bans the room's moderators made that the master
// has not echoed yet. Lookups by user id (handshakes, on connection
// goroutines) cost a map lookup, and with a snapshot a SHA-256 and a binary
// search; updates (the hub, or the room process before the room exists) are
// O(1) per ban; nothing copies the list. It is safe for concurrent use.
type BanList struct {
	room string

	mu     sync.RWMutex
	byID   map[string]*banEntry
	byUser map[string]*banEntry // the user's bans, linked through next (usually one)
	local  map[string]bool      // ids of bans made here, not yet echoed by the master
	own    int                  // bans of this room (Room == room), local ones included
	// snap is the fleet's snapshot, in the parts it came in (each as
	// received, concatenated they are sorted); snapN counts its entries.
	snap   [][]byte
	snapN  int
	lifted map[uint64]struct{} // keys of snap whose entry no longer counts: at most snapN
}

// banEntry is one ban held: one allocation, in both indexes.
type banEntry struct {
	chatfleet.Ban
	next *banEntry // the same user's next ban
}

// NewBanList returns an empty list for room.
func NewBanList(room string) *BanList {
	l := &BanList{room: room}
	l.reset(nil)
	return l
}

func (l *BanList) reset(keep []chatfleet.Ban) {
	l.byID, l.byUser, l.local, l.own = map[string]*banEntry{}, map[string]*banEntry{}, map[string]bool{}, 0
	l.snap, l.snapN, l.lifted = nil, 0, map[uint64]struct{}{}
	for _, b := range keep {
		l.insert(b)
		l.local[b.ID] = true
	}
}

// BanStep is one change from the master (an ipc "bans" frame): Reset
// empties the list first (except the room's own bans the master has not
// echoed yet: it may not have them yet), then Snapshot (a part of the
// fleet's snapshot: the parts since the Reset concatenate), Remove (ban
// ids), Lift (user ids whose snapshot entry no longer counts) and Add apply.
type BanStep struct {
	Reset    bool
	Snapshot []byte // kept as given: the caller must not change it afterwards
	Remove   []string
	Lift     []string
	Add      []chatfleet.Ban
}

// Update applies steps in order, at once for handshakes: a list sent again
// as several frames is never seen half applied. A ban added that matches a
// local ban (same id, or same user, room and end) replaces it. Bans of other
// rooms are ignored. It returns the bans added.
//
// A snapshot part that is not whole entries of sorted keys following the
// parts held, or beyond ipc.MaxSnapshotEntries, is an error, and then
// Update applies none of steps: the list held stays as it was (a room that
// serves keeps its last good list rather than losing every fleet ban or
// closing its doors over what can only be a bug of its master; the caller
// logs it). A room not yet serving gets its list one frame a step, so it
// goes without that part only.
func (l *BanList) Update(steps ...BanStep) ([]chatfleet.Ban, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkSnapshots(steps); err != nil {
		return nil, err
	}
	var added []chatfleet.Ban
	for _, st := range steps {
		added = append(added, l.update(st)...)
	}
	return added, nil
}

// checkSnapshots checks the snapshot parts of steps as they would follow
// what l holds.
func (l *BanList) checkSnapshots(steps []BanStep) error {
	var last *uint64
	if l.snapN > 0 {
		p := l.snap[len(l.snap)-1]
		k, _ := ipc.SnapshotAt(p, len(p)/ipc.SnapshotEntry-1)
		last = &k
	}
	n := l.snapN
	for _, st := range steps {
		if st.Reset {
			last, n = nil, 0
		}
		if len(st.Snapshot) == 0 {
			continue
		}
		k, err := ipc.CheckSnapshot(st.Snapshot, last)
		if err != nil {
			return fmt.Errorf("bad ban snapshot: %w", err)
		}
		if n += len(st.Snapshot) / ipc.SnapshotEntry; n > ipc.MaxSnapshotEntries {
			return fmt.Errorf("bad ban snapshot: over %d entries", ipc.MaxSnapshotEntries)
		}
		last = &k
	}
	return nil
}

func (l *BanList) update(st BanStep) []chatfleet.Ban {
	if st.Reset {
		var keep []chatfleet.Ban
		for id := range l.local {
			keep = append(keep, l.byID[id].Ban)
		}
		l.reset(keep)
	}
	if len(st.Snapshot) > 0 {
		l.snap = append(l.snap, st.Snapshot)
		l.snapN += len(st.Snapshot) / ipc.SnapshotEntry
	}
	for _, id := range st.Remove {
		l.delete(id)
	}
	for _, user := range st.Lift {
		if k := ipc.BanKey(user); l.inSnapshot(k) {
			l.lifted[k] = struct{}{}
		}
	}
	var added []chatfleet.Ban
	for _, b := range st.Add {
		if b.ID == "" || b.UserID == "" || (b.Room != "" && b.Room != l.room) {
			continue
		}
		l.unlocal(b)
		l.delete(b.ID)
		l.insert(b)
		added = append(added, b)
	}
	return added
}

// search returns the end of key's snapshot entry (Unix ms, 0: forever).
func (l *BanList) search(key uint64) (int64, bool) {
	for _, p := range l.snap {
		// Parts are in order: key is in the first whose last key is not below it.
		if k, _ := ipc.SnapshotAt(p, len(p)/ipc.SnapshotEntry-1); k >= key {
			return ipc.SearchSnapshot(p, key)
		}
	}
	return 0, false
}

func (l *BanList) inSnapshot(key uint64) bool {
	_, ok := l.search(key)
	return ok
}

// AddLocal adds a ban the room's moderators made; it applies at once and
// stays until the master echoes it (see Update) or removes it.
func (l *BanList) AddLocal(b chatfleet.Ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delete(b.ID)
	l.insert(b)
	l.local[b.ID] = true
}

// unlocal forgets the local ban that b echoes, if any.
func (l *BanList) unlocal(b chatfleet.Ban) {
	if l.local[b.ID] {
		l.delete(b.ID)
		return
	}
	for e := l.byUser[b.UserID]; e != nil; e = e.next {
		if l.local[e.ID] && e.Room == b.Room && e.Until.Equal(b.Until) {
			l.delete(e.ID)
			return
		}
	}
}

func (l *BanList) insert(b chatfleet.Ban) {
	e := &banEntry{Ban: b, next: l.byUser[b.UserID]}
	l.byID[b.ID] = e
	l.byUser[b.UserID] = e
	if b.Room != "" {
		l.own++
	}
}

func (l *BanList) delete(id string) {
	e := l.byID[id]
	if e == nil {
		return
	}
	delete(l.byID, id)
	delete(l.local, id)
	if e.Room != "" {
		l.own--
	}
	head := l.byUser[e.UserID]
	if head == e {
		if e.next == nil {
			delete(l.byUser, e.UserID)
		} else {
			l.byUser[e.UserID] = e.next
		}
		return
	}
	for p := head; p != nil; p = p.next {
		if p.next == e {
			p.next = e.next
			return
		}
	}
}

// Banned returns the ban that keeps user out of the room at time now: one
// of the overlay (with its reason), else the user's snapshot entry unless
// lifted, returned as a fleet ban without id or reason ("you are banned").
func (l *BanList) Banned(user string, now time.Time) (chatfleet.Ban, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for e := l.byUser[user]; e != nil; e = e.next {
		if e.Applies(user, l.room, now) {
			return e.Ban, true
		}
	}
	if l.snapN == 0 {
		return chatfleet.Ban{}, false
	}
	k := ipc.BanKey(user)
	if _, ok := l.lifted[k]; ok {
		return chatfleet.Ban{}, false
	}
	until, ok := l.search(k)
	if !ok || until != 0 && now.UnixMilli() >= until {
		return chatfleet.Ban{}, false
	}
	b := chatfleet.Ban{UserID: user, CreatedAt: now}
	if until != 0 {
		b.Until = time.UnixMilli(until)
	}
	return b, true
}

// Len returns the number of bans held (a snapshot entry counts as one,
// lifted or not), and how many of them are the room's own (counted against
// Config.MaxRoomBans).
func (l *BanList) Len() (all, own int) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.byID) + l.snapN, l.own
}

// SnapshotBytes returns the bytes of the fleet's snapshot held.
func (l *BanList) SnapshotBytes() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.snapN * ipc.SnapshotEntry
}

// Prune drops the bans of the overlay that ended before now (the
// snapshot's entries stay: each is checked against now). It walks the
// whole overlay: call it rarely (the hub does once a minute).
func (l *BanList) Prune(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ended []string
	for id, e := range l.byID {
		if !e.Active(now) {
			ended = append(ended, id)
		}
	}
	for _, id := range ended {
		l.delete(id)
	}
	return len(ended)
}
