// Package testutil holds what the project's tests share: polling, free
// ports, building and running the project's binaries as real processes, and
// plain HTTP calls.
package testutil

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/netguard"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/token"
)

// Eventually calls f until it returns nil, failing t with f's last error
// after timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreePortRange returns the first of n consecutive loopback ports that are
// all free now, searching from a random point of 20000-32000 (below the
// kernel's ephemeral range, so client sockets do not take them).
func FreePortRange(t testing.TB, n int) int {
	t.Helper()
	const lo, hi = 20000, 32000
	slots := (hi - lo) / n
	first := int(time.Now().UnixNano() % int64(slots))
	for k := range slots {
		base := lo + (first+k)%slots*n
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports in %d-%d", n, lo, hi)
	return 0
}

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// Binary builds the main package pkg (an import path of this module, e.g.
// "./fleet/cmd/chatserver" relative to the module root) once per test
// binary and returns its path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if builtDir == "" {
		sweepBinaries()
		d, err := os.MkdirTemp("", fmt.Sprintf("chatfleet-bin-%d-", os.Getpid()))
		if err != nil {
			t.Fatal(err)
		}
		builtDir = d
	}
	out := filepath.Join(builtDir, filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = ModuleRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// sweepBinaries removes the binary folders of test processes that have
// exited: nothing runs when a test binary exits, so each one cleans up after
// those before it.
func sweepBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "chatfleet-bin-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "chatfleet-bin-%d-", &pid); err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		} else if fi, err := os.Stat(d); err == nil && pid == 0 && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(d)
		}
	}
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Proc is a project binary running as a real process.
type Proc struct {
	Cmd  *exec.Cmd
	out  string // file holding stdout and stderr
	done chan struct{}
	err  error
}

// Start runs bin with env added to the test's environment and args, and
// kills it (and its process group's stragglers, not its rooms) at cleanup.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	// A file, not a pipe: children that inherit the output (room processes)
	// must not keep Wait from returning when the process itself exits.
	out, err := os.CreateTemp(t.TempDir(), filepath.Base(bin)+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := &Proc{Cmd: cmd, out: out.Name(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

// Output returns what the process (and any child sharing its output) wrote
// to stdout and stderr so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) { p.Cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v", timeout)
		return nil
	}
}

// ExitCode returns the exit code after Done, or -1.
func (p *Proc) ExitCode() int { return p.Cmd.ProcessState.ExitCode() }

// Do sends one HTTP request with an optional X-API-Key and body and returns
// the status and body; a transport error fails t.
func Do(t testing.TB, method, url, key, body string) (int, string) {
	t.Helper()
	status, b, err := TryDo(method, url, key, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, b
}

// TryDo is Do that returns the transport error.
func TryDo(method, url, key, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// LoopbackName returns a host name other than localhost (which is refused
// by name) that resolves only to loopback here: the machine's name or one
// of /etc/hosts. It skips the test if there is none.
func LoopbackName(t testing.TB) string {
	t.Helper()
	var names []string
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	if b, err := os.ReadFile("/etc/hosts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[0], "127.") {
				names = append(names, f[1:]...)
			}
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "#") || netguard.CheckURLHost("http://"+n+"/") != nil {
			continue // localhost and its kin are refused by name
		}
		addrs, err := net.LookupHost(n)
		if err == nil && len(addrs) > 0 && !slices.ContainsFunc(addrs, func(a string) bool { return !strings.HasPrefix(a, "127.") }) {
			return n
		}
	}
	t.Skip("no host name other than localhost resolves to loopback here")
	return ""
}

// SyncBuffer is a bytes.Buffer that a logger or a process's output may
// write to from any goroutine while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Token returns a join token of room for user (the user id as its name) with
// role, signed with secret and valid for an hour.
func Token(t testing.TB, secret, room, user string, role chatfleet.Role) string {
	t.Helper()
	iss, err := token.NewIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Issue(room, "", user, user, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
