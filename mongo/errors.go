package mongo

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/chatfleet/chatfleet"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// storeError is how the Store reports a failure of the server or the driver.
//
// chatfleet.Error has no field for a cause, and the driver's text must never
// reach a caller, so storeError carries both: the *chatfleet.Error that
// callers see through errors.As, chatfleet.ErrorCode and
// chatfleet.ErrorMessage ("store unavailable"), and the driver's error, which
// errors.Is still finds (context.DeadlineExceeded, for one). Its Error text
// names the operation and, unless brief, holds the driver's text: it is for
// logs. Show people chatfleet.ErrorMessage(err).
type storeError struct {
	op    string           // what the Store was doing, e.g. "list rooms"
	err   *chatfleet.Error // what callers see
	cause error            // what the driver said
	brief bool             // err's message already says what cause does
}

func (e *storeError) Error() string {
	if e.brief {
		return "mongo " + e.op + ": " + e.err.Message
	}
	return fmt.Sprintf("mongo %s: %s: %s", e.op, e.err.Message, oneLine(e.cause.Error()))
}

func (e *storeError) Unwrap() []error { return []error{e.err, e.cause} }

// fail maps a driver error of operation op to the error the Store returns:
//
//   - nil stays nil, and an error that already holds a *chatfleet.Error is
//     returned as it is;
//   - a duplicate key is ECONFLICT;
//   - a server that cannot be selected or reached, a network error, a
//     timeout, an expired or canceled context, a closed client and a server
//     shutting down or stepping down are EUNAVAILABLE, "store unavailable";
//   - anything else (a bug, a command the server does not know) is wrapped
//     with the operation and no *chatfleet.Error, so that it counts as
//     EINTERNAL and the HTTP edge logs it and answers "internal error".
//
// A missing document is not mapped here: each method says ENOTFOUND with the
// name of what it looked for.
func fail(op string, err error) error {
	var de *chatfleet.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &de):
		return err
	case mongodrv.IsDuplicateKeyError(err):
		return &storeError{op: op, cause: err, err: chatfleet.Errorf(chatfleet.ECONFLICT, "already exists")}
	case unavailable(err):
		return &storeError{op: op, cause: err, err: chatfleet.Errorf(chatfleet.EUNAVAILABLE, "store unavailable")}
	}
	return fmt.Errorf("mongo %s: %w", op, err)
}

// unavailableCodes are server error codes that say the server cannot serve
// now, not that the request is wrong.
var unavailableCodes = []int{
	6,     // HostUnreachable
	7,     // HostNotFound
	50,    // MaxTimeMSExpired
	89,    // NetworkTimeout
	91,    // ShutdownInProgress
	189,   // PrimarySteppedDown
	262,   // ExceededTimeLimit
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11602, // InterruptedDueToReplStateChange
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
}

// unavailable reports whether err says the server could not be reached or
// did not answer in time.
func unavailable(err error) bool {
	var (
		sse topology.ServerSelectionError
		ce  topology.ConnectionError
		ne  net.Error
		pe  driver.RetryablePoolError // the pool was cleared after a network error
		se  mongodrv.ServerError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, mongodrv.ErrClientDisconnected),
		mongodrv.IsTimeout(err), mongodrv.IsNetworkError(err),
		errors.As(err, &sse), errors.As(err, &ce), errors.As(err, &ne), errors.As(err, &pe):
		return true
	case errors.As(err, &se):
		for _, code := range unavailableCodes {
			if se.HasErrorCode(code) {
				return true
			}
		}
	}
	return false
}

// notFound is the ENOTFOUND of a missing thing.
func notFound(format string, args ...any) error {
	return chatfleet.Errorf(chatfleet.ENOTFOUND, format, args...)
}

// invalid is the EINVALID of a bad argument.
func invalid(format string, args ...any) error {
	return chatfleet.Errorf(chatfleet.EINVALID, format, args...)
}
