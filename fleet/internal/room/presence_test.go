package room

import (
	"slices"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestPresenceEnterLeave(t *testing.T) {
	viewer := func(id string) protocol.User { return protocol.User{UserID: id, Name: id, Role: chatfleet.RoleViewer} }
	mod := func(id string) protocol.User {
		return protocol.User{UserID: id, Name: id, Role: chatfleet.RoleModerator}
	}
	p := newPresence(500)
	conns := map[string][]*user{} // each connection entered, by user id
	for i, step := range []struct {
		leave    bool
		info     protocol.User
		refused  bool // too many connections
		joined   bool // enter: new to the room; leave: its last connection went
		promoted bool
		role     chatfleet.Role // the user's role after the step
		users    int
	}{
		{info: viewer("ann"), joined: true, role: chatfleet.RoleViewer, users: 1},
		{info: viewer("ann"), role: chatfleet.RoleViewer, users: 1},
		{info: viewer("ann"), refused: true, role: chatfleet.RoleViewer, users: 1}, // the third, over maxConns 2
		{info: mod("bob"), joined: true, role: chatfleet.RoleModerator, users: 2},
		{leave: true, info: viewer("ann"), role: chatfleet.RoleViewer, users: 2},
		{info: mod("ann"), promoted: true, role: chatfleet.RoleModerator, users: 2},
		{info: viewer("ann"), refused: true, role: chatfleet.RoleModerator, users: 2},
		{leave: true, info: viewer("ann"), role: chatfleet.RoleModerator, users: 2},
		{leave: true, info: viewer("ann"), joined: true, users: 1},     // the last one: ann left
		{info: viewer("bob"), role: chatfleet.RoleModerator, users: 1}, // a lower role keeps the higher
	} {
		id := step.info.UserID
		var joined, promoted bool
		if step.leave {
			u := conns[id][0]
			conns[id] = conns[id][1:]
			joined = p.leave(u)
		} else {
			var u *user
			u, joined, promoted = p.enter(step.info, 2)
			if (u == nil) != step.refused {
				t.Fatalf("step %d: enter %s = %v, want refused %v", i, id, u, step.refused)
			}
			if u != nil {
				conns[id] = append(conns[id], u)
			}
		}
		if joined != step.joined || promoted != step.promoted || len(p.users) != step.users {
			t.Fatalf("step %d (%s): joined %v promoted %v with %d users, want %v %v %d", i, id, joined, promoted, len(p.users), step.joined, step.promoted, step.users)
		}
		if u := p.users[id]; u != nil && (u.info.Role != step.role || u.conns != len(conns[id])) {
			t.Fatalf("step %d: %s is %s with %d connections, want %s with %d", i, id, u.info.Role, u.conns, step.role, len(conns[id]))
		}
	}
}

func TestPresenceAnnounce(t *testing.T) {
	for _, tt := range []struct {
		name    string
		users   int // after the change
		leave   bool
		closing bool
		want    bool // broadcast the join or leave; else a count is owed
	}{
		{"join", 1, false, false, true},
		{"join up to the max", 3, false, false, true},
		{"join over the max", 4, false, false, false},
		{"leave below the max", 2, true, false, true},
		{"leave at the max", 3, true, false, false}, // the room was over it: a count
		{"closing", 1, false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPresence(3)
			for i := range tt.users {
				p.enter(protocol.User{UserID: string(rune('a' + i))}, 1)
			}
			if got := p.announce(tt.leave, tt.closing, len(p.users)); got != tt.want {
				t.Errorf("announce = %v, want %v", got, tt.want)
			}
			if owed := p.takeCount(); owed == tt.want {
				t.Errorf("count owed %v, want %v", owed, !tt.want)
			}
			if p.takeCount() {
				t.Error("a count owed twice")
			}
		})
	}
}

func TestPresenceReport(t *testing.T) {
	p := newPresence(500)
	if _, changed := p.report(false, len(p.users), 0); changed {
		t.Error("an empty room reported as changed")
	}
	p.enter(protocol.User{UserID: "a"}, 4)
	for i, tt := range []struct {
		producer bool
		conns    int
		changed  bool
	}{
		{false, 1, true},
		{false, 1, false},
		{true, 1, true},
		{true, 2, true},
		{true, 2, false},
	} {
		a, changed := p.report(tt.producer, len(p.users), tt.conns)
		if changed != tt.changed || a != (audience{producer: tt.producer, viewers: 1, conns: tt.conns}) {
			t.Errorf("step %d: report = %+v %v, want changed %v", i, a, changed, tt.changed)
		}
	}
}

func TestPresencePage(t *testing.T) {
	p := newPresence(500)
	for _, u := range []protocol.User{
		{UserID: "v2", Name: "bea", Role: chatfleet.RoleViewer},
		{UserID: "v1", Name: "Bea", Role: chatfleet.RoleViewer},
		{UserID: "m", Name: "zed", Role: chatfleet.RoleModerator},
		{UserID: "v3", Name: "al", Role: chatfleet.RoleViewer},
		{UserID: "p", Name: "zoe", Role: chatfleet.RoleProducer},
	} {
		p.enter(u, 1)
	}
	ids := func(us []protocol.User) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.UserID)
		}
		return out
	}
	for _, tt := range []struct {
		page, size int
		want       []string
	}{
		{0, 50, []string{"p", "m", "v3", "v1", "v2"}}, // by rank, then name in any case, then id
		{0, 2, []string{"p", "m"}},
		{1, 2, []string{"v3", "v1"}},
		{2, 2, []string{"v2"}},
		{3, 2, nil},
	} {
		users, total := p.page(tt.page, tt.size)
		if !slices.Equal(ids(users), tt.want) || total != 5 || users == nil {
			t.Errorf("page %d of %d: %v of %d, want %v of 5 (never nil)", tt.page, tt.size, ids(users), total, tt.want)
		}
	}
	p.enter(protocol.User{UserID: "a", Name: "aaron", Role: chatfleet.RoleViewer}, 1)
	if users, total := p.page(0, 3); total != 6 || users[2].UserID != "a" {
		t.Errorf("after a join: %v of %d, want aaron third of 6", ids(users), total)
	}
}
