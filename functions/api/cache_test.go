package api

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/testutil"
)

// waitFor polls ok for up to 5 s.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if !ok() {
			return errors.New("not yet")
		}
		return nil
	})
}

func TestReadCacheFreshStaleOld(t *testing.T) {
	clk := testutil.NewClock(time.Unix(1e9, 0))
	c := newReadCache[int](time.Second, 10, clk.Now)
	ctx := context.Background()
	var reads atomic.Int64
	fetch := func(context.Context) (int, error) { return int(reads.Add(1)), nil }

	if v, _ := c.get(ctx, "k", fetch); v != 1 {
		t.Fatalf("first get: %d", v)
	}
	clk.Add(900 * time.Millisecond)
	if v, _ := c.get(ctx, "k", fetch); v != 1 || reads.Load() != 1 {
		t.Fatalf("fresh: got %d after %d reads", v, reads.Load())
	}
	// Stale: one caller reads again while the others get the old value.
	clk.Add(200 * time.Millisecond)
	release := make(chan struct{})
	started := make(chan struct{})
	go c.get(ctx, "k", func(context.Context) (int, error) {
		close(started)
		<-release
		return int(reads.Add(1)), nil
	})
	<-started
	if v, _ := c.get(ctx, "k", fetch); v != 1 || reads.Load() != 1 {
		t.Fatalf("stale while read again: got %d after %d reads", v, reads.Load())
	}
	close(release)
	waitFor(t, func() bool { v, _ := c.get(ctx, "k", fetch); return v == 2 })
	// Too old to serve: read again, in the caller's time.
	clk.Add(2 * time.Second)
	if v, _ := c.get(ctx, "k", fetch); v != 3 {
		t.Fatalf("too old: got %d", v)
	}
}

func TestReadCacheOneReadForConcurrentCallers(t *testing.T) {
	c := newReadCache[int](time.Second, 10, time.Now)
	var reads atomic.Int64
	release := make(chan struct{})
	fetch := func(context.Context) (int, error) {
		reads.Add(1)
		<-release
		return 7, nil
	}
	var wg sync.WaitGroup
	got := make([]int, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = c.get(context.Background(), "k", fetch)
		}()
	}
	waitFor(t, func() bool { return reads.Load() == 1 })
	time.Sleep(10 * time.Millisecond) // let the others queue (a second read would count)
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads for 20 concurrent callers", n)
	}
	for i, v := range got {
		if v != 7 {
			t.Fatalf("caller %d got %d", i, v)
		}
	}
}

func TestReadCacheKeepsNoFailure(t *testing.T) {
	c := newReadCache[int](time.Second, 10, time.Now)
	boom := errors.New("store down")
	if _, err := c.get(context.Background(), "k", func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if v, err := c.get(context.Background(), "k", func(context.Context) (int, error) { return 5, nil }); err != nil || v != 5 {
		t.Fatalf("after a failure: %d, %v; want a new read", v, err)
	}
}

func TestReadCacheForget(t *testing.T) {
	c := newReadCache[int](time.Minute, 10, time.Now)
	ctx := context.Background()
	c.get(ctx, "k", func(context.Context) (int, error) { return 1, nil })
	c.forget("k")
	if v, _ := c.get(ctx, "k", func(context.Context) (int, error) { return 2, nil }); v != 2 {
		t.Fatalf("after forget: %d", v)
	}
	// A read under way when its key is forgotten is not kept.
	release := make(chan struct{})
	done := make(chan struct{})
	c.forget("k")
	go func() {
		c.get(ctx, "k", func(context.Context) (int, error) { <-release; return 3, nil })
		close(done)
	}()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.items["k"] != nil })
	c.forget("k")
	close(release)
	<-done
	if v, _ := c.get(ctx, "k", func(context.Context) (int, error) { return 4, nil }); v != 4 {
		t.Fatalf("a read from before forget was kept: %d", v)
	}
}

func TestReadCacheBounded(t *testing.T) {
	c := newReadCache[int](time.Minute, 8, time.Now)
	for i := range 100 {
		c.get(context.Background(), string(rune('a'+i)), func(context.Context) (int, error) { return i, nil })
	}
	if n := len(c.items); n > 8 {
		t.Errorf("%d keys held, at most 8", n)
	}
	var none *readCache[int] // READ_CACHE_TTL=0
	var reads int
	for range 3 {
		none.get(context.Background(), "k", func(context.Context) (int, error) { reads++; return 0, nil })
	}
	if reads != 3 {
		t.Errorf("without a cache: %d reads for 3 calls", reads)
	}
}
