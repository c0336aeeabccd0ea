package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// The version-skew tests run the previous release of chatserver (built from
// git at the commit testdata/previous-release names) against this one: an
// upgrade in place (SIGHUP after the binary is replaced), an upgrade after
// the master is killed, and a rollback in place. In each, every room keeps
// its process and its viewers, every viewer gets every message sent before,
// during and after the switch, in order, and the new master's admin
// commands reach the rooms the old one started.

var (
	previousOnce sync.Once
	previousBin  string
	previousVer  string
	previousErr  error
)

// previousRelease builds the previous release's chatserver once per test
// binary and returns its path and version.
func previousRelease(t *testing.T) (bin, version string) {
	t.Helper()
	previousOnce.Do(func() {
		previousBin, previousVer, previousErr = buildPrevious(testutil.ModuleRoot(t))
	})
	if previousErr != nil {
		t.Fatal(previousErr)
	}
	return previousBin, previousVer
}

// buildPrevious extracts the commit of testdata/previous-release from the
// repository's history (git archive: the work tree is not touched) and
// builds its chatserver with its version.
func buildPrevious(root string) (bin, version string, err error) {
	b, err := os.ReadFile("testdata/previous-release")
	if err != nil {
		return "", "", err
	}
	var commit string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			version, commit = f[0], f[1]
		}
	}
	if commit == "" {
		return "", "", fmt.Errorf("testdata/previous-release names no release")
	}
	// Named like testutil.Binary's folders, so that a later test process
	// removes it once this one has exited.
	dir, err := os.MkdirTemp("", fmt.Sprintf("chatfleet-bin-%d-previous-", os.Getpid()))
	if err != nil {
		return "", "", err
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", "", err
	}
	defer os.RemoveAll(src)
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", "", err
	}
	untar.Stdin = pipe
	var archiveErr strings.Builder
	archive.Stderr = &archiveErr
	if err := untar.Start(); err != nil {
		return "", "", err
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", "", fmt.Errorf("git archive %s (release %s; a clone without history cannot run this test): %v: %s", commit, version, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", "", fmt.Errorf("untar release %s: %v", version, err)
	}
	bin = filepath.Join(dir, "chatserver-"+version)
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", "-X github.com/chatfleet/chatfleet.Version="+version, "./fleet/cmd/chatserver")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("build release %s: %v\n%s", version, err, out)
	}
	return bin, version, nil
}

// skewRoom is a room of the skew tests, with its producer and viewers.
type skewRoom struct {
	name    string
	port    int
	pid     int
	prod    *websocket.Conn
	viewers []*skewViewer
}

// skewViewer collects the chat texts a viewer receives until "end".
type skewViewer struct {
	ws    *testutil.WS
	mu    sync.Mutex
	texts []string
	notes []string // system messages' texts
	done  chan error
}

func (v *skewViewer) read() {
	var err error
	defer func() { v.done <- err }()
	v.ws.Conn.SetReadDeadline(time.Now().Add(90 * time.Second))
	for {
		var frame []byte
		if _, frame, err = v.ws.Conn.ReadMessage(); err != nil {
			return
		}
		end := false
		protocol.Split(frame, func(b []byte) {
			var m protocol.ServerMsg
			if json.Unmarshal(b, &m) != nil {
				return
			}
			v.mu.Lock()
			defer v.mu.Unlock()
			switch m.Type {
			case protocol.TypeChat:
				v.texts = append(v.texts, m.Text)
				end = end || m.Text == "end"
			case protocol.TypeSystem:
				v.notes = append(v.notes, m.Text)
			}
		})
		if end {
			return
		}
	}
}

func (v *skewViewer) noted(text string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range v.notes {
		if n == text {
			return true
		}
	}
	return false
}

