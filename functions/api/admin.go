package api

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
)

// Limits of the admin API.
const (
	maxMessageLen     = 1000 // the hosts' own limit for a global message
	maxReasonLen      = 200
	maxAdminBody      = 8 << 10
	defaultAuditPage  = 100
	maxAuditPage      = 1000
	maxTargetLen      = 128
	globalConcurrency = 8
	auditActor        = "admin"
)

var hostIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// adminAPI serves the admin API. Its handlers may run concurrently. Every
// action that changes something is recorded in the audit log with actor
// "admin"; an action is refused (503) while the store cannot record it.
type adminAPI struct {
	base
}

// storeUp returns EUNAVAILABLE if the store does not answer, so that no
// action runs that could not be audited.
func (a *adminAPI) storeUp(ctx context.Context) error {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	return timedOut(ctx, "the store", a.store.Ping(sctx))
}

// record appends an entry to the audit log. The action has happened by
// then, so a failure is logged, with the entry, rather than answered.
func (a *adminAPI) record(ctx context.Context, action, target, detail string) {
	e := &chatfleet.AuditEntry{At: a.cfg.Now(), Actor: auditActor, Action: action, Target: target, Detail: detail}
	sctx, cancel := storeCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := a.store.Audit(sctx, e); err != nil {
		a.log.Error("audit entry not stored", "action", action, "target", target, "detail", detail, "err", err)
	}
}

type messageRequest struct {
	Text string `json:"text"`
}

// globalResult says how far a global message got.
type globalResult struct {
	Hosts  int          `json:"hosts"` // hosts that took the message
	Rooms  int          `json:"rooms"` // rooms those hosts passed it to
	Failed []hostFailed `json:"failed"`
}

type hostFailed struct {
	HostID string `json:"hostId"`
	Error  string `json:"error"`
}

// globalMessage serves POST /admin/v1/messages: the text goes to every room
// of every host the load balancers know. Hosts that are down or do not
// answer are listed as failed; the answer is 200 as long as the hosts could
// be listed.
func (a *adminAPI) globalMessage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req messageRequest
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Text == "" || len(req.Text) > maxMessageLen {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "field %q: want 1 to %d bytes", "text", maxMessageLen))
		return
	}
	if err := a.storeUp(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	hosts, err := a.cfg.Picker.Hosts(ctx)
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the load balancers", err))
		return
	}
	res := globalResult{Failed: []hostFailed{}}
	var targets []chatfleet.Host
	for _, h := range hosts {
		if h.State == chatfleet.HostDown {
			res.Failed = append(res.Failed, hostFailed{h.ID, "host is down"})
			continue
		}
		targets = append(targets, h)
	}
	took, rooms, failed := a.callHosts(targets, "global message", func(h chatfleet.Host) (int, error) {
		rooms := 0
		err := a.fleet.admin(ctx, h, func(ctx context.Context, hc *hostapi.Client) (err error) {
			rooms, err = hc.Global(ctx, req.Text)
			return err
		})
		return rooms, err
	})
	res.Hosts, res.Rooms, res.Failed = took, rooms, append(res.Failed, failed...)
	slices.SortFunc(res.Failed, func(x, y hostFailed) int { return strings.Compare(x.HostID, y.HostID) })
	a.record(ctx, "global.message", "*", fmt.Sprintf("%d hosts, %d rooms, %d failed: %s", res.Hosts, res.Rooms, len(res.Failed), req.Text))
	httpx.WriteData(w, http.StatusOK, res)
}

// hosts serves GET /admin/v1/hosts: every host the load balancers know.
func (a *adminAPI) hosts(w http.ResponseWriter, r *http.Request) {
	hosts, err := a.cfg.Picker.Hosts(r.Context())
	if err != nil {
		a.fail(w, r, timedOut(r.Context(), "the load balancers", err))
		return
	}
	if hosts == nil {
		hosts = []chatfleet.Host{}
	}
	httpx.WriteData(w, http.StatusOK, map[string][]chatfleet.Host{"hosts": hosts})
}

