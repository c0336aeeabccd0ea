package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/testutil"
)

// copyBinary copies src to dst through a temporary file and a rename, as a
// package manager replaces a binary.
func copyBinary(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeInPlaceRefusesNothing replaces the binary on disk and sends
// SIGHUP while clients keep connecting to the API and to a room: no
// connection is refused, no room is dropped, and the new image serves.
func TestUpgradeInPlaceRefusesNothing(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "chatserver")
	copyBinary(t, testutil.Binary(t, "./fleet/cmd/chatserver"), bin)
	h := &host{t: t, Chatserver: testutil.NewChatserver(t, 40, "KEY="+userKey, "ADMIN_KEY="+adminKey, "LOG_LEVEL=info", "TOKEN_SECRET="+secret)}
	h.Bin = bin
	h.Start()
	port := h.create("steady")
	pid := h.rooms()[0].PID

	var stop atomic.Bool
	var tries, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for _, url := range []string{h.API + "/healthz", fmt.Sprintf("http://127.0.0.1:%d/", port)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				tries.Add(1)
				if status, _, err := testutil.TryDo("GET", url, "", ""); err != nil || status != 200 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %d %v", url, status, err))
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	copyBinary(t, testutil.Binary(t, "./fleet/cmd/chatserver"), bin) // the "new version"
	h.Proc.Signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := strings.Count(h.Proc.Output(), `"msg":"chatserver started"`); n < 2 {
			return fmt.Errorf("started %d times", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // keep the clients going a little after the switch
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d requests failed during the upgrade; first: %v", failures.Load(), tries.Load(), firstErr.Load())
	}
	rs := h.rooms()
	if len(rs) != 1 || rs[0].PID != pid {
		t.Fatalf("rooms after upgrade %+v, want the same process %d", rs, pid)
	}
	// The new image creates rooms too.
	h.create("after-upgrade")
}
