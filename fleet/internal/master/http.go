package master

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
)

func newServer(h http.Handler, log *slog.Logger) *http.Server {
	s := httpx.NewServer(httpx.Recover(log, h))
	s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return s
}

// apiHandler serves the API port (package hostapi has the contract): the
// seed's contract plus listing. GET /api/v1/ needs no key, as in the
// original; everything else needs KEY.
func (m *Master) apiHandler() http.Handler {
	mux := httpx.NewMux()
	mux.HandleFunc("GET "+hostapi.InfoPath+"{$}", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, hostapi.AppInfo{App: "chatserver", Version: chatfleet.Version})
	})
	m.health(mux)
	key := func(h http.HandlerFunc) http.Handler { return httpx.RequireKey(m.cfg.Key, h) }
	mux.Handle("POST "+hostapi.RoomPath+"{name}", key(m.handleCreate))
	mux.Handle("GET "+hostapi.RoomPath+"{name}", key(m.handleGet))
	mux.Handle("DELETE "+hostapi.RoomPath+"{name}", key(m.handleClose))
	mux.Handle("GET "+hostapi.RoomsPath, key(m.handleList))
	return mux
}

// adminHandler serves the admin port; every route but the probes needs ADMIN_KEY.
func (m *Master) adminHandler() http.Handler {
	mux := httpx.NewMux()
	m.health(mux)
	key := func(h http.Handler) http.Handler { return httpx.RequireKey(m.cfg.AdminKey, h) }
	mux.Handle("GET "+hostapi.InfoPath+"{$}", key(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, hostapi.AppInfo{App: "Admin chatserver", Version: chatfleet.Version})
	})))
	mux.Handle("GET "+hostapi.RoomsPath, key(http.HandlerFunc(m.handleList)))
	mux.Handle("GET "+hostapi.AdminRoomPath+"{name}", key(http.HandlerFunc(m.handleGet)))
	mux.Handle("DELETE "+hostapi.AdminRoomPath+"{name}", key(http.HandlerFunc(m.handleClose)))
	mux.Handle("POST "+hostapi.MessagesPath, key(http.HandlerFunc(m.handleGlobal)))
	mux.Handle("POST "+hostapi.BansPath, key(http.HandlerFunc(m.handleBans)))
	mux.Handle("POST "+hostapi.CacheRefreshPath, key(http.HandlerFunc(m.handleCacheRefresh)))
	mux.Handle("POST "+hostapi.Drain.Path(), key(http.HandlerFunc(m.handleDrain(true))))
	mux.Handle("POST "+hostapi.Resume.Path(), key(http.HandlerFunc(m.handleDrain(false))))
	mux.Handle("POST "+hostapi.Restart.Path(), key(http.HandlerFunc(m.handleRestart)))
	mux.Handle("POST "+hostapi.Shutdown.Path(), key(http.HandlerFunc(m.handleShutdown)))
	mux.Handle("GET "+hostapi.StatsPath, key(http.HandlerFunc(m.handleStats)))
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

func (m *Master) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req hostapi.CreateRequest
	if err := httpx.DecodeJSON(w, r, 16<<10, &req); err != nil { // room for 5 webhook URLs
		httpx.WriteError(w, m.log, err)
		return
	}
	info, err := m.CreateRoom(r.Context(), r.PathValue("name"), RoomOptions(req.Options))
	if err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	httpx.WriteData(w, http.StatusCreated, hostapi.Created{Port: info.Port, Message: "Room created", WebhookSecret: info.webhookSecret})
}

// wire returns i as the host API tells it.
func (i RoomInfo) wire() hostapi.RoomInfo {
	return i.RoomInfo
}

func (m *Master) handleGet(w http.ResponseWriter, r *http.Request) {
	rm, err := m.room(r.PathValue("name"))
	if err != nil {
		httpx.WriteError(w, m.log, err)
		return
	}
	httpx.WriteData(w, http.StatusOK, rm.info().wire())
}

func (m *Master) handleList(w http.ResponseWriter, r *http.Request) {
	list := hostapi.RoomList{Rooms: []hostapi.RoomInfo{}}
	for _, i := range m.Rooms() {
		list.Rooms = append(list.Rooms, i.wire())
	}
	httpx.WriteData(w, http.StatusOK, list)
}

func (m *Master) handleClose(w http.ResponseWriter, r *http.Request) {
	var req hostapi.CloseRequest
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
	httpx.WriteData(w, http.StatusOK, hostapi.Message{Message: "Room closed"})
}

func (m *Master) handleGlobal(w http.ResponseWriter, r *http.Request) {
	var req hostapi.GlobalRequest
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
	httpx.WriteData(w, http.StatusOK, hostapi.RoomCount{Rooms: n})
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
	httpx.WriteData(w, http.StatusOK, hostapi.RoomCount{Rooms: n})
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
	httpx.WriteData(w, http.StatusOK, hostapi.RoomCount{Rooms: n})
}

func (m *Master) handleDrain(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m.SetDraining(drain)
		action, state := "host.resume", chatfleet.HostAccepting
		if drain {
			action, state = "host.drain", chatfleet.HostDraining
		}
		m.audit(action, m.cfg.HostID, "")
		httpx.WriteData(w, http.StatusOK, hostapi.ActionAnswer{State: state})
	}
}

func (m *Master) handleRestart(w http.ResponseWriter, r *http.Request) {
	m.audit("host.restart", m.cfg.HostID, "")
	httpx.WriteData(w, http.StatusAccepted, hostapi.ActionAnswer{Message: "restarting; rooms keep running"})
	m.RequestRestart()
}

func (m *Master) handleShutdown(w http.ResponseWriter, r *http.Request) {
	m.audit("host.shutdown", m.cfg.HostID, "")
	httpx.WriteData(w, http.StatusAccepted, hostapi.ActionAnswer{Message: "draining rooms and shutting down"})
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
