package initproc

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/testutil"
)

// These tests run real processes (sh) as the master. The chatserver's own
// test (fleet/cmd/chatserver/init_test.go) runs the real master under
// `chatserver init`; infra/docker_test.go runs it as PID 1 of a container.

// runSh runs init over `sh -c script` with the signals of sigs (SIGCHLD is
// added) and returns its exit code, failing t if it takes over a minute.
func runSh(t *testing.T, cfg Config, script string, sigs chan os.Signal) int {
	t.Helper()
	cfg.Path, cfg.Args = "/bin/sh", []string{"-c", script}
	if sigs == nil {
		sigs = make(chan os.Signal, 32)
	}
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	done := make(chan int, 1)
	go func() { done <- run(cfg, sigs) }()
	select {
	case code := <-done:
		return code
	case <-time.After(time.Minute):
		t.Fatal("init did not exit within a minute")
		return 0
	}
}

// poll waits up to 10s for cond, polling; it is for the goroutines that
// feed signals (t.Fatal belongs to the test's own goroutine).
func poll(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

func read(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// A master that exits 0 (its drain is done) ends init with 0, and is not
// restarted; a master that exits non-zero by itself is a crash.
func TestCleanExitEndsInit(t *testing.T) {
	log := filepath.Join(t.TempDir(), "starts")
	code := runSh(t, Config{MinBackoff: 10 * time.Millisecond},
		fmt.Sprintf(`echo x >> %s; [ $(wc -l < %s) -lt 2 ] && exit 3; exit 0`, log, log), nil)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if n := strings.Count(read(log), "x"); n != 2 {
		t.Fatalf("the master started %d times, want 2 (the exit 3 is a crash, the exit 0 is final)", n)
	}
}

// A master killed by SIGKILL is started again after the backoff, and the
// orphan it left (a room, in the real thing) is reaped by init when it ends:
// no zombie stays.
func TestCrashRestartsAndOrphansAreReaped(t *testing.T) {
	dir := t.TempDir()
	starts, orphan, result := filepath.Join(dir, "starts"), filepath.Join(dir, "orphan"), filepath.Join(dir, "result")
	script := fmt.Sprintf(`
echo x >> %[1]s
n=$(wc -l < %[1]s)
if [ $n -eq 1 ]; then sleep 0.3 & echo $! > %[2]s; kill -9 $$; fi
if [ $n -eq 2 ]; then kill -9 $$; fi
# The third master: the orphan has ended by now or soon; kill -0 succeeds on
# a zombie, so it disappears only once init has reaped it.
i=0
while kill -0 $(cat %[2]s) 2>/dev/null; do
  i=$((i+1)); [ $i -gt 200 ] && { echo zombie > %[3]s; exit 0; }
  sleep 0.05
done
echo reaped > %[3]s
exit 0`, starts, orphan, result)
	start := time.Now()
	code := runSh(t, Config{MinBackoff: 100 * time.Millisecond}, script, nil)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if n := strings.Count(read(starts), "x"); n != 3 {
		t.Fatalf("the master started %d times, want 3", n)
	}
	if got := strings.TrimSpace(read(result)); got != "reaped" {
		t.Fatalf("the orphan: %q, want reaped", got)
	}
	// Two restarts: 100ms, then 200ms.
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("two restarts took %v, want the backoff (100ms + 200ms) at least", d)
	}
}

// SIGHUP is forwarded and the master goes on; SIGTERM is forwarded and the
// master's exit, whatever its status, ends init with that status.
func TestForwardsSignals(t *testing.T) {
	f := filepath.Join(t.TempDir(), "log")
	sigs := make(chan os.Signal, 32)
	go func() { // runSh fails the test after a minute if a step never comes
		if poll(func() bool { return strings.Contains(read(f), "ready") }) {
			sigs <- syscall.SIGHUP
		}
		if poll(func() bool { return strings.Contains(read(f), "hup") }) {
			sigs <- syscall.SIGTERM
		}
	}()
	code := runSh(t, Config{}, fmt.Sprintf(`trap 'echo hup >> %[1]s' HUP; trap 'exit 5' TERM; echo ready >> %[1]s
while :; do sleep 0.05; done`, f), sigs)
	if code != 5 {
		t.Fatalf("exit code %d, want the master's 5", code)
	}
	if n := strings.Count(read(f), "ready"); n != 1 {
		t.Errorf("the master started %d times, want once (SIGHUP is not a crash)", n)
	}
}

// A master that crashes again and again makes init give up after
// MaxCrashes restarts, with the master's status.
func TestGivesUpOnACrashLoop(t *testing.T) {
	starts := filepath.Join(t.TempDir(), "starts")
	code := runSh(t, Config{MinBackoff: 10 * time.Millisecond, MaxCrashes: 2}, fmt.Sprintf(`echo x >> %s; kill -9 $$`, starts), nil)
	if code != 128+9 {
		t.Fatalf("exit code %d, want 137 (SIGKILL)", code)
	}
	if n := strings.Count(read(starts), "x"); n != 3 {
		t.Fatalf("the master started %d times, want 3 (the first and 2 restarts)", n)
	}
}

// SIGTERM while the master is down and waiting for its restart ends init
// at once.
func TestStopWhileMasterIsDown(t *testing.T) {
	starts := filepath.Join(t.TempDir(), "starts")
	sigs := make(chan os.Signal, 32)
	var logs testutil.SyncBuffer
	go func() {
		if poll(func() bool { return strings.Contains(logs.String(), "the master crashed") }) {
			sigs <- syscall.SIGTERM // the backoff is a minute
		}
	}()
	start := time.Now()
	cfg := Config{MinBackoff: time.Minute, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	code := runSh(t, cfg, fmt.Sprintf(`echo x >> %s; kill -9 $$`, starts), sigs)
	if code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit code %d, want 143", code)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("stopping took %v, want no wait for the backoff", d)
	}
}

// A master that cannot be started ends init with 1.
func TestMissingMaster(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	if code := run(Config{Path: filepath.Join(t.TempDir(), "nope")}, sigs); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
}
