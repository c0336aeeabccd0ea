package api

import (
	"context"
	"sync"
	"time"
)

// readCache keeps the answers of the room API's hottest reads for a moment
// (Config.ReadCacheTTL): the lobby's listing, which every visitor asks for;
// a room's record, which every viewer joining it asks for with a token; and
// the load balancers' hosts, which both need for the rooms' URLs. A crowd
// joining one room, or reloading the lobby, then costs the store one read a
// second per container instead of one per request.
//
// An answer is fresh for ttl. Until 2×ttl it is still served while one
// caller reads it again; older, or never read, the callers of one key share
// one read. Failed reads are not kept. A write through this container
// forgets what it changed (forget); what other containers and hosts change
// shows within 2×ttl. It holds at most max keys.
type readCache[V any] struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	items map[string]*cached[V]
}

type cached[V any] struct {
	v          V
	at         time.Time     // when v was read
	done       chan struct{} // non-nil while the first read runs; closed when it ends
	err        error         // the first read's, for the callers that waited on it
	refreshing bool          // a caller is reading it again
}

// newReadCache returns a cache of at most max keys, or nil (no caching) if
// ttl is not positive.
func newReadCache[V any](ttl time.Duration, max int, now func() time.Time) *readCache[V] {
	if ttl <= 0 {
		return nil
	}
	return &readCache[V]{ttl: ttl, max: max, now: now, items: map[string]*cached[V]{}}
}

// get returns key's value, read by fetch when the cache has none to give.
func (c *readCache[V]) get(ctx context.Context, key string, fetch func(context.Context) (V, error)) (V, error) {
	if c == nil {
		return fetch(ctx)
	}
	c.mu.Lock()
	e := c.items[key]
	if e != nil && e.done != nil { // the first read runs: wait for it
		done := e.done
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
		c.mu.Lock()
		v, err := e.v, e.err
		c.mu.Unlock()
		if err != nil { // perhaps its caller's context: try on our own
			return fetch(ctx)
		}
		return v, nil
	}
	if e != nil {
		age := c.now().Sub(e.at)
		if age < c.ttl || (age < 2*c.ttl && e.refreshing) {
			v := e.v
			c.mu.Unlock()
			return v, nil
		}
		if age < 2*c.ttl {
			e.refreshing = true
			c.mu.Unlock()
			v, err := fetch(ctx)
			c.mu.Lock()
			e.refreshing = false
			if err == nil && c.items[key] == e {
				e.v, e.at = v, c.now()
			}
			c.mu.Unlock()
			return v, err
		}
	}
	// None, or too old: one read for every caller of key.
	e = &cached[V]{done: make(chan struct{})}
	c.makeRoom()
	c.items[key] = e
	c.mu.Unlock()
	v, err := fetch(ctx)
	c.mu.Lock()
	e.v, e.err, e.at = v, err, c.now()
	if c.items[key] == e && err != nil {
		delete(c.items, key)
	}
	done := e.done
	e.done = nil
	c.mu.Unlock()
	close(done)
	return v, err
}

// forget drops key, and a read of it under way is not kept.
func (c *readCache[V]) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.items, key)
	c.mu.Unlock()
}

// makeRoom drops what is too old to serve, then, if the cache is still
// full, any key not being read. c.mu is held.
func (c *readCache[V]) makeRoom() {
	if len(c.items) < c.max {
		return
	}
	now := c.now()
	for k, e := range c.items {
		if e.done == nil && now.Sub(e.at) >= 2*c.ttl {
			delete(c.items, k)
		}
	}
	for k, e := range c.items {
		if len(c.items) < c.max {
			return
		}
		if e.done == nil {
			delete(c.items, k)
		}
	}
}