// hostAction returns the handler of POST /admin/v1/hosts/{id}/<action>
// (drain, resume, restart, shutdown), which the host's admin port carries
// out; restart and shutdown answer 202, as the host does.
func hostAction(action hostapi.Action) func(*adminAPI, http.ResponseWriter, *http.Request) {
	return func(a *adminAPI, w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		if !hostIDRE.MatchString(id) {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "invalid host id"))
			return
		}
		if err := a.storeUp(ctx); err != nil {
			a.fail(w, r, err)
			return
		}
		host, err := a.findHost(ctx, id)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if host.State == chatfleet.HostDown {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %q is down", id))
			return
		}
		var result hostapi.ActionAnswer
		err = a.fleet.admin(ctx, host, func(ctx context.Context, hc *hostapi.Client) (err error) {
			result, err = hc.Do(ctx, action)
			return err
		})
		if err != nil {
			a.fail(w, r, timedOut(ctx, "the host", hostFailure(err)))
			return
		}
		a.record(ctx, "host."+string(action), id, "")
		status := http.StatusOK
		if action == hostapi.Restart || action == hostapi.Shutdown {
			status = http.StatusAccepted
		}
		httpx.WriteData(w, status, map[string]any{"hostId": id, "action": action, "result": result})
	}
}

type closeRequest struct {
	Reason string `json:"reason"`
}

// closeRoom serves DELETE /admin/v1/rooms/{name} (optional body {"reason"}):
// the host's admin port closes the room, its clients are told the reason,
// the store records it closed.
func (a *adminAPI) closeRoom(w http.ResponseWriter, r *http.Request) {
	if err := chatfleet.ValidateRoomName(r.PathValue("name")); err != nil {
		a.fail(w, r, err)
		return
	}
	var req closeRequest
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(req.Reason) > maxReasonLen {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "field %q: at most %d bytes", "reason", maxReasonLen))
		return
	}
	if req.Reason == "" {
		req.Reason = "room closed by an administrator"
	}
	room, err := a.openRoom(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.closeOn(r.Context(), room, req.Reason, true); err != nil {
		a.fail(w, r, err)
		return
	}
	a.record(r.Context(), "room.close", room.Name, req.Reason)
	httpx.WriteData(w, http.StatusOK, map[string]string{"name": room.Name, "status": string(chatfleet.RoomClosed)})
}

// auditPage is the answer of the audit log: entries newest first, and the
// value of ?before for the next page ("" after the last).
type auditPage struct {
	Entries    []chatfleet.AuditEntry `json:"entries"`
	NextBefore string                 `json:"nextBefore"`
}

// audit serves GET /admin/v1/audit?limit=&target=&before=.
func (a *adminAPI) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := chatfleet.AuditFilter{Limit: defaultAuditPage, Target: q.Get("target")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditPage {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "limit must be a whole number from 1 to %d", maxAuditPage))
			return
		}
		f.Limit = n
	}
	if len(f.Target) > maxTargetLen {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "target is longer than %d bytes", maxTargetLen))
		return
	}
	if s := q.Get("before"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "before must be an RFC 3339 time"))
			return
		}
		f.Before = t
	}
	ctx, cancel := storeCtx(r.Context())
	entries, err := a.store.AuditLog(ctx, f)
	cancel()
	if err != nil {
		a.fail(w, r, timedOut(r.Context(), "the store", err))
		return
	}
	page := auditPage{Entries: entries}
	if page.Entries == nil {
		page.Entries = []chatfleet.AuditEntry{}
	}
	if len(entries) == f.Limit {
		page.NextBefore = entries[len(entries)-1].At.UTC().Format(time.RFC3339Nano)
	}
	httpx.WriteData(w, http.StatusOK, page)
}
