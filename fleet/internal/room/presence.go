package room

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/chatfleet/chatfleet/protocol"
)

// user is one distinct participant: all its connections count once.
type user struct {
	info     protocol.User
	conns    int
	lim      *rate.Limiter // every message; a producer's or moderator's is the room's ceiling
	modLim   *rate.Limiter // moderation messages (producer and moderators)
	lastChat time.Time     // for slow mode
	strikes  int           // refused messages ...
	strikeAt time.Time     // ... since this time
}

// presence is who is in the room: the distinct users and their connection
// counts, the viewers list, and what the audience changes still owe the
// clients (a count, in a large room) and the master (a presence event). It
// decides whether a join or leave is announced; the hub broadcasts it.
type presence struct {
	users    map[string]*user
	sorted   []protocol.User // users sorted for the viewers list; nil when stale
	max      int             // join and leave are broadcast up to this many users (PresenceMax)
	dirty    bool            // the count changed without a join/leave broadcast
	reported audience        // last reported to the master
}

// audience is the presence the master is told about.
type audience struct {
	producer       bool
	viewers, conns int
}

// newPresence returns an empty room that announces joins and leaves up to
// limit users.
func newPresence(limit int) presence {
	return presence{users: map[string]*user{}, max: limit}
}

// enter counts one more connection of info's user. It returns the user,
// whether it just joined and whether its role rose (both change its rate
// limits); nil when the user has maxConns connections already. A user's role
// is the highest of its connections'.
func (p *presence) enter(info protocol.User, maxConns int) (u *user, joined, promoted bool) {
	u = p.users[info.UserID]
	switch {
	case u != nil && u.conns >= maxConns:
		return nil, false, false
	case u == nil:
		u = &user{info: info}
		p.users[info.UserID] = u
		p.sorted = nil
		joined = true
	case rank(info.Role) > rank(u.info.Role):
		u.info.Role = info.Role
		p.sorted = nil
		promoted = true
	}
	u.conns++
	return u, joined, promoted
}

// leave counts one connection of u less; true when it was its last and u
// left the room.
func (p *presence) leave(u *user) bool {
	u.conns--
	if u.conns > 0 {
		return false
	}
	delete(p.users, u.info.UserID)
	p.sorted = nil
	return true
}

// announce reports whether a join or leave (leave) that just happened is
// broadcast: not while the room closes (closing), nor in a room too large,
// whose clients get a periodic count instead (see takeCount).
// total is the room's audience, its edges' included.
func (p *presence) announce(leave, closing bool, total int) bool {
	n := total
	if closing || n > p.max || (leave && n >= p.max) {
		p.dirty = true
		return false
	}
	return true
}

// takeCount reports whether the clients are owed a count, once.
func (p *presence) takeCount() bool {
	d := p.dirty
	p.dirty = false
	return d
}

// report returns the audience made of producer, viewers and conns, and
// whether the master has yet to hear of it.
func (p *presence) report(producer bool, viewers, conns int) (audience, bool) {
	a := audience{producer: producer, viewers: viewers, conns: conns}
	if a == p.reported {
		return a, false
	}
	p.reported = a
	return a, true
}

// page returns one page of the viewers list: producers, then moderators, then
// viewers, each by name; and how many users there are. The list is sorted
// again only after the users changed.
func (p *presence) page(page, size int) ([]protocol.User, int) {
	if p.sorted == nil {
		p.sorted = make([]protocol.User, 0, len(p.users))
		for _, u := range p.users {
			p.sorted = append(p.sorted, u.info)
		}
		slices.SortFunc(p.sorted, func(a, b protocol.User) int {
			return cmp.Or(cmp.Compare(rank(b.Role), rank(a.Role)), cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.UserID, b.UserID))
		})
	}
	from := min(page*size, len(p.sorted))
	to := min(from+size, len(p.sorted))
	users := p.sorted[from:to]
	if users == nil {
		users = []protocol.User{}
	}
	return users, len(p.sorted)
}

// presenceChange broadcasts a join or leave of u, unless presence says the
// count does.
// An edge announces nothing: its origin's count covers its users.
func (h *hub) presenceChange(typ string, u *user) {
	if h.edge || !h.pres.announce(typ == protocol.TypeLeave, h.life.draining || h.life.ended, h.viewerCount()) {
		return
	}
	h.broadcast(&protocol.ServerMsg{Type: typ, UserID: u.info.UserID, Name: u.info.Name, Role: u.info.Role, ViewerCount: h.viewerCount()})
}

// viewerCount is the room's audience as its clients see it: its users and
// its edges' (an origin); the origin's count (an edge, once it came).
func (h *hub) viewerCount() int {
	if h.edge {
		if h.edgeCount > 0 {
			return h.edgeCount
		}
		return len(h.pres.users)
	}
	return len(h.pres.users) + h.remoteViewers
}

// reportPresence tells the master the audience, if it changed. An edge's
// users are in Stats only, for the process that reports them to the origin.
func (h *hub) reportPresence() {
	if h.edge {
		return
	}
	if a, changed := h.pres.report(h.producer != nil, h.viewerCount(), len(h.clients)); changed {
		h.r.emit(Event{Type: EventPresence, Producer: a.producer, Viewers: a.viewers, Conns: a.conns})
	}
}

// publishCounts updates the counts Stats reads from other goroutines.
func (h *hub) publishCounts() {
	s := &h.r.stats
	s.conns.Store(int64(len(h.clients)))
	if h.edge {
		s.viewers.Store(int64(len(h.pres.users)))
	} else {
		s.viewers.Store(int64(h.viewerCount()))
	}
}

// viewers answers a viewers request with one page of the list, 50 users
// unless asked otherwise.
func (h *hub) viewers(req *request) {
	size := req.msg.PageSize
	if size == 0 {
		size = 50
	}
	users, total := h.pres.page(req.msg.Page, size)
	h.reply(req, &protocol.ServerMsg{Type: protocol.TypeViewers, Page: req.msg.Page, PageSize: size, Users: users, Total: total})
}
