package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/hostapi"
)

// Chatserver is the real chatserver binary (./fleet/cmd/chatserver) run by a
// test on free loopback ports, with a state directory of its own.
type Chatserver struct {
	t         testing.TB
	Proc      *Proc
	API       string // http://127.0.0.1:<PORT>
	Admin     string // http://127.0.0.1:<ADMIN_PORT>
	APIPort   int
	AdminPort int
	RoomMin   int // its room ports: RoomMin to RoomMax
	RoomMax   int
	StateDir  string
	Env       []string // what Start runs it with
	Bin       string   // the binary Start runs; default: ./fleet/cmd/chatserver built
}

// NewChatserver chooses the ports (rooms of them for rooms) and the state
// directory of a chatserver, and its environment: those settings followed by
// env, where a later entry wins. Start runs it. The rooms it leaves are
// killed when the test ends, since rooms outlive their master by design.
func NewChatserver(t testing.TB, rooms int, env ...string) *Chatserver {
	t.Helper()
	c := &Chatserver{t: t, RoomMin: FreePortRange(t, rooms), StateDir: t.TempDir()}
	c.RoomMax = c.RoomMin + rooms - 1
	c.APIPort, c.AdminPort = FreePort(t), FreePort(t)
	c.API = fmt.Sprintf("http://127.0.0.1:%d", c.APIPort)
	c.Admin = fmt.Sprintf("http://127.0.0.1:%d", c.AdminPort)
	c.Env = append([]string{
		"PORT=" + strconv.Itoa(c.APIPort), "ADMIN_PORT=" + strconv.Itoa(c.AdminPort),
		"ROOM_PORT_MIN=" + strconv.Itoa(c.RoomMin), "ROOM_PORT_MAX=" + strconv.Itoa(c.RoomMax),
		"STATE_DIR=" + c.StateDir,
	}, env...)
	t.Cleanup(c.KillRooms)
	return c
}

// Start runs the chatserver (again, after it stopped) and waits until it
// listens on its API and admin ports and its /healthz answers. Ports chosen
// free a moment ago can be taken meanwhile by another test process: a
// chatserver that exits because its port is in use is started again on
// new API and admin ports (up to three times), and a /healthz counts only
// once this very process holds both ports.
func (c *Chatserver) Start() {
	c.t.Helper()
	if c.Bin == "" {
		c.Bin = Binary(c.t, "./fleet/cmd/chatserver")
	}
	for try := 1; ; try++ {
		c.Proc = Start(c.t, c.Bin, c.Env)
		var inUse bool
		Eventually(c.t, 30*time.Second, func() error {
			select {
			case <-c.Proc.Done():
				out := c.Proc.Output()
				if strings.Contains(out, "address already in use") && try < 3 {
					inUse = true
					return nil
				}
				return fmt.Errorf("chatserver exited: %s", out)
			default:
			}
			pid := c.Proc.Cmd.Process.Pid
			if !ListensOn(pid, c.APIPort) || !ListensOn(pid, c.AdminPort) {
				return fmt.Errorf("chatserver (pid %d) does not listen on ports %d and %d yet", pid, c.APIPort, c.AdminPort)
			}
			status, _, err := TryDo("GET", c.API+"/healthz", "", "")
			if err != nil || status != 200 {
				return fmt.Errorf("healthz: %d %v", status, err)
			}
			return nil
		})
		if !inUse {
			return
		}
		c.t.Logf("chatserver: a port was taken meanwhile; trying new API and admin ports")
		c.setPorts(FreePort(c.t), FreePort(c.t))
	}
}

// setPorts moves the API and admin ports, for the next Start.
func (c *Chatserver) setPorts(api, admin int) {
	c.APIPort, c.AdminPort = api, admin
	c.API = fmt.Sprintf("http://127.0.0.1:%d", api)
	c.Admin = fmt.Sprintf("http://127.0.0.1:%d", admin)
	for i, kv := range c.Env {
		switch {
		case strings.HasPrefix(kv, "PORT="):
			c.Env[i] = "PORT=" + strconv.Itoa(api)
		case strings.HasPrefix(kv, "ADMIN_PORT="):
			c.Env[i] = "ADMIN_PORT=" + strconv.Itoa(admin)
		}
	}
}

// ListensOn reports whether process pid holds a listening TCP socket on
// port (IPv4 or IPv6), from /proc: the socket's inode among the process's
// descriptors.
func ListensOn(pid, port int) bool {
	inodes := map[string]bool{}
	hexPort := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(line)
			if len(fs) > 9 && strings.HasSuffix(fs[1], hexPort) && fs[3] == "0A" {
				inodes[fs[9]] = true
			}
		}
	}
	if len(inodes) == 0 {
		return false
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(link, "socket:["); err == nil && ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true
		}
	}
	return false
}

// KillRooms ends every room process the state directory records.
func (c *Chatserver) KillRooms() {
	files, _ := filepath.Glob(filepath.Join(c.StateDir, "rooms", "*.json"))
	for _, f := range files {
		var st struct{ PID int }
		b, _ := os.ReadFile(f)
		if json.Unmarshal(b, &st) == nil && st.PID > 0 {
			syscall.Kill(st.PID, syscall.SIGKILL)
		}
	}
}

// Client returns a host API client of the chatserver's two ports, with key
// for the API port and adminKey for the admin port.
func (c *Chatserver) Client(key, adminKey string) *hostapi.Client {
	return &hostapi.Client{API: c.API, Key: key, Admin: c.Admin, AdminKey: adminKey}
}

// Create makes a room with opts through the API port with key and returns
// its port, failing the test unless the host made it.
func (c *Chatserver) Create(key, name string, opts hostapi.RoomOptions) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := c.Client(key, "").CreateRoom(ctx, name, opts)
	if err != nil {
		c.t.Fatalf("create %s: %v", name, err)
	}
	return created.Port
}
