package master

import "testing"

// TestCoresDecide: rooms get a core per BigRoomConns connections above their
// start while the host's budget lasts, give it back at three quarters, and
// a restarted or adopted process counts what it reports.
func TestCoresDecide(t *testing.T) {
	c := newCores(1, 3, 1000, 4) // start on 1, 3 extra for the host, one per 1,000 connections, a 4-core machine
	a, b := &room{}, &room{}
	steps := []struct {
		r              *room
		conns, reports int
		procs          int
		send           bool
		used           int
	}{
		{a, 500, 1, 1, false, 0},
		{a, 1000, 1, 2, true, 1},  // earned a core
		{a, 1200, 2, 2, false, 1}, // has it
		{a, 3500, 2, 4, true, 3},  // two more: the machine's 4
		{a, 9000, 4, 4, false, 3}, // never more than the machine
		{b, 5000, 1, 1, false, 3}, // the budget is spent
		{a, 2900, 4, 4, false, 3}, // 2,900 still earns 2 extra; not below 3/4 of 3,000
		{a, 2000, 4, 3, true, 2},  // below 2,250 (3/4 of 3,000): down to what 2,000 earns
		{b, 5000, 1, 2, true, 3},  // the freed core goes to b
		{a, 700, 3, 1, true, 1},   // a shrinks to its start
		{b, 5000, 1, 4, true, 3},  // b restarted on 1: given cores again, now the whole budget
	}
	for i, s := range steps {
		procs, send := c.decide(s.r, s.conns, s.reports)
		if procs != s.procs || send != s.send || c.inUse() != s.used {
			t.Fatalf("step %d: procs %d send %v used %d, want %d %v %d", i, procs, send, c.inUse(), s.procs, s.send, s.used)
		}
	}
	c.release(b)
	if c.inUse() != 0 {
		t.Fatalf("after release: %d in use", c.inUse())
	}
	if procs, send := newCores(1, 0, 1000, 4).decide(a, 9000, 1); procs != 1 || send {
		t.Fatalf("no budget: %d %v", procs, send)
	}
}
