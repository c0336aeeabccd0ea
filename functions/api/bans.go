package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
)

// Limits of ban administration.
const (
	defaultBanPage = 100
	maxBanPage     = 1000
	maxBanMinutes  = 10 * 365 * 24 * 60 // ten years; 0 is forever
	maxBansPerPush = 1000               // bans in one POST /api/v1/bans to a host, as hosts take them
	maxCursorLen   = 128
)

// banRequest is the body of POST /admin/v1/bans.
type banRequest struct {
	UserID  string `json:"userId"`
	Reason  string `json:"reason"`
	Minutes int    `json:"minutes"` // 0: forever
}

// pushResult says how far a change sent to hosts got: the hosts that took
// it, the rooms they passed it to, the hosts that failed, and the hosts
// the load balancers list as down, which read the bans from the store when
// they are back (at their next refresh).
type pushResult struct {
	Hosts  int          `json:"hosts"`
	Rooms  int          `json:"rooms"`
	Failed []hostFailed `json:"failed"`
	Down   []string     `json:"down"`
}

// banAnswer is the answer to a ban.
type banAnswer struct {
	Ban chatfleet.Ban `json:"ban"`
	pushResult
}

// unbanAnswer is the answer to a removal.
type unbanAnswer struct {
	Removed int             `json:"removed"`
	Bans    []chatfleet.Ban `json:"bans"`
	pushResult
}

// addBan serves POST /admin/v1/bans: a fleet ban of userId, stored, then
// pushed to every host that is not down, which applies it to all its rooms.
// It is refused (409 conflict) once the fleet holds MaxFleetBans active bans.
func (a *adminAPI) addBan(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req banRequest
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := req.validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.cfg.Now()
	sctx, cancel := storeCtx(ctx)
	n, err := a.store.CountBans(sctx, "", now)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	if n >= a.cfg.MaxFleetBans {
		a.fail(w, r, chatfleet.Errorf(chatfleet.ECONFLICT,
			"the fleet holds %d bans, its limit (MAX_FLEET_BANS): remove some before adding more", n))
		return
	}
	ban := chatfleet.Ban{UserID: req.UserID, By: auditActor, Reason: req.Reason, CreatedAt: now}
	if req.Minutes > 0 {
		ban.Until = now.Add(time.Duration(req.Minutes) * time.Minute)
	}
	sctx, cancel = storeCtx(ctx)
	err = a.store.AddBan(sctx, &ban)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	res := a.pushFleet(ctx, hostapi.BanChanges{Add: []chatfleet.Ban{ban}})
	a.record(ctx, "ban.add", ban.UserID, fmt.Sprintf("fleet ban %s, %s: %s (%s)", ban.ID, banLength(req.Minutes), req.Reason, res))
	httpx.WriteData(w, http.StatusCreated, banAnswer{Ban: ban, pushResult: res})
}

func (b *banRequest) validate() error {
	if err := checkUserID("userId", b.UserID); err != nil && chatfleet.ErrorCode(err) == chatfleet.EINVALID {
		return err
	}
	if len(b.Reason) > maxReasonLen {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: at most %d bytes", "reason", maxReasonLen)
	}
	if b.Minutes < 0 || b.Minutes > maxBanMinutes {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want 0 (forever) to %d", "minutes", maxBanMinutes)
	}
	return nil
}

func banLength(minutes int) string {
	if minutes == 0 {
		return "forever"
	}
	return fmt.Sprintf("%d minutes", minutes)
}

// banPage is the answer of the ban listing.
type banPage struct {
	Bans       []chatfleet.Ban `json:"bans"`
	NextCursor string          `json:"nextCursor"`
}

// listBans serves GET /admin/v1/bans?limit=&cursor=&room=: the active fleet
// bans, or room NAME's bans, in the order of their ids, a page at a time.
// cursor is the last id of the previous page; nextCursor is "" after the last.
func (a *adminAPI) listBans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := chatfleet.BanFilter{Room: q.Get("room"), Now: a.cfg.Now(), After: q.Get("cursor"), Limit: defaultBanPage}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxBanPage {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "limit must be a whole number from 1 to %d", maxBanPage))
			return
		}
		f.Limit = n
	}
	if q.Has("room") {
		if err := chatfleet.ValidateRoomName(f.Room); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	if len(f.After) > maxCursorLen {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "invalid cursor"))
		return
	}
	ctx, cancel := storeCtx(r.Context())
	bans, err := a.store.Bans(ctx, f)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(r.Context(), "the store", err))
		return
	}
	page := banPage{Bans: bans}
	if page.Bans == nil {
		page.Bans = []chatfleet.Ban{}
	}
	if len(bans) == f.Limit {
		page.NextCursor = bans[len(bans)-1].ID
	}
	httpx.WriteData(w, http.StatusOK, page)
}

// removeFleetBans serves DELETE /admin/v1/bans/{userId}: every fleet ban of
// the user is deleted from the store, then every host that is not down is
// told to lift them. 404 if the user has no fleet ban.
func (a *adminAPI) removeFleetBans(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := r.PathValue("userId")
	if err := checkPathUser(user); err != nil {
		a.fail(w, r, err)
		return
	}
	sctx, cancel := storeCtx(ctx)
	removed, err := a.store.RemoveUserBans(sctx, "", user)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	res := a.pushFleet(ctx, hostapi.BanChanges{Remove: removed})
	a.record(ctx, "ban.remove", user, fmt.Sprintf("%d fleet bans removed (%s)", len(removed), res))
	httpx.WriteData(w, http.StatusOK, unbanAnswer{Removed: len(removed), Bans: removed, pushResult: res})
}

