package master

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
)

func newServer(h http.Handler, log *slog.Logger) *http.Server {
	s := httpx.NewServer(httpx.Recover(log, h))
	s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return s
}

type appInfo struct {
	App     string `json:"app"`
	Version string `json:"version"`
}

// apiHandler serves the API port: the seed's contract plus listing.
// GET /api/v1/ needs no key, as in the original; everything else needs KEY.
func (m *Master) apiHandler() http.Handler {
	mux := httpx.NewMux()
	mux.HandleFunc("GET /api/v1/{$}", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, appInfo{"chatserver", chatfleet.Version})
	})
	m.health(mux)
	key := func(h http.HandlerFunc) http.Handler { return httpx.RequireKey(m.cfg.Key, h) }
	mux.Handle("POST /api/v1/room/{name}", key(m.handleCreate))
	mux.Handle("GET /api/v1/room/{name}", key(m.handleGet))
	mux.Handle("DELETE /api/v1/room/{name}", key(m.handleClose))
	mux.Handle("GET /api/v1/rooms", key(m.handleList))
	return mux
}

// adminHandler serves the admin port; every route but the probes needs ADMIN_KEY.
func (m *Master) adminHandler() http.Handler {
	mux := httpx.NewMux()
	m.health(mux)
	key := func(h http.Handler) http.Handler { return httpx.RequireKey(m.cfg.AdminKey, h) }
	mux.Handle("GET /api/v1/{$}", key(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, appInfo{"Admin chatserver", chatfleet.Version})
	})))
	mux.Handle("GET /api/v1/rooms", key(http.HandlerFunc(m.handleList)))
	mux.Handle("GET /api/v1/rooms/{name}", key(http.HandlerFunc(m.handleGet)))
	mux.Handle("DELETE /api/v1/rooms/{name}", key(http.HandlerFunc(m.handleClose)))
	mux.Handle("POST /api/v1/messages", key(http.HandlerFunc(m.handleGlobal)))
	mux.Handle("POST /api/v1/bans", key(http.HandlerFunc(m.handleBans)))
	mux.Handle("POST /api/v1/cache/refresh", key(http.HandlerFunc(m.handleCacheRefresh)))
	mux.Handle("POST /api/v1/drain", key(http.HandlerFunc(m.handleDrain(true))))
	mux.Handle("POST /api/v1/resume", key(http.HandlerFunc(m.handleDrain(false))))
	mux.Handle("POST /api/v1/restart", key(http.HandlerFunc(m.handleRestart)))
	mux.Handle("POST /api/v1/shutdown", key(http.HandlerFunc(m.handleShutdown)))
	mux.Handle("GET /api/v1/stats", key(http.HandlerFunc(m.handleStats)))
	mux.Handle("GET /metrics", key(promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{})))
	return mux
}

func (m *Master) health(mux *httpx.Mux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		draining := m.draining
		m.mu.Unlock()
		if draining {
			httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "draining"))
			return
		}
		httpx.WriteData(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

type createRequest struct {
	Options RoomOptions `json:"options"`
}

type createResponse struct {
	Port    int    `json:"port"`
	Message string `json:"message"`
	// WebhookSecret is the secret the host made for the room's webhookUrls
	// (none was given): the only time it is told.
	WebhookSecret string `json:"webhookSecret,omitempty"`
}

func (m *Master) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := httpx.DecodeJSON(w, r, 16<<10, &req); err != nil { // room for 5 webhook URLs
		httpx.WriteError(w, m.log, err)
		return
	}
	info, err := m.CreateRoom(r.Context(), r.PathValue("name"), req.Options)
	if err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	httpx.WriteData(w, http.StatusCreated, createResponse{Port: info.Port, Message: "Room created", WebhookSecret: info.webhookSecret})
}

func (m *Master) handleGet(w http.ResponseWriter, r *http.Request) {
	rm, err := m.room(r.PathValue("name"))
	if err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	httpx.WriteData(w, http.StatusOK, rm.info())
}

