package master

import (
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// Cores for big rooms. A room process runs on RoomBaseCores (the
// GOMAXPROCS of RoomEnv, ROOM_GOMAXPROCS: 1) and gets one more core for every
// BigRoomConns connections (BIG_ROOM_CONNS), up to the machine's, while the
// host's budget lasts: RoomCores (ROOM_CORES) extra cores for all its rooms
// together, so that a few big rooms cannot take the host from the many
// small ones. A room gives a core back once its connections fall to three
// quarters of what earned it. The master decides from each stats report and
// sends the room an ipc Procs message; the room sets its GOMAXPROCS. Its
// fan-out is spread over the cores by itself: every connection's writes run
// on a goroutine of their own.
type cores struct {
	base, budget, per, max int

	mu    sync.Mutex
	used  int
	given map[*room]int // each room's cores above base, as it reported or was sent
}

func newCores(base, budget, per, max int) *cores {
	return &cores{base: base, budget: budget, per: per, max: max, given: map[*room]int{}}
}

// decide returns the cores room r should use, having conns connections and
// running on reported cores (its stats' Procs; 0: it does not say), and
// whether to tell it.
func (c *cores) decide(r *room, conns, reported int) (procs int, send bool) {
	if c.per <= 0 {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if reported > 0 && reported != c.base+c.given[r] {
		// A process started again or adopted: what it runs on is what it
		// has (it may have been given more by the master before).
		c.set(r, reported-c.base)
	}
	have := c.base + c.given[r]
	want := min(c.base+conns/c.per, max(c.max, c.base))
	switch {
	case want > have:
		grant := min(want-have, c.budget-c.used)
		if grant <= 0 {
			return have, false
		}
		c.set(r, have+grant-c.base)
		return have + grant, true
	case want < have && 4*conns < 3*(have-c.base)*c.per:
		c.set(r, want-c.base)
		return want, true
	}
	return have, false
}

// set records that r has extra cores above base.
func (c *cores) set(r *room, extra int) {
	extra = max(extra, 0)
	c.used += extra - c.given[r]
	if extra == 0 {
		delete(c.given, r)
		return
	}
	c.given[r] = extra
}

// release returns the cores of a room whose process is gone for good.
func (c *cores) release(r *room) {
	c.mu.Lock()
	c.set(r, 0)
	c.mu.Unlock()
}

// inUse reports the extra cores given out, for tests and the host listing.
func (c *cores) inUse() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// adjustCores tells room r the cores it may use now, if that changed; rooms
// of protocol 2 and older do not know the message and keep their own.
func (r *room) adjustCores(conns, reported int) {
	r.mu.Lock()
	proto := r.proto
	r.mu.Unlock()
	if proto < 3 {
		return
	}
	if procs, send := r.m.cores.decide(r, conns, reported); send {
		if err := r.send(ipc.Msg{Type: ipc.TypeProcs, Procs: procs}); err == nil {
			r.log.Info("cores for the room", "procs", procs, "conns", conns)
		}
	}
}

// roomBaseCores is the GOMAXPROCS rooms start with: RoomEnv's, or the Go
// runtime's default (the machine's cores) without one.
func roomBaseCores(env []string) int {
	n := runtime.NumCPU()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
			if p, err := strconv.Atoi(v); err == nil && p > 0 {
				n = p
			}
		}
	}
	return n
}
