package mongo

import (
	"context"
	"errors"
	"testing"
)

// TestNameLocks: a name is held by one caller at a time, a waiter gives up
// when its context ends, other names are free, and nothing is kept once no
// one holds or waits.
func TestNameLocks(t *testing.T) {
	var l nameLocks
	ctx := context.Background()
	unlock, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.lock(cancelled, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a second lock of a held name: %v, want the context's error", err)
	}
	unlockB, err := l.lock(ctx, "b")
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	unlockB()
	unlock()
	again, err := l.lock(ctx, "a")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
	if len(l.m) != 0 {
		t.Errorf("%d names kept with no holder", len(l.m))
	}
}
