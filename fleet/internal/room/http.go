package room

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/protocol"
)

// Handler serves the room:
//
//	GET  /        the room's name as text/plain, exactly its bytes
//	GET  /ws      the WebSocket
//	GET  /events  the SSE fallback: the same server messages as events
//	POST /send    the SSE fallback's way to send one client message
//
// Tokens, origins and bans are checked before anything is upgraded or
// streamed; refusals use the error envelope of package httpx.
func (r *Room) Handler() http.Handler {
	mux := httpx.NewMux()
	mux.HandleFunc("GET /{$}", r.serveName)
	mux.HandleFunc("GET /ws", r.serveWS)
	mux.HandleFunc("GET /events", r.serveEvents)
	mux.HandleFunc("POST /send", r.serveSend)
	mux.HandleFunc("OPTIONS /send", r.servePreflight)
	return httpx.Recover(r.log, mux)
}

func (r *Room) serveName(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(r.name)))
	w.Write([]byte(r.name))
}

// originOK reports whether req's Origin may use the room. A request without
// Origin is not from a browser page (browsers always send it on WebSocket
// handshakes and cross-origin requests) and is allowed: the token is the
// credential. With no AllowedOrigins, only the room's own origin (the Host
// the request was sent to) is allowed.
func (r *Room) originOK(req *http.Request) bool {
	o := req.Header.Get("Origin")
	if o == "" || r.anyOrig {
		return true
	}
	if len(r.origins) == 0 {
		u, err := url.Parse(o)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, req.Host)
	}
	return r.origins[strings.ToLower(o)]
}

// cors lets an allowed cross-origin page read the SSE stream and the answers
// to its POSTs, refusals included (a banned client's page reads why).
func (r *Room) cors(w http.ResponseWriter, req *http.Request) {
	if o := req.Header.Get("Origin"); o != "" && r.originOK(req) {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Add("Vary", "Origin")
	}
}

// admit checks everything a new connection needs before any room resource
// is spent: the room is open, the origin, the token (query parameter "token"
// or "Authorization: Bearer"), bans. Anonymous guests are admitted without a
// token when the room allows them and guest is true.
func (r *Room) admit(req *http.Request, guest bool) (protocol.User, bool, error) {
	if r.closing.Load() {
		return protocol.User{}, false, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %s is closing", r.name)
	}
	if p := r.stale.Load(); p != nil {
		return protocol.User{}, false, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "%s", *p)
	}
	if !r.originOK(req) {
		return protocol.User{}, false, chatfleet.Errorf(chatfleet.EFORBIDDEN, "origin not allowed")
	}
	tok := req.URL.Query().Get("token")
	if tok == "" {
		if a := req.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			tok = strings.TrimSpace(a[7:])
		}
	}
	p := r.policy.Load()
	if tok == "" && guest && p.anonymous {
		return guestUser(), true, nil
	}
	claims, err := r.cfg.Tokens.Verify(tok, r.name, r.cfg.Instance)
	if err != nil {
		return protocol.User{}, false, err
	}
	u := protocol.User{UserID: claims.UserID(), Name: claims.Name, Role: claims.Role}
	if u.Name == "" {
		u.Name = u.UserID
	}
	if r.cfg.Owner != "" && u.UserID == r.cfg.Owner && u.Role != chatfleet.RoleProducer {
		return protocol.User{}, false, chatfleet.Errorf(chatfleet.EFORBIDDEN, "this user id is the room owner's: only a producer token may carry it")
	}
	if _, banned := r.bans.Banned(u.UserID, r.now()); banned {
		return protocol.User{}, false, chatfleet.Errorf(chatfleet.EFORBIDDEN, "banned")
	}
	return u, false, nil
}

func guestUser() protocol.User {
	n, _ := rand.Int(rand.Reader, big.NewInt(10000))
	return protocol.User{
		UserID: "guest-" + strings.ToLower(rand.Text()[:16]),
		Name:   fmt.Sprintf("Guest-%04d", n.Int64()),
		Role:   chatfleet.RoleViewer,
	}
}

// lastSeq reads the recovery point: the Last-Event-ID header (SSE
// reconnects), else the lastSeq query parameter.
func lastSeq(req *http.Request) (int64, bool, error) {
	s := req.Header.Get("Last-Event-ID")
	if s == "" {
		s = req.URL.Query().Get("lastSeq")
	}
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false, chatfleet.Errorf(chatfleet.EINVALID, "lastSeq must be a non-negative integer")
	}
	return n, true, nil
}

