package mongo_test

import (
	"errors"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
)

// newClock is a settable clock for Config.Now.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// newStore returns a store on a database of t's own whose clock is c.
func newStore(t *testing.T, c *testutil.Clock) *mongo.Store {
	t.Helper()
	cfg := storetest.Config(t)
	cfg.Now = c.Now
	return storetest.Open(t, cfg)
}

// eventually calls f until it returns nil, failing t with f's last error if
// that does not happen within d.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantCode fails t unless err has the domain error code want.
func wantCode(t *testing.T, err error, want string) {
	t.Helper()
	if got := chatfleet.ErrorCode(err); got != want {
		t.Fatalf("error code %q (%v), want %q", got, err, want)
	}
}

// must fails t if err is not nil.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// domainError returns the *chatfleet.Error in err's chain, failing t if none.
func domainError(t *testing.T, err error) *chatfleet.Error {
	t.Helper()
	var e *chatfleet.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v holds no *chatfleet.Error", err)
	}
	return e
}

// always is a SyncHost refreshBefore that refreshes every unchanged room.
var always = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