// skewHost runs bin (installed at its own path, so that it can be replaced)
// with three rooms of five viewers each.
func skewHost(t *testing.T, bin string) (*host, []*skewRoom) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chatserver")
	copyBinary(t, bin, path)
	h := &host{t: t, Chatserver: testutil.NewChatserver(t, 10,
		"KEY="+userKey, "ADMIN_KEY="+adminKey, "LOADBALANCERS=", "LOG_LEVEL=info", "TOKEN_SECRET="+secret,
		"ORPHAN_GRACE=30s", "DRAIN_WINDOW=500ms", "ROOM_READY_TIMEOUT=12s")}
	h.Bin = path
	h.Start()
	var rooms []*skewRoom
	for _, name := range []string{"skew-a", "skew-b", "skew-c"} {
		r := &skewRoom{name: name, port: h.create(name)}
		r.prod = join(t, r.port, name, "producer", chatfleet.RoleProducer).Conn
		for i := range 5 {
			v := &skewViewer{ws: join(t, r.port, name, fmt.Sprintf("viewer-%d", i), chatfleet.RoleViewer), done: make(chan error, 1)}
			go v.read()
			r.viewers = append(r.viewers, v)
		}
		rooms = append(rooms, r)
	}
	for _, info := range h.rooms() {
		for _, r := range rooms {
			if r.name == info.Name {
				r.pid = info.PID
			}
		}
	}
	return h, rooms
}

// chatter has each room's producer send numbered messages every 20 ms
// until stop is closed; it returns what each room's producer sent.
func chatter(t *testing.T, rooms []*skewRoom, stop <-chan struct{}) func() map[string][]string {
	var wg sync.WaitGroup
	sent := make(map[string][]string)
	var mu sync.Mutex
	for _, r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var texts []string
			defer func() { mu.Lock(); sent[r.name] = texts; mu.Unlock() }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				// The room allows a burst of chat, then slows a producer
				// down; 50 a second stays within it.
				text := fmt.Sprintf("m%04d", i)
				b, _ := json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: text})
				r.prod.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := r.prod.WriteMessage(websocket.TextMessage, b); err != nil {
					t.Errorf("room %s: producer send %s: %v", r.name, text, err)
					return
				}
				texts = append(texts, text)
			}
		}()
	}
	return func() map[string][]string { wg.Wait(); return sent }
}

// switchOver runs chatter, calls change (the upgrade or rollback), waits
// until the master answers with version want and has adopted every room
// (same process, no longer starting), and returns how long that took.
func switchOver(t *testing.T, h *host, rooms []*skewRoom, want string, change func()) time.Duration {
	t.Helper()
	stop := make(chan struct{})
	wait := chatter(t, rooms, stop)
	time.Sleep(200 * time.Millisecond) // traffic before the switch, too
	start := time.Now()
	change()
	testutil.Eventually(t, 30*time.Second, func() error {
		status, body, err := testutil.TryDo("GET", h.API+"/api/v1/", "", "")
		if err != nil || status != 200 || !strings.Contains(body, `"version":"`+want+`"`) {
			return fmt.Errorf("GET /api/v1/ = %d %s %v; want version %s", status, body, err, want)
		}
		status, body, err = testutil.TryDo("GET", h.Admin+"/api/v1/rooms", adminKey, "")
		if err != nil || status != 200 {
			return fmt.Errorf("list rooms: %d %v", status, err)
		}
		var resp struct{ Data struct{ Rooms []roomInfo } }
		json.Unmarshal([]byte(body), &resp)
		adopted := 0
		for _, info := range resp.Data.Rooms {
			for _, r := range rooms {
				if info.Name == r.name && info.PID == r.pid && info.Status != string(chatfleet.RoomStarting) {
					adopted++
				}
			}
		}
		if adopted != len(rooms) {
			return fmt.Errorf("%d of %d rooms adopted: %s", adopted, len(rooms), body)
		}
		return nil
	})
	took := time.Since(start)
	time.Sleep(200 * time.Millisecond) // and after it
	close(stop)
	sent := wait()
	for _, r := range rooms {
		b, _ := json.Marshal(protocol.ClientMsg{Type: protocol.TypeChat, Text: "end", ClientID: "end"})
		r.prod.WriteMessage(websocket.TextMessage, b)
	}
	for _, r := range rooms {
		want := append(sent[r.name], "end")
		for i, v := range r.viewers {
			select {
			case err := <-v.done:
				if err != nil {
					t.Fatalf("room %s viewer %d: %v", r.name, i, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("room %s viewer %d: no end message", r.name, i)
			}
			v.mu.Lock()
			got := strings.Join(v.texts, " ")
			v.mu.Unlock()
			if got != strings.Join(want, " ") {
				t.Fatalf("room %s viewer %d got %d messages, want the %d sent, in order:\ngot  %s\nwant %s", r.name, i, len(v.texts), len(want), got, strings.Join(want, " "))
			}
		}
	}
	return took
}

// adminReaches checks that the master's admin commands reach the rooms:
// a global message every viewer gets, then the close of one room.
func adminReaches(t *testing.T, h *host, rooms []*skewRoom) {
	t.Helper()
	for _, r := range rooms {
		for _, v := range r.viewers {
			v.done = make(chan error, 1)
			go v.read()
		}
	}
	text := "maintenance " + time.Now().Format(time.RFC3339Nano)
	if status, body := testutil.Do(t, "POST", h.Admin+"/api/v1/messages", adminKey, `{"text":"`+text+`"}`); status != 200 || !strings.Contains(body, fmt.Sprintf(`"rooms":%d`, len(rooms))) {
		t.Fatalf("global message: %d %s", status, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, r := range rooms {
			for i, v := range r.viewers {
				if !v.noted(text) {
					return fmt.Errorf("room %s viewer %d has no global message", r.name, i)
				}
			}
		}
		return nil
	})
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/"+rooms[0].name, adminKey, ""); status != 200 {
		t.Fatalf("close %s: %d %s", rooms[0].name, status, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if listening(rooms[0].port) {
			return fmt.Errorf("room %s still listening on %d", rooms[0].name, rooms[0].port)
		}
		return nil
	})
}

// restartLogged waits until the master logged its restart in place.
func restartLogged(t *testing.T, h *host) {
	testutil.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(h.Proc.Output(), "restarting in place") {
			return fmt.Errorf("no restart logged")
		}
		return nil
	})
}