func (m *Master) handleList(w http.ResponseWriter, r *http.Request) {
	httpx.WriteData(w, http.StatusOK, map[string]any{"rooms": m.Rooms()})
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

func (m *Master) handleClose(w http.ResponseWriter, r *http.Request) {
	var req reasonRequest
	if err := httpx.DecodeJSON(w, r, 4<<10, &req); err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	if req.Reason == "" {
		req.Reason = "room closed by the operator"
	}
	if len(req.Reason) > 200 {
		httpx.WriteError(w, m.log, chatfleet.Errorf(chatfleet.EINVALID, "reason is longer than 200 bytes"))
		return
	}
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := m.CloseRoom(ctx, name, req.Reason); err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	m.audit("room.close", name, req.Reason)
	httpx.WriteData(w, http.StatusOK, map[string]string{"message": "Room closed"})
}

type globalRequest struct {
	Text string `json:"text"`
}

func (m *Master) handleGlobal(w http.ResponseWriter, r *http.Request) {
	var req globalRequest
	if err := httpx.DecodeJSON(w, r, 8<<10, &req); err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	if req.Text == "" || len(req.Text) > 1000 {
		httpx.WriteError(w, m.log, chatfleet.Errorf(chatfleet.EINVALID, "text must be 1 to 1000 bytes"))
		return
	}
	n := m.Global(req.Text)
	m.audit("global.message", "*", req.Text)
	httpx.WriteData(w, http.StatusOK, map[string]int{"rooms": n})
}

// handleBans applies ban changes the control API made in the store to
// this host's rooms at once (ApplyBans).
func (m *Master) handleBans(w http.ResponseWriter, r *http.Request) {
	var req BanChanges
	// 2 x 1000 bans of at most about 4 KiB of JSON each, escapes included.
	if err := httpx.DecodeJSON(w, r, 8<<20, &req); err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	n, err := m.ApplyBans(req)
	if err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	httpx.WriteData(w, http.StatusOK, map[string]int{"rooms": n})
}

// handleCacheRefresh reloads the cache (blocked words, room defaults) from
// the store at once, after the control API changed them, and pushes it to
// this host's rooms.
func (m *Master) handleCacheRefresh(w http.ResponseWriter, r *http.Request) {
	n, err := m.cache.refresh(r.Context())
	if err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	httpx.WriteData(w, http.StatusOK, map[string]int{"rooms": n})
}

func (m *Master) handleDrain(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m.SetDraining(drain)
		action, state := "host.resume", chatfleet.HostAccepting
		if drain {
			action, state = "host.drain", chatfleet.HostDraining
		}
		m.audit(action, m.cfg.HostID, "")
		httpx.WriteData(w, http.StatusOK, map[string]chatfleet.HostState{"state": state})
	}
}

func (m *Master) handleRestart(w http.ResponseWriter, r *http.Request) {
	m.audit("host.restart", m.cfg.HostID, "")
	httpx.WriteData(w, http.StatusAccepted, map[string]string{"message": "restarting; rooms keep running"})
	m.RequestRestart()
}

func (m *Master) handleShutdown(w http.ResponseWriter, r *http.Request) {
	m.audit("host.shutdown", m.cfg.HostID, "")
	httpx.WriteData(w, http.StatusAccepted, map[string]string{"message": "draining rooms and shutting down"})
	select {
	case m.shutdownCh <- struct{}{}:
	default:
	}
}

func (m *Master) handleStats(w http.ResponseWriter, r *http.Request) {
	httpx.WriteData(w, http.StatusOK, m.hostStats())
}

// audit records an admin action in the store, if there is one.
func (m *Master) audit(action, target, detail string) {
	m.log.Info("admin action", "action", action, "target", target)
	if m.cfg.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StoreTimeout)
	defer cancel()
	e := &chatfleet.AuditEntry{Actor: "admin@" + m.cfg.HostID, Action: action, Target: target, Detail: detail}
	if err := m.cfg.Store.Audit(ctx, e); err != nil {
		m.metrics.storeErrors.Inc()
		m.log.Warn("audit", "action", action, "err", err)
	}
}
