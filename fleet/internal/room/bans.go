package room

import (
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
)

// BanList holds the bans a room applies: the fleet's and the room's own, as
// the master sends them (ipc "bans" frames), plus the bans the room's
// moderators made that the master has not echoed yet. Lookups by user id
// (handshakes, on connection goroutines) and updates (the hub, or the room
// process before the room exists) are O(1) per ban; nothing copies the list.
// It is safe for concurrent use.
type BanList struct {
	room string

	mu     sync.RWMutex
	byID   map[string]*banEntry
	byUser map[string]*banEntry // the user's bans, linked through next (usually one)
	local  map[string]bool      // ids of bans made here, not yet echoed by the master
	own    int                  // bans of this room (Room == room), local ones included
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
	for _, b := range keep {
		l.insert(b)
		l.local[b.ID] = true
	}
}

// BanStep is one change from the master (an ipc "bans" frame): Reset
// empties the list first (except the room's own bans the master has not
// echoed yet: it may not have them yet), then Remove (ban ids) and Add apply.
type BanStep struct {
	Reset  bool
	Remove []string
	Add    []chatfleet.Ban
}

// Update applies steps in order, at once for handshakes: a list sent again
// as several frames is never seen half applied. A ban added that matches a
// local ban (same id, or same user, room and end) replaces it. Bans of other
// rooms are ignored. It returns the bans added.
func (l *BanList) Update(steps ...BanStep) []chatfleet.Ban {
	l.mu.Lock()
	defer l.mu.Unlock()
	var added []chatfleet.Ban
	for _, st := range steps {
		added = append(added, l.update(st.Reset, st.Remove, st.Add)...)
	}
	return added
}

func (l *BanList) update(reset bool, remove []string, add []chatfleet.Ban) []chatfleet.Ban {
	if reset {
		var keep []chatfleet.Ban
		for id := range l.local {
			keep = append(keep, l.byID[id].Ban)
		}
		l.reset(keep)
	}
	for _, id := range remove {
		l.delete(id)
	}
	var added []chatfleet.Ban
	for _, b := range add {
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

// Banned returns the ban that keeps user out of the room at time now.
func (l *BanList) Banned(user string, now time.Time) (chatfleet.Ban, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for e := l.byUser[user]; e != nil; e = e.next {
		if e.Applies(user, l.room, now) {
			return e.Ban, true
		}
	}
	return chatfleet.Ban{}, false
}

// Len returns the number of bans held, and how many of them are the room's
// own (counted against Config.MaxRoomBans).
func (l *BanList) Len() (all, own int) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.byID), l.own
}

// Prune drops the bans that ended before now. It walks the whole list: call
// it rarely (the hub does once a minute).
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