func TestUpgradeInPlaceFromPreviousRelease(t *testing.T) {
	old, oldVersion := previousRelease(t)
	h, rooms := skewHost(t, old)
	cur := testutil.Binary(t, "./fleet/cmd/chatserver")
	took := switchOver(t, h, rooms, chatfleet.Version, func() {
		copyBinary(t, cur, h.Bin)
		h.Proc.Signal(syscall.SIGHUP)
		restartLogged(t, h)
	})
	t.Logf("%s -> %s by SIGHUP: every room re-adopted %v after the signal", oldVersion, chatfleet.Version, took.Round(time.Millisecond))
	adminReaches(t, h, rooms)
}

func TestUpgradeAfterKillFromPreviousRelease(t *testing.T) {
	old, oldVersion := previousRelease(t)
	h, rooms := skewHost(t, old)
	cur := testutil.Binary(t, "./fleet/cmd/chatserver")
	took := switchOver(t, h, rooms, chatfleet.Version, func() {
		h.Proc.Signal(syscall.SIGKILL)
		h.Proc.Wait(t, 5*time.Second)
		copyBinary(t, cur, h.Bin)
		h.Start()
	})
	t.Logf("%s -> %s by kill -9 and start: every room re-adopted %v after the kill", oldVersion, chatfleet.Version, took.Round(time.Millisecond))
	adminReaches(t, h, rooms)
}

func TestRollbackInPlaceToPreviousRelease(t *testing.T) {
	old, oldVersion := previousRelease(t)
	h, rooms := skewHost(t, testutil.Binary(t, "./fleet/cmd/chatserver"))
	took := switchOver(t, h, rooms, oldVersion, func() {
		copyBinary(t, old, h.Bin)
		h.Proc.Signal(syscall.SIGHUP)
		restartLogged(t, h)
	})
	t.Logf("%s -> %s by SIGHUP (rollback): every room re-adopted %v after the signal", chatfleet.Version, oldVersion, took.Round(time.Millisecond))
	adminReaches(t, h, rooms)
}