// removeRoomBans serves DELETE /admin/v1/rooms/{name}/bans/{userId}: the
// room's bans of the user are deleted from the store, then the room's host,
// if the room is open, is told to lift them. 404 if there were none.
func (a *adminAPI) removeRoomBans(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name, user := r.PathValue("name"), r.PathValue("userId")
	if err := chatfleet.ValidateRoomName(name); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := checkPathUser(user); err != nil {
		a.fail(w, r, err)
		return
	}
	sctx, cancel := storeCtx(ctx)
	removed, err := a.store.RemoveUserBans(sctx, name, user)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	res := pushResult{Failed: []hostFailed{}, Down: []string{}}
	room, err := a.openRoom(r)
	switch {
	case chatfleet.ErrorCode(err) == chatfleet.ENOTFOUND:
		// No room runs under the name: nothing to tell.
	case err != nil:
		res.Failed = append(res.Failed, hostFailed{"", "the room's host could not be found: " + chatfleet.ErrorMessage(err)})
	default:
		res, err = a.push(ctx, func(h chatfleet.Host) bool { return h.ID == room.HostID }, hostapi.BanChanges{Remove: removed})
		if err != nil {
			res.Failed = append(res.Failed, hostFailed{room.HostID, chatfleet.ErrorMessage(err)})
		}
	}
	a.record(ctx, "roomban.remove", user, fmt.Sprintf("room %s: %d bans removed (%s)", name, len(removed), res))
	httpx.WriteData(w, http.StatusOK, unbanAnswer{Removed: len(removed), Bans: removed, pushResult: res})
}

// checkPathUser checks a user id taken from the path.
func checkPathUser(user string) error {
	if err := checkUserID("userId", user); err != nil && chatfleet.ErrorCode(err) == chatfleet.EINVALID {
		return err
	}
	return nil
}

// pushFleet sends change to every host the load balancers know that is not
// down. The change is stored already: if the load balancers cannot list the
// hosts, the answer says so and the hosts read it at their next refresh.
func (a *adminAPI) pushFleet(ctx context.Context, change hostapi.BanChanges) pushResult {
	res, err := a.push(ctx, func(chatfleet.Host) bool { return true }, change)
	if err != nil {
		a.log.Warn("bans stored but not pushed: no host list", "err", err)
		res.Failed = append(res.Failed, hostFailed{"", "the hosts could not be listed (" + chatfleet.ErrorMessage(err) +
			"); they read the change from the store at their next refresh"})
	}
	return res
}

// push sends change, in frames of at most maxBansPerPush bans, to the hosts
// that match and are not down, globalConcurrency at a time; the error is
// the load balancers'.
func (a *adminAPI) push(ctx context.Context, match func(chatfleet.Host) bool, change hostapi.BanChanges) (pushResult, error) {
	res := pushResult{Failed: []hostFailed{}, Down: []string{}}
	hosts, err := a.cfg.Picker.Hosts(ctx)
	if err != nil {
		return res, timedOut(ctx, "the load balancers", err)
	}
	var targets []chatfleet.Host
	for _, h := range hosts {
		switch {
		case !match(h):
		case h.State == chatfleet.HostDown:
			res.Down = append(res.Down, h.ID)
		default:
			targets = append(targets, h)
		}
	}
	bodies := chunkBans(change)
	took, rooms, failed := a.callHosts(targets, "bans", func(h chatfleet.Host) (int, error) { return a.pushTo(ctx, h, bodies) })
	res.Hosts, res.Rooms, res.Failed = took, rooms, append(res.Failed, failed...)
	slices.SortFunc(res.Failed, func(x, y hostFailed) int { return strings.Compare(x.HostID, y.HostID) })
	slices.Sort(res.Down)
	return res, nil
}

// pushTo posts bodies to h's admin port in order and returns the rooms the
// last one reached.
func (a *adminAPI) pushTo(ctx context.Context, h chatfleet.Host, bodies []hostapi.BanChanges) (int, error) {
	rooms := 0
	for _, b := range bodies {
		err := a.fleet.admin(ctx, h, func(ctx context.Context, hc *hostapi.Client) (err error) {
			rooms, err = hc.ApplyBans(ctx, b)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	return rooms, nil
}

// chunkBans splits change into bodies of at most maxBansPerPush bans each.
func chunkBans(change hostapi.BanChanges) []hostapi.BanChanges {
	var out []hostapi.BanChanges
	for b := range slices.Chunk(change.Add, maxBansPerPush) {
		out = append(out, hostapi.BanChanges{Add: b})
	}
	for b := range slices.Chunk(change.Remove, maxBansPerPush) {
		out = append(out, hostapi.BanChanges{Remove: b})
	}
	return out
}

// callHosts runs call on every host of targets, globalConcurrency at a time,
// and tallies the answers: the hosts that took it, the rooms they say it
// reached, and the hosts that failed (logged as what, sorted by id).
func (a *adminAPI) callHosts(targets []chatfleet.Host, what string, call func(chatfleet.Host) (rooms int, err error)) (hosts, rooms int, failed []hostFailed) {
	failed = []hostFailed{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, globalConcurrency)
	for _, h := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			n, err := call(h)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				a.log.Warn(what+" to host failed", "host", h.ID, "err", err)
				failed = append(failed, hostFailed{h.ID, chatfleet.ErrorMessage(hostFailure(err))})
				return
			}
			hosts++
			rooms += n
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(x, y hostFailed) int { return strings.Compare(x.HostID, y.HostID) })
	return hosts, rooms, failed
}

func (p pushResult) String() string {
	return fmt.Sprintf("%d hosts, %d rooms, %d failed, %d down", p.Hosts, p.Rooms, len(p.Failed), len(p.Down))
}