func (r *Room) serveWS(w http.ResponseWriter, req *http.Request) {
	info, anon, err := r.admit(req, true)
	if err == nil {
		err = r.entitled(req.Context(), info) // paid rooms: before the upgrade
	}
	if err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	seq, has, err := lastSeq(req)
	if err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	if !websocket.IsWebSocketUpgrade(req) {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EINVALID, "expected a WebSocket upgrade"))
		return
	}
	addr := r.limits.clientAddr(req)
	if err := r.limits.acquire(addr); err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	ws, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil {
		r.limits.release(addr)
		return // the upgrader answered
	}
	c := r.newClient(info, anon, seq, has)
	c.ws, c.addr = ws, addr
	r.connStart(c)
	go r.readLoop(c)
}

func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	httpx.WriteError(w, nil, chatfleet.Errorf(httpx.Code(status), "websocket: %v", reason))
}

func (r *Room) serveEvents(w http.ResponseWriter, req *http.Request) {
	r.cors(w, req)
	info, anon, err := r.admit(req, true)
	if err == nil {
		err = r.entitled(req.Context(), info) // paid rooms: before the stream starts
	}
	if err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	seq, has, err := lastSeq(req)
	if err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	addr := r.limits.clientAddr(req)
	if err := r.limits.acquire(addr); err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	defer r.limits.release(addr)
	rc := http.NewResponseController(w)
	// The stream outlives the server's read timeout, which would cancel it.
	rc.SetReadDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 3000\n\n"); err != nil || rc.Flush() != nil {
		return
	}

	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	c := r.newClient(info, anon, seq, has)
	c.notify = make(chan struct{}, 1)
	c.cancel = cancel
	r.connStart(c)
	defer r.connDone(c)
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic in SSE stream", "conn", c.id, "panic", fmt.Sprint(p))
		}
		c.stopPing()
		r.send(request{kind: reqUnregister, c: c})
	}()
	if !r.send(request{kind: reqRegister, c: c}) {
		return
	}
	r.streamSSE(ctx, w, rc, c)
}

func (r *Room) servePreflight(w http.ResponseWriter, req *http.Request) {
	if !r.originOK(req) {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "origin not allowed"))
		return
	}
	r.cors(w, req)
	w.Header().Set("Access-Control-Allow-Methods", "POST")
	w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// serveSend takes one client message for a user who has a connection open
// (an SSE stream, usually): 202 with {"data": reply} where reply is the ack
// (or viewers, or pong), else the error envelope.
func (r *Room) serveSend(w http.ResponseWriter, req *http.Request) {
	r.cors(w, req)
	info, _, err := r.admit(req, false)
	if err != nil {
		httpx.WriteError(w, nil, err)
		return
	}
	limit := r.readLimit()
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(r.cfg.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeErr(w, chatfleet.Errorf(protocol.CodeTooLarge, "message larger than %d bytes", limit))
		return
	} else if err != nil {
		writeErr(w, chatfleet.Errorf(chatfleet.EINVALID, "read body: %v", err))
		return
	}
	msg, err := protocol.Decode(body)
	if err != nil {
		writeErr(w, err)
		return
	}
	reply := make(chan *protocol.ServerMsg, 1)
	if !r.send(request{kind: reqPost, msg: msg, who: info, reply: reply}) {
		writeErr(w, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %s is closed", r.name))
		return
	}
	t := time.NewTimer(r.cfg.WriteWait)
	defer t.Stop()
	select {
	case m := <-reply:
		if m.Type == protocol.TypeError {
			writeErr(w, chatfleet.Errorf(m.Code, "%s", m.Message))
			return
		}
		httpx.WriteData(w, http.StatusAccepted, m)
	case <-r.ending:
		writeErr(w, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %s is closed", r.name))
	case <-t.C:
		writeErr(w, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "room %s is busy", r.name))
	case <-req.Context().Done():
	}
}

// writeErr writes err in the error envelope, with the HTTP status of its
// protocol code.
func writeErr(w http.ResponseWriter, err error) {
	code := chatfleet.ErrorCode(err)
	status := httpx.Status(code)
	switch code {
	case protocol.CodeInvalidJSON, protocol.CodeInvalidUTF8, protocol.CodeUnknownType,
		protocol.CodeMissingField, protocol.CodeInvalidField, protocol.CodeUnsupported:
		status = http.StatusBadRequest
	case protocol.CodeMuted:
		status = http.StatusForbidden
	case protocol.CodeSlowMode:
		status = http.StatusTooManyRequests
	case protocol.CodeLimitReached:
		status = http.StatusConflict
	}
	httpx.WriteJSON(w, status, httpx.Envelope{Error: &chatfleet.Error{Code: code, Message: chatfleet.ErrorMessage(err)}})
}

// readLimit is the largest client message: Config.ReadLimit, or by default
// 4 KiB or what MaxMessageLen characters need, whichever is more.
func (r *Room) readLimit() int64 {
	if r.cfg.ReadLimit > 0 {
		return r.cfg.ReadLimit
	}
	return max(4096, 6*r.maxLen.Load()+512)
}
