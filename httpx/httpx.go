// Package httpx is the HTTP edge shared by the fleet and the control API: the
// JSON data and error envelopes, the mapping of domain error codes to HTTP
// statuses, API key checks, body limits and panic recovery.
package httpx

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/chatfleet/chatfleet"
)

// MaxBody is the largest request body a handler reads by default.
const MaxBody = 64 << 10

// Status maps a domain error code to its HTTP status.
func Status(code string) int {
	switch code {
	case chatfleet.EINVALID:
		return http.StatusBadRequest
	case chatfleet.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case chatfleet.EFORBIDDEN:
		return http.StatusForbidden
	case chatfleet.ENOTFOUND:
		return http.StatusNotFound
	case chatfleet.EMETHOD:
		return http.StatusMethodNotAllowed
	case chatfleet.ECONFLICT:
		return http.StatusConflict
	case chatfleet.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case chatfleet.ERATELIMIT:
		return http.StatusTooManyRequests
	case chatfleet.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Code maps an HTTP status back to a domain error code, for clients of our own
// services.
func Code(status int) string {
	switch status {
	case http.StatusBadRequest:
		return chatfleet.EINVALID
	case http.StatusUnauthorized:
		return chatfleet.EUNAUTHORIZED
	case http.StatusForbidden:
		return chatfleet.EFORBIDDEN
	case http.StatusNotFound:
		return chatfleet.ENOTFOUND
	case http.StatusMethodNotAllowed:
		return chatfleet.EMETHOD
	case http.StatusConflict:
		return chatfleet.ECONFLICT
	case http.StatusRequestEntityTooLarge:
		return chatfleet.ETOOLARGE
	case http.StatusTooManyRequests:
		return chatfleet.ERATELIMIT
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return chatfleet.EUNAVAILABLE
	}
	return chatfleet.EINTERNAL
}

// WriteJSON writes status and v as JSON, with no trailing newline.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

// WriteData writes the data envelope {"data": v}.
func WriteData(w http.ResponseWriter, status int, v any) {
	WriteJSON(w, status, struct {
		Data any `json:"data"`
	}{v})
}

// Envelope is the error envelope every endpoint answers with.
type Envelope struct {
	Error *chatfleet.Error `json:"error"`
}

// WriteError writes err in the error envelope with the status of its code.
// Internal errors are logged to log (if not nil) and reach the caller only as
// "internal error".
func WriteError(w http.ResponseWriter, log *slog.Logger, err error) {
	code := chatfleet.ErrorCode(err)
	if code == chatfleet.EINTERNAL && log != nil {
		log.Error("internal error", "err", err)
	}
	e := &chatfleet.Error{Code: code, Message: chatfleet.ErrorMessage(err)}
	var de *chatfleet.Error
	if errors.As(err, &de) {
		e.Host, e.Port = de.Host, de.Port
	}
	WriteJSON(w, Status(code), Envelope{e})
}

// DecodeJSON reads at most max bytes (MaxBody if 0) of r's body into v,
// refusing unknown fields and trailing data. It returns ETOOLARGE or EINVALID.
// An empty body leaves v as it is.
func DecodeJSON(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	if max <= 0 {
		max = MaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return chatfleet.Errorf(chatfleet.ETOOLARGE, "request body is larger than %d bytes", max)
	} else if err != nil {
		return chatfleet.Errorf(chatfleet.EINVALID, "read request body: %v", err)
	}
	if len(body) == 0 {
		return nil
	}
	return Unmarshal(body, v)
}

// Unmarshal decodes one JSON value from b into v, refusing unknown fields and
// trailing data, and returns EINVALID naming the field that is wrong.
func Unmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want %s", te.Field, te.Type)
		}
		return chatfleet.Errorf(chatfleet.EINVALID, "invalid JSON: %v", err)
	}
	// Only JSON's own whitespace may follow (bytes.TrimSpace would also
	// take a form feed or a no-break space).
	if rest := bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return chatfleet.Errorf(chatfleet.EINVALID, "invalid JSON: trailing data after the object")
	}
	return nil
}

// KeyEqual compares a presented key with the expected one in constant time.
// An empty expected key never matches.
func KeyEqual(got, want string) bool {
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// RequireKey wraps next so that it runs only when the X-API-Key header holds
// key: no header answers 401, a wrong one 403. Keys are never logged.
func RequireKey(key string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-API-Key")
		if got == "" {
			WriteError(w, nil, chatfleet.Errorf(chatfleet.EUNAUTHORIZED, "missing X-API-Key header"))
			return
		}
		if !KeyEqual(got, key) {
			WriteError(w, nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "invalid API key"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Recover wraps next so that a panic is logged with its stack and answered
// with a 500 in the error envelope; the server keeps serving.
func Recover(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				WriteError(w, nil, chatfleet.Errorf(chatfleet.EINTERNAL, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Mux is an http.ServeMux whose 404 and 405 answers use the error envelope.
type Mux struct {
	*http.ServeMux
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{http.NewServeMux()} }

// ServeHTTP routes r, rewriting the ServeMux's plain-text 404 and 405 into the
// error envelope (keeping the Allow header).
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := m.Handler(r)
	if pattern == "" {
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			WriteError(w, nil, chatfleet.Errorf(chatfleet.EMETHOD, "method %s not allowed on %s", r.Method, r.URL.Path))
			return
		case http.StatusNotFound:
			WriteError(w, nil, chatfleet.Errorf(chatfleet.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
		// A redirect (cleaned path or trailing slash): pass it through.
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		return
	}
	m.ServeMux.ServeHTTP(w, r)
}

// statusRecorder captures the status and headers of the ServeMux's own
// not-found, method-not-allowed and redirect handlers.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }

// NewServer returns an http.Server for h with the limits every listener of the
// project uses: slow headers are cut off, header size is bounded.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}
