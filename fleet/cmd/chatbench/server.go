package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a chatserver this benchmark built and started, on loopback ports
// of its own, with its own state directory.
type server struct {
	cmd       *exec.Cmd
	dir       string
	apiPort   int
	adminPort int
	key       string
	adminKey  string
	secret    string
	logPath   string
	http      *http.Client
	exited    chan struct{}
}

// buildServer builds the chatserver (not the race build) into dir.
func buildServer(dir string) (string, error) {
	bin := filepath.Join(dir, "chatserver")
	cmd := exec.Command("go", "build", "-o", bin, "./fleet/cmd/chatserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./fleet/cmd/chatserver: %v\n%s", err, out)
	}
	return bin, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// freePortRange returns the first of n consecutive free loopback ports in
// 20000-32000 (below the ephemeral range, so client sockets do not take them).
func freePortRange(n int) (int, error) {
	start := 20000 + int(time.Now().UnixNano()%11000)
	for try := 0; try < 40; try++ {
		base := 20000 + (start-20000+try*(n+7))%(12000-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free room port range")
}

// startServer runs bin with a fresh state directory under dir, LOG_LEVEL=error,
// loopback only, and waits until its API answers. Extra environment (such as
// ROOM_PPROF_DIR) is appended.
func startServer(bin, dir string, roomPorts int, extraEnv ...string) (*server, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	roomMin, err := freePortRange(roomPorts)
	if err != nil {
		return nil, err
	}
	s := &server{
		dir: dir, apiPort: api, adminPort: admin,
		key: "bench-" + randHex(12), adminKey: "bench-admin-" + randHex(12), secret: randHex(32),
		logPath: filepath.Join(dir, "chatserver.log"),
		http:    &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		exited:  make(chan struct{}),
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd = exec.Command(bin)
	// A clean environment: nothing of the caller's store, load balancers or
	// IMDS settings reaches it.
	s.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"KEY=" + s.key, "ADMIN_KEY=" + s.adminKey, "TOKEN_SECRET=" + s.secret,
		"PORT=" + strconv.Itoa(api), "ADMIN_PORT=" + strconv.Itoa(admin), "BIND_ADDR=127.0.0.1",
		"ROOM_PORT_MIN=" + strconv.Itoa(roomMin), "ROOM_PORT_MAX=" + strconv.Itoa(roomMin+roomPorts-1),
		"ROOM_BIND=127.0.0.1", "PUBLIC_HOST=127.0.0.1", "HOST_ID=chatbench",
		"STATE_DIR=" + state, "LOG_LEVEL=error", "DRAIN_WINDOW=500ms", "STOP_DEADLINE=5s",
		// Every viewer comes from loopback: no per-address cap (MAX_ROOM_CONNS,
		// 20,000 by default, stays above the 10,000 viewers of one room).
		"MAX_CONNS_PER_IP=0",
	}, extraEnv...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chatserver: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := s.http.Get(s.apiURL("/api/v1/"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("chatserver exited at start: %s", s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("chatserver did not answer in 15s: %s", s.logTail())
		}
	}
}

func (s *server) apiURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.apiPort, path)
}

func (s *server) adminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.adminPort, path)
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop shuts the chatserver down (its rooms drain), killing its process
// group if it takes more than 20 s.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// call does one API request and decodes {"data": …} into out.
func (s *server) call(ctx context.Context, method, url, key string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	return json.Unmarshal(env.Data, out)
}

// createRoom creates name and returns its port.
func (s *server) createRoom(ctx context.Context, name string) (int, error) {
	var out struct {
		Port int `json:"port"`
	}
	if err := s.call(ctx, "POST", s.apiURL("/api/v1/room/"+name), s.key, map[string]any{}, &out); err != nil {
		return 0, err
	}
	return out.Port, nil
}

func (s *server) closeRoom(ctx context.Context, name string) error {
	return s.call(ctx, "DELETE", s.apiURL("/api/v1/room/"+name), s.key, map[string]string{"reason": "benchmark done"}, nil)
}

type roomInfo struct {
	Name  string `json:"name"`
	Port  int    `json:"port"`
	PID   int    `json:"pid"`
	Stats struct {
		Conns      int   `json:"conns"`
		Seq        int64 `json:"seq"`
		Deliveries int64 `json:"deliveries"`
		SlowDrops  int64 `json:"slowDrops"`
	} `json:"stats"`
}

// rooms lists the rooms through the admin port.
func (s *server) rooms(ctx context.Context) ([]roomInfo, error) {
	var out struct {
		Rooms []roomInfo `json:"rooms"`
	}
	err := s.call(ctx, "GET", s.adminURL("/api/v1/rooms"), s.adminKey, nil, &out)
	return out.Rooms, err
}

// roomPID returns the process id of room name.
func (s *server) roomPID(ctx context.Context, name string) (int, error) {
	rs, err := s.rooms(ctx)
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		if r.Name == name && r.PID > 0 {
			return r.PID, nil
		}
	}
	return 0, fmt.Errorf("room %s not listed", name)
}
