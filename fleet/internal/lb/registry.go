package lb

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
)

// CPUWeight is what one busy core adds to a host's score: a host whose
// processes keep 4 cores busy scores 0.2 above an idle one with the same rooms
// and connections. Heartbeats carry no core count, so CPU cannot be measured
// against a capacity; it only tips the choice between hosts of similar
// utilisation.
const CPUWeight = 0.05

// Score is how full host h is, given pending rooms picked for it that no
// heartbeat has reported yet; lower is emptier. It is
//
//	max((rooms+pending)/maxRooms, conns/maxConns) + CPUWeight*cpu
//
// so a host is as full as its scarcest resource. h must have passed
// ValidateHost (capacities at least 1).
func Score(h chatfleet.Host, pending int) float64 {
	rooms := float64(h.Load.Rooms+pending) / float64(h.Capacity.MaxRooms)
	conns := float64(h.Load.Conns) / float64(h.Capacity.MaxConns)
	return max(rooms, conns) + CPUWeight*h.Load.CPU
}

// Full reports whether h can take no room more: its rooms, counting pending
// ones, or its connections have reached capacity.
func Full(h chatfleet.Host, pending int) bool {
	return h.Load.Rooms+pending >= h.Capacity.MaxRooms || h.Load.Conns >= h.Capacity.MaxConns
}

// registry is the soft state: every host as its last heartbeat reported it.
// Its methods are safe for concurrent use; one mutex serialises them, which is
// what makes a pick and the pending room it adds one step.
type registry struct {
	downAfter   time.Duration
	forgetAfter time.Duration
	now         func() time.Time
	intn        func(n int) int // random integer in [0, n)
	log         *slog.Logger

	mu    sync.Mutex
	hosts map[string]*entry
}

// entry is one host in the registry.
type entry struct {
	host    chatfleet.Host // as last reported; LastSeen is the registry's clock
	pending []time.Time    // picks no heartbeat has reported yet, oldest first
	down    bool           // the last sweep found it down (to log the change once)
}

// heartbeat stores h (already validated) as seen now and returns it with its
// state and LastSeen; created is true when the host was not known.
//
// Rooms the host reports beyond its previous heartbeat retire as many pending
// picks, oldest first: the rooms those picks were for now show in the load.
func (r *registry) heartbeat(h chatfleet.Host) (stored chatfleet.Host, created bool) {
	now := r.now()
	h.LastSeen = now
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)
	e, ok := r.hosts[h.ID]
	if !ok {
		e = &entry{}
		r.hosts[h.ID] = e
		r.log.Info("host registered", "host", h.ID, "apiUrl", h.APIURL, "state", h.State)
	} else {
		if grown := h.Load.Rooms - e.host.Load.Rooms; grown > 0 {
			e.pending = e.pending[min(grown, len(e.pending)):]
		}
		if e.down {
			r.log.Info("host back up", "host", h.ID)
		} else if e.host.State != h.State {
			r.log.Info("host state changed", "host", h.ID, "state", h.State)
		}
	}
	e.host, e.down = h, false
	return e.host, !ok
}

// remove forgets host id; it reports whether the host was known.
func (r *registry) remove(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.hosts[id]; !ok {
		return false
	}
	delete(r.hosts, id)
	r.log.Info("host deregistered", "host", id)
	return true
}

// host returns host id with its state, or false if it is not known.
func (r *registry) host(id string) (chatfleet.Host, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(r.now())
	e, ok := r.hosts[id]
	if !ok {
		return chatfleet.Host{}, false
	}
	return e.view(), true
}

// list returns every known host with its state, ordered by id.
func (r *registry) list() []chatfleet.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(r.now())
	hosts := make([]chatfleet.Host, 0, len(r.hosts))
	for _, e := range r.hosts {
		hosts = append(hosts, e.view())
	}
	slices.SortFunc(hosts, func(a, b chatfleet.Host) int { return strings.Compare(a.ID, b.ID) })
	return hosts
}

// counts returns how many hosts are in each state and the pending rooms of all.
func (r *registry) counts() (states map[chatfleet.HostState]int, pending int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(r.now())
	states = map[chatfleet.HostState]int{chatfleet.HostAccepting: 0, chatfleet.HostDraining: 0, chatfleet.HostDown: 0}
	for _, e := range r.hosts {
		states[e.view().State]++
		pending += len(e.pending)
	}
	return states, pending
}

// pick chooses the host for a new room and counts the room as pending on it.
//
// Eligible hosts are up, accepting, not full and not excluded; if req names a
// region and some eligible host is in it, only those are eligible. Of two
// eligible hosts drawn at random the one with the lower Score wins (the power
// of two choices): close to the least loaded host, without every concurrent
// pick of every load balancer rushing to the same one. It returns EUNAVAILABLE
// when no host is eligible.
func (r *registry) pick(req chatfleet.PickRequest) (chatfleet.Host, error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)

	exclude := make(map[string]bool, len(req.Exclude))
	for _, id := range req.Exclude {
		exclude[id] = true
	}
	var all, inRegion []*entry
	var down, draining, full, excluded int
	for id, e := range r.hosts {
		switch {
		case exclude[id]:
			excluded++
		case e.down:
			down++
		case e.host.State != chatfleet.HostAccepting:
			draining++
		case Full(e.host, len(e.pending)):
			full++
		default:
			all = append(all, e)
			if req.Region != "" && e.host.Region == req.Region {
				inRegion = append(inRegion, e)
			}
		}
	}
	cands := all
	if len(inRegion) > 0 {
		cands = inRegion
	}
	if len(cands) == 0 {
		return chatfleet.Host{}, chatfleet.Errorf(chatfleet.EUNAVAILABLE,
			"no host can take a room (%d known: %d down, %d draining, %d full, %d excluded)",
			len(r.hosts), down, draining, full, excluded)
	}
	// Map order is random but not uniformly so; sort to make the draw the
	// only source of chance.
	slices.SortFunc(cands, func(a, b *entry) int { return strings.Compare(a.host.ID, b.host.ID) })
	chosen := cands[0]
	if n := len(cands); n > 1 {
		i, j := r.intn(n), r.intn(n-1)
		if j >= i {
			j++
		}
		a, b := cands[i], cands[j]
		chosen = a
		if Score(b.host, len(b.pending)) < Score(a.host, len(a.pending)) {
			chosen = b
		}
	}
	chosen.pending = append(chosen.pending, now)
	return chosen.view(), nil
}

// sweep marks hosts down that missed heartbeats for downAfter, forgets those
// down for forgetAfter, and drops pending picks older than downAfter (their
// room never showed up). The caller holds r.mu.
func (r *registry) sweep(now time.Time) {
	for id, e := range r.hosts {
		age := now.Sub(e.host.LastSeen)
		if age >= r.downAfter+r.forgetAfter {
			delete(r.hosts, id)
			r.log.Info("host forgotten", "host", id, "lastSeen", e.host.LastSeen)
			continue
		}
		if age >= r.downAfter && !e.down {
			e.down = true
			r.log.Warn("host down: missed heartbeats", "host", id, "lastSeen", e.host.LastSeen)
		}
		stale := 0
		for stale < len(e.pending) && now.Sub(e.pending[stale]) >= r.downAfter {
			stale++
		}
		e.pending = e.pending[stale:]
	}
}

// view returns the host as listed: its reported fields, HostDown if it
// missed its heartbeats.
func (e *entry) view() chatfleet.Host {
	h := e.host
	if e.down {
		h.State = chatfleet.HostDown
	}
	return h
}
