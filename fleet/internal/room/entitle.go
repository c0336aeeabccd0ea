package room

import (
	"context"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/entitle"
	"github.com/chatfleet/chatfleet/protocol"
)

// Checker answers the entitlement checks of a paid room (package entitle's
// Policy, which applies the hook's failure policy). The room calls it from
// handshake goroutines and from its re-check goroutine, never from the hub.
// An error means the hook cannot be relied on: the room fails closed.
type Checker interface {
	Check(ctx context.Context, checks []entitle.Check) ([]entitle.Result, error)
}

// entitleBatch bounds the checks of one hook request; a room with more
// viewers sends several requests per interval.
const entitleBatch = 1000

// Texts viewers get when they are refused or disconnected.
const (
	textNotEntitled = "not entitled"
	textUnavailable = "entitlement service unavailable"
)

// entitlements is a paid room's entitlement state: allows the hook gave with
// an end (until), which spare the user further checks before then. Safe for
// concurrent use.
type entitlements struct {
	every time.Duration

	mu    sync.Mutex
	until map[string]time.Time // user id -> end of the allow
}

func newEntitlements(cfg Config) *entitlements {
	if cfg.Entitle == nil {
		return nil
	}
	every := cfg.EntitleEvery
	if every <= 0 {
		every = time.Minute
	}
	return &entitlements{every: every, until: map[string]time.Time{}}
}

func (e *entitlements) allowedAt(user string, t time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.until[user]
	return ok && u.After(t)
}

func (e *entitlements) remember(r entitle.Result, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.Decision == entitle.Allow && !r.FailOpen && r.Until.After(now) {
		e.until[r.UserID] = r.Until
	} else {
		delete(e.until, r.UserID)
	}
}

// due returns the checks whose users have no allow lasting past next, and
// forgets the allows of users no longer present.
func (e *entitlements) due(checks []entitle.Check, next time.Time) []entitle.Check {
	e.mu.Lock()
	defer e.mu.Unlock()
	present := make(map[string]bool, len(checks))
	var out []entitle.Check
	for _, c := range checks {
		present[c.UserID] = true
		if u, ok := e.until[c.UserID]; ok && u.After(next) {
			continue
		}
		out = append(out, c)
	}
	for id := range e.until {
		if !present[id] {
			delete(e.until, id)
		}
	}
	return out
}

// entitled checks, before a viewer's connection is upgraded, that the hook
// lets the user in: EFORBIDDEN ("not entitled: reason") on a deny,
// EUNAVAILABLE when the hook fails past its grace. Producers, moderators and
// rooms without a Checker are not checked.
func (r *Room) entitled(ctx context.Context, u protocol.User) error {
	if r.ent == nil || u.Role != chatfleet.RoleViewer {
		return nil
	}
	now := r.now()
	if r.ent.allowedAt(u.UserID, now) {
		return nil
	}
	res, err := r.cfg.Entitle.Check(ctx, []entitle.Check{{UserID: u.UserID, Room: r.name, Role: u.Role}})
	if err == nil && (len(res) != 1 || res[0].UserID != u.UserID) {
		err = chatfleet.Errorf(chatfleet.EINTERNAL, "entitlement checker answered %d results for 1 check", len(res))
	}
	if err != nil {
		r.warn("entitlement check failed: paid join refused", "user", u.UserID, "err", err)
		return chatfleet.Errorf(chatfleet.EUNAVAILABLE, "%s: try again later", textUnavailable)
	}
	if res[0].Decision != entitle.Allow {
		return chatfleet.Errorf(chatfleet.EFORBIDDEN, "%s", denyText(res[0].Reason))
	}
	r.ent.remember(res[0], now)
	return nil
}

func denyText(reason string) string {
	if reason == "" {
		return textNotEntitled
	}
	return protocol.Truncate(textNotEntitled+": "+reason, protocol.MaxReasonLen)
}

// entitleLoop re-checks the room's viewers every interval, in batches, until
// the room ends. It runs on its own goroutine: the hook's latency never
// reaches the hub.
func (r *Room) entitleLoop(ctx context.Context) {
	t := time.NewTicker(r.ent.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.ending:
			return
		case <-t.C:
		}
		r.recheck(ctx)
	}
}

// denial is a viewer to disconnect and what to tell it.
type denial struct{ user, text string }

// recheck asks the hook about every viewer whose allow does not outlast the
// next interval and disconnects those denied; when the hook fails past its
// grace, every viewer asked about is disconnected.
func (r *Room) recheck(ctx context.Context) {
	ch := make(chan []entitle.Check, 1)
	r.do(func() { ch <- r.h.viewerChecks() })
	var checks []entitle.Check
	select {
	case checks = <-ch:
	case <-r.ending:
		return
	}
	now := r.now()
	checks = r.ent.due(checks, now.Add(r.ent.every))
	for len(checks) > 0 {
		n := min(len(checks), entitleBatch)
		batch := checks[:n]
		checks = checks[n:]
		res, err := r.cfg.Entitle.Check(ctx, batch)
		var out []denial
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("entitlement re-check failed: disconnecting viewers (fail closed)", "viewers", len(batch), "err", err)
			for _, c := range batch {
				out = append(out, denial{c.UserID, textUnavailable})
			}
		} else {
			for _, x := range res {
				r.ent.remember(x, now)
				if x.Decision != entitle.Allow {
					out = append(out, denial{x.UserID, denyText(x.Reason)})
				}
			}
		}
		if len(out) > 0 {
			r.do(func() { r.h.revoke(out) })
		}
	}
}

// viewerChecks lists the room's viewers (users whose highest role is viewer)
// for the hook. Hub goroutine only.
func (h *hub) viewerChecks() []entitle.Check {
	var out []entitle.Check
	for id, u := range h.pres.users {
		if u.info.Role == chatfleet.RoleViewer {
			out = append(out, entitle.Check{UserID: id, Room: h.r.name, Role: u.info.Role})
		}
	}
	return out
}

// revoke disconnects the viewers of ds: a private system message of kind
// "entitlement" with the text, then close 4005. Users who left or gained a
// higher role meanwhile are spared. Hub goroutine only.
func (h *hub) revoke(ds []denial) {
	for _, d := range ds {
		if u := h.pres.users[d.user]; u != nil && u.info.Role == chatfleet.RoleViewer {
			h.r.warn("viewer not entitled: disconnected", "user", d.user, "reason", d.text)
			h.disconnect(d.user, protocol.KindEntitlement, d.text, protocol.CloseNotEntitled)
		}
	}
}
