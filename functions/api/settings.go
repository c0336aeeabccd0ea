package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
)

// Limits of the fleet's settings, as the hosts take them (fleet/internal/master/cache.go).
const (
	maxBlockedWords   = 5000
	maxBlockedWordLen = 100     // bytes
	maxWordsBody      = 1 << 20 // 5,000 words of 100 bytes, with quotes and commas
	maxHistorySize    = 10000   // as a room's own historySize at create
	maxDefaultMsgLen  = 10000   // characters
	maxSlowMode       = 3600    // seconds, as the rooms' slow_mode command
	minIdleTimeout    = 10      // seconds: running rooms follow it at once
	maxIdleTimeout    = 86400   // seconds
	maxAuditDetail    = 1000    // bytes of an audit entry's detail
)

// wordsBody is the body and answer of the blocked words.
type wordsBody struct {
	Words []string `json:"words"`
}

// refreshResult says which hosts reloaded a settings change: those that
// did, and those that failed or are down (they read it at their next
// refresh, CACHE_EVERY).
type refreshResult struct {
	Hosts  int          `json:"hosts"`
	Failed []hostFailed `json:"failed"`
}

// wordsAnswer is the answer to PUT /admin/v1/blocked-words.
type wordsAnswer struct {
	Words []string `json:"words"`
	refreshResult
}

// defaultsAnswer is the answer to PUT /admin/v1/room-defaults.
type defaultsAnswer struct {
	Defaults chatfleet.RoomSettings `json:"defaults"`
	refreshResult
}

// blockedWords serves GET /admin/v1/blocked-words.
func (a *adminAPI) blockedWords(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := storeCtx(r.Context())
	words, err := a.store.BlockedWords(ctx)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(r.Context(), "the store", err))
		return
	}
	if words == nil {
		words = []string{}
	}
	httpx.WriteData(w, http.StatusOK, wordsBody{words})
}

// setBlockedWords serves PUT /admin/v1/blocked-words {"words": [...]}: the
// list replaces the stored one, then every host not down reloads it and
// pushes it to its rooms, which mask the words in chat from then on.
func (a *adminAPI) setBlockedWords(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req struct {
		Words *[]string `json:"words"`
	}
	if err := httpx.DecodeJSON(w, r, maxWordsBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Words == nil {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "field %q is required (an empty list clears it)", "words"))
		return
	}
	words := *req.Words
	if err := checkWords(words); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.storeUp(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	old, err := replaceStored(ctx, a.store.BlockedWords, func(c context.Context) error { return a.store.SetBlockedWords(c, words) })
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	res := a.refreshFleet(ctx)
	a.record(ctx, "blockedwords.set", "*", wordsDetail(old, words, res))
	httpx.WriteData(w, http.StatusOK, wordsAnswer{Words: words, refreshResult: res})
}

// checkWords checks a blocked-words list: at most maxBlockedWords words of
// 1 to maxBlockedWordLen bytes, each made of letters and digits only (rooms
// mask whole words, runs of letters and digits: anything else would never
// match), no two the same once lower-cased.
func checkWords(words []string) error {
	if len(words) > maxBlockedWords {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: at most %d words", "words", maxBlockedWords)
	}
	seen := make(map[string]int, len(words))
	for i, w := range words {
		if len(w) == 0 || len(w) > maxBlockedWordLen {
			return chatfleet.Errorf(chatfleet.EINVALID, "words[%d]: want 1 to %d bytes", i, maxBlockedWordLen)
		}
		if !utf8.ValidString(w) || strings.IndexFunc(w, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) >= 0 {
			return chatfleet.Errorf(chatfleet.EINVALID, "words[%d]: a word is letters and digits only (rooms mask whole words)", i)
		}
		low := strings.ToLower(w)
		if j, dup := seen[low]; dup {
			return chatfleet.Errorf(chatfleet.EINVALID, "words[%d] repeats words[%d] (case is ignored)", i, j)
		}
		seen[low] = i
	}
	return nil
}

// wordsDetail is the audit detail of a blocked-words change: the counts,
// the words added and removed (cut at maxAuditDetail bytes) and how far the
// change got.
func wordsDetail(old, words []string, res refreshResult) string {
	added, removed := diff(old, words), diff(words, old)
	d := fmt.Sprintf("%d words (was %d), %s; added %q; removed %q", len(words), len(old), res, added, removed)
	if len(d) > maxAuditDetail {
		d = strings.ToValidUTF8(d[:maxAuditDetail], "") + "…"
	}
	return d
}

