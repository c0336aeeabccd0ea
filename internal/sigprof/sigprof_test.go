package sigprof

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestOnSignal: two SIGUSR1 make one CPU profile, then after runs with its
// base.
func TestOnSignal(t *testing.T) {
	dir := t.TempDir()
	done := make(chan string, 1)
	OnSignal(dir, "test", func(base string) { done <- base }, func(err error) { t.Error(err) })
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	// The second signal must come after the first was taken: wait for the
	// profile's file.
	tmp, _ := filepath.Glob(filepath.Join(dir, "*.cpu.prof.tmp"))
	for deadline := time.Now().Add(10 * time.Second); len(tmp) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		tmp, _ = filepath.Glob(filepath.Join(dir, "*.cpu.prof.tmp"))
	}
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	select {
	case base := <-done:
		if st, err := os.Stat(base + ".cpu.prof"); err != nil || st.Size() == 0 {
			t.Fatalf("profile %s.cpu.prof: %v, %+v", base, err, st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no profile after two signals")
	}
}
