package bus

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Audience bounds: at most audienceMaxEdges edges are counted; an edge's
// report counts for audienceTTL.
const (
	audienceMaxEdges = 1024
	audienceTTL      = 3 * AudienceEvery
	maxEdgeIDLen     = 256
	maxEdgeAudience  = 10_000_000 // per edge: the sum of 1024 cannot overflow
)

// Audience is what an origin knows of its edges' audience: the last report
// of each edge. It is safe for concurrent use.
type Audience struct {
	mu      sync.Mutex
	edges   map[string]edgeEntry
	ignored int64
}

type edgeEntry struct {
	rep EdgeReport
	at  time.Time
}

// NewAudience returns an empty Audience.
func NewAudience() *Audience { return &Audience{edges: make(map[string]edgeEntry)} }

// Add keeps rep, received at now, as its edge's last report. A report
// without an edge id (or one longer than 256 bytes) or with numbers out of
// 0..10,000,000 is ignored, as is a new edge
// when audienceMaxEdges edges are counted already (Ignored counts both).
func (a *Audience) Add(rep EdgeReport, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rep.Edge == "" || len(rep.Edge) > maxEdgeIDLen || rep.Viewers < 0 || rep.Conns < 0 ||
		rep.Viewers > maxEdgeAudience || rep.Conns > maxEdgeAudience {
		a.ignored++
		return
	}
	if _, ok := a.edges[rep.Edge]; !ok && len(a.edges) >= audienceMaxEdges {
		a.prune(now)
		if len(a.edges) >= audienceMaxEdges {
			a.ignored++
			return
		}
	}
	a.edges[rep.Edge] = edgeEntry{rep: rep, at: now}
}

// Total sums the viewers of the edges that reported within audienceTTL
// before now, and counts those edges; it forgets the others.
func (a *Audience) Total(now time.Time) (viewers, edges int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prune(now)
	for _, e := range a.edges {
		viewers += e.rep.Viewers
		edges++
	}
	return viewers, edges
}

// Ignored is how many reports Add ignored.
func (a *Audience) Ignored() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ignored
}

func (a *Audience) prune(now time.Time) {
	for id, e := range a.edges {
		if now.Sub(e.at) > audienceTTL {
			delete(a.edges, id)
		}
	}
}

// SubscribeAudience adds the reports of room's edges to a as they come (a
// bad payload is ignored and counted by a.Ignored). stop unsubscribes.
func (c *Conn) SubscribeAudience(room string, a *Audience) (stop func(), err error) {
	sub, err := c.nc.Subscribe(AudienceSubject(room), func(m *nats.Msg) {
		var rep EdgeReport
		if len(m.Data) > MaxPayload || json.Unmarshal(m.Data, &rep) != nil {
			a.mu.Lock()
			a.ignored++
			a.mu.Unlock()
			return
		}
		a.Add(rep, time.Now())
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe audience %s: %w", room, err)
	}
	c.flush()
	return func() { sub.Unsubscribe() }, nil
}

// PublishCount sends the room's count to its edges.
func (c *Conn) PublishCount(room string, n Count) error {
	return c.publishJSON(CountSubject(room), n)
}

// ReportAudience sends an edge's audience to the room's origin.
func (c *Conn) ReportAudience(room string, rep EdgeReport) error {
	return c.publishJSON(AudienceSubject(room), rep)
}

// SubscribeCount calls f with each count the room's origin sends, on NATS's
// goroutine (f must not block); a bad payload is ignored. stop unsubscribes.
func (c *Conn) SubscribeCount(room string, f func(Count)) (stop func(), err error) {
	sub, err := c.nc.Subscribe(CountSubject(room), func(m *nats.Msg) {
		var n Count
		if len(m.Data) > MaxPayload || json.Unmarshal(m.Data, &n) != nil {
			return
		}
		f(n)
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe count %s: %w", room, err)
	}
	c.flush()
	return func() { sub.Unsubscribe() }, nil
}

func (c *Conn) publishJSON(subject string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bus: publish %s: %w", subject, err)
	}
	if err := c.nc.Publish(subject, b); err != nil {
		return fmt.Errorf("bus: publish %s: %w", subject, err)
	}
	return nil
}

// flush waits (at most a second) until the server has what was sent, so
// that a subscription made is known to it when its maker returns. A
// connection down holds it until the reconnect: nothing to wait for.
func (c *Conn) flush() { _ = c.nc.FlushTimeout(time.Second) }