// diff returns the words of b not in a.
func diff(a, b []string) []string {
	out := []string{}
	for _, w := range b {
		if !slices.Contains(a, w) {
			out = append(out, w)
		}
	}
	return out
}

// roomDefaults serves GET /admin/v1/room-defaults.
func (a *adminAPI) roomDefaults(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := storeCtx(r.Context())
	rs, err := a.store.RoomDefaults(ctx)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(r.Context(), "the store", err))
		return
	}
	httpx.WriteData(w, http.StatusOK, rs)
}

// defaultsRequest is the body of PUT /admin/v1/room-defaults: every field
// is required.
type defaultsRequest struct {
	HistorySize     *int  `json:"historySize"`
	MaxMessageLen   *int  `json:"maxMessageLen"`
	SlowModeSeconds *int  `json:"slowModeSeconds"`
	AllowAnonymous  *bool `json:"allowAnonymous"`
	IdleTimeoutSec  *int  `json:"idleTimeoutSec"`
}

// settings checks d and returns its settings.
func (d *defaultsRequest) settings() (chatfleet.RoomSettings, error) {
	ints := []struct {
		name     string
		v        *int
		min, max int
	}{
		{"historySize", d.HistorySize, 1, maxHistorySize},
		{"maxMessageLen", d.MaxMessageLen, 1, maxDefaultMsgLen},
		{"slowModeSeconds", d.SlowModeSeconds, 0, maxSlowMode},
		{"idleTimeoutSec", d.IdleTimeoutSec, minIdleTimeout, maxIdleTimeout},
	}
	for _, f := range ints {
		if f.v == nil || *f.v < f.min || *f.v > f.max {
			return chatfleet.RoomSettings{}, chatfleet.Errorf(chatfleet.EINVALID, "field %q: required, %d to %d", f.name, f.min, f.max)
		}
	}
	if d.AllowAnonymous == nil {
		return chatfleet.RoomSettings{}, chatfleet.Errorf(chatfleet.EINVALID, "field %q: required, true or false", "allowAnonymous")
	}
	return chatfleet.RoomSettings{HistorySize: *d.HistorySize, MaxMessageLen: *d.MaxMessageLen,
		SlowModeSeconds: *d.SlowModeSeconds, AllowAnonymous: *d.AllowAnonymous, IdleTimeoutSec: *d.IdleTimeoutSec}, nil
}

