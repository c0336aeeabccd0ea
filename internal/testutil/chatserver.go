package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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

// Start runs the chatserver (again, after it stopped) and waits until its
// /healthz answers.
func (c *Chatserver) Start() {
	c.t.Helper()
	if c.Bin == "" {
		c.Bin = Binary(c.t, "./fleet/cmd/chatserver")
	}
	c.Proc = Start(c.t, c.Bin, c.Env)
	Eventually(c.t, 30*time.Second, func() error {
		select {
		case <-c.Proc.Done():
			return fmt.Errorf("chatserver exited: %s", c.Proc.Output())
		default:
		}
		status, _, err := TryDo("GET", c.API+"/healthz", "", "")
		if err != nil || status != 200 {
			return fmt.Errorf("healthz: %d %v", status, err)
		}
		return nil
	})
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
