package chatfleet

import (
	"errors"
	"fmt"
)

// Error codes, mapped to HTTP statuses once, at the edge (package httpx).
const (
	EINVALID      = "invalid"            // 400
	EUNAUTHORIZED = "unauthorized"       // 401: no credentials
	EFORBIDDEN    = "forbidden"          // 403: wrong credentials or not allowed
	ENOTFOUND     = "not_found"          // 404
	EMETHOD       = "method_not_allowed" // 405
	ECONFLICT     = "conflict"           // 409
	ETOOLARGE     = "too_large"          // 413
	ERATELIMIT    = "rate_limited"       // 429
	EINTERNAL     = "internal"           // 500
	EUNAVAILABLE  = "unavailable"        // 503
)

// Error is a domain error: a code callers branch on and a message for people.
// Host and Port say where an existing room is, for ECONFLICT.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Host    string `json:"host,omitempty"`
	Port    int    `json:"port,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("chatfleet error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, EINTERNAL for any
// other error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the *Error in err's chain, and
// "internal error" for any other error so that driver details never reach a caller.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