// setRoomDefaults serves PUT /admin/v1/room-defaults: the settings replace
// the stored defaults, then every host not down reloads them and pushes them
// to its rooms. Running rooms follow maxMessageLen and idleTimeoutSec at
// once; historySize, slowModeSeconds and allowAnonymous apply to rooms
// started afterwards.
func (a *adminAPI) setRoomDefaults(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req defaultsRequest
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	rs, err := req.settings()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.storeUp(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	old, err := replaceStored(ctx, a.store.RoomDefaults, func(c context.Context) error { return a.store.SetRoomDefaults(c, rs) })
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	res := a.refreshFleet(ctx)
	was, _ := json.Marshal(old)
	now, _ := json.Marshal(rs)
	a.record(ctx, "defaults.set", "*", fmt.Sprintf("%s (was %s), %s", now, was, res))
	httpx.WriteData(w, http.StatusOK, defaultsAnswer{Defaults: rs, refreshResult: res})
}

// refreshFleet tells every host the load balancers know that is not down to
// reload its cache from the store (POST /api/v1/cache/refresh on its admin
// port), globalConcurrency at a time. Hosts down, failing, or not listed
// because the load balancers do not answer read the change at their next
// refresh.
func (a *adminAPI) refreshFleet(ctx context.Context) refreshResult {
	res := refreshResult{Failed: []hostFailed{}}
	hosts, err := a.cfg.Picker.Hosts(ctx)
	if err != nil {
		a.log.Warn("settings stored but hosts not told: no host list", "err", err)
		res.Failed = append(res.Failed, hostFailed{"", "the hosts could not be listed (" +
			chatfleet.ErrorMessage(timedOut(ctx, "the load balancers", err)) + "); they read the change from the store at their next refresh"})
		return res
	}
	var targets []chatfleet.Host
	for _, h := range hosts {
		if h.State == chatfleet.HostDown {
			res.Failed = append(res.Failed, hostFailed{h.ID, "host is down"})
			continue
		}
		targets = append(targets, h)
	}
	took, _, failed := a.callHosts(targets, "cache refresh", func(h chatfleet.Host) (int, error) {
		return 0, a.fleet.admin(ctx, h, func(ctx context.Context, hc *hostapi.Client) error {
			_, err := hc.RefreshCache(ctx)
			return err
		})
	})
	res.Hosts, res.Failed = took, append(res.Failed, failed...)
	slices.SortFunc(res.Failed, func(x, y hostFailed) int { return strings.Compare(x.HostID, y.HostID) })
	return res
}

func (r refreshResult) String() string {
	return fmt.Sprintf("%d hosts told, %d failed", r.Hosts, len(r.Failed))
}

// findHost returns host id as the load balancers list it: EINVALID for a bad
// id, ENOTFOUND if they do not list it.
func (a *adminAPI) findHost(ctx context.Context, id string) (chatfleet.Host, error) {
	if !hostIDRE.MatchString(id) {
		return chatfleet.Host{}, chatfleet.Errorf(chatfleet.EINVALID, "invalid host id")
	}
	hosts, err := a.cfg.Picker.Hosts(ctx)
	if err != nil {
		return chatfleet.Host{}, timedOut(ctx, "the load balancers", err)
	}
	for _, h := range hosts {
		if h.ID == id {
			return h, nil
		}
	}
	return chatfleet.Host{}, chatfleet.Errorf(chatfleet.ENOTFOUND, "host %q not found", id)
}

// hostStats serves GET /admin/v1/hosts/{id}/stats: the host's own stats, as
// its admin port's GET /api/v1/stats answers them. 503 if the host is down
// or does not answer.
func (a *adminAPI) hostStats(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	h, err := a.findHost(ctx, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if h.State == chatfleet.HostDown {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %q is down", h.ID))
		return
	}
	var stats hostapi.HostStats
	err = a.fleet.admin(ctx, h, func(ctx context.Context, hc *hostapi.Client) (err error) {
		stats, err = hc.Stats(ctx)
		return err
	})
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the host", hostFailure(err)))
		return
	}
	httpx.WriteData(w, http.StatusOK, stats)
}

// hostRoom is what a host says of one of its rooms.
type hostRoom struct {
	PID      int                 `json:"pid"`
	Restarts int                 `json:"restarts"`
	Stats    chatfleet.RoomStats `json:"stats"`
}

// inspection is the answer of GET /admin/v1/rooms/{name}.
type inspection struct {
	Room roomView  `json:"room"`
	Host *hostRoom `json:"host"` // null if the host cannot say
}

// inspectRoom serves GET /admin/v1/rooms/{name}: the room as the store
// records it (as the room API shows it) and, if it is open and its host
// answers, what the host says of it: process, restarts, connections,
// viewers, producer and traffic. 404 if the store has no such room.
func (a *adminAPI) inspectRoom(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	if err := chatfleet.ValidateRoomName(name); err != nil {
		a.fail(w, r, err)
		return
	}
	sctx, cancel := storeCtx(ctx)
	room, err := a.store.Room(sctx, name)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	hosts := a.hostsByID(ctx)
	out := inspection{Room: view(room, hosts)}
	if h, ok := hosts[room.HostID]; ok && room.Status.Open() && h.State != chatfleet.HostDown {
		var info hostapi.RoomInfo
		err := a.fleet.admin(ctx, h, func(ctx context.Context, hc *hostapi.Client) (err error) {
			info, err = hc.AdminRoom(ctx, name)
			return err
		})
		if err != nil {
			a.log.Warn("inspect room: host did not say", "room", name, "host", h.ID, "err", err)
		} else {
			out.Host = &hostRoom{PID: info.PID, Restarts: info.Restarts, Stats: info.Stats}
		}
	}
	httpx.WriteData(w, http.StatusOK, out)
}

// replaceStored reads a stored value with get (for the audit log), then
// stores the new one with set, each call within the store's timeout; it
// returns the old value.
func replaceStored[T any](ctx context.Context, get func(context.Context) (T, error), set func(context.Context) error) (T, error) {
	sctx, cancel := storeCtx(ctx)
	old, err := get(sctx)
	cancel()
	if err != nil {
		return old, err
	}
	sctx, cancel = storeCtx(ctx)
	defer cancel()
	return old, set(sctx)
}
