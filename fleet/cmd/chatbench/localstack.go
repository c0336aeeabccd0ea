package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// localStack is the whole platform on loopback (go run ./localstack): the
// embedded store, two load balancers, two chatservers and the control API,
// started with free ports and a fresh data folder of its own.
type localStack struct {
	cmd       *exec.Cmd
	port      int  // control API
	storePort int  // the embedded store
	pprof     bool // it runs with PPROF_DIR: SIGUSR1 toggles a CPU profile
	lbPort    int  // the first load balancer
	lbKey     string
	apiKey    string
	http      *http.Client
	logPath   string
	exited    chan struct{}
}

// startLocalStack builds the local stack and the binaries it runs into dir
// (reusing the chatserver at serverBin) and waits until its room API answers.
// extraEnv is added to its environment.
func startLocalStack(dir, serverBin string, extraEnv ...string) (*localStack, error) {
	bin := filepath.Join(dir, "lsbin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	if err := os.Link(serverBin, filepath.Join(bin, "chatserver")); err != nil {
		return nil, err
	}
	for _, p := range []struct{ out, pkg string }{{"loadbalancer", "./fleet/cmd/loadbalancer"}, {"localstack", "./localstack"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, p.out), p.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
		}
	}
	var ports []int
	for range 8 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	roomMin, err := freePortRange(1000)
	if err != nil {
		return nil, err
	}
	ls := &localStack{port: ports[0], storePort: ports[1], lbPort: ports[2], lbKey: "bench-lb-" + randHex(8), apiKey: "bench-api-" + randHex(8), logPath: filepath.Join(dir, "localstack.log"),
		exited: make(chan struct{})}
	ls.http = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	logf, err := os.Create(ls.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	ls.cmd = exec.Command(filepath.Join(bin, "localstack"))
	ls.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"CHATFLEET_DATA=" + filepath.Join(dir, "lsdata"), "CHATFLEET_RESET=1", "CHATFLEET_BIN=" + bin,
		"HTTP_PORT=" + strconv.Itoa(ports[0]), "STORE_PORT=" + strconv.Itoa(ports[1]),
		fmt.Sprintf("LB_PORTS=%d,%d", ports[2], ports[3]),
		fmt.Sprintf("HOST_PORTS=%d,%d", ports[4], ports[5]), fmt.Sprintf("HOST_ADMIN_PORTS=%d,%d", ports[6], ports[7]),
		"ROOM_PORT_MIN=" + strconv.Itoa(roomMin), "LOG_LEVEL=error",
		"API_KEY=" + ls.apiKey, "ADMIN_API_KEY=bench-admin-api-" + randHex(8),
		"KEY=bench-" + randHex(8), "ADMIN_KEY=bench-admin-" + randHex(8), "LOADBALANCER_KEY=" + ls.lbKey,
		"TOKEN_SECRET=" + randHex(32),
	}
	ls.cmd.Env = append(ls.cmd.Env, extraEnv...)
	ls.cmd.Stdout, ls.cmd.Stderr = logf, logf
	ls.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ls.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start local stack: %w", err)
	}
	go func() { ls.cmd.Wait(); close(ls.exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ls.call(ctx, "GET", ls.url("/api/v1/rooms"), ls.apiKey, nil, nil)
		cancel()
		if err == nil {
			return ls, nil
		}
		select {
		case <-ls.exited:
			return nil, fmt.Errorf("local stack exited at start: %s", tail(ls.logPath))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			ls.stop()
			return nil, fmt.Errorf("local stack did not answer in 90s: %v", err)
		}
	}
}

// profile starts, or stops and writes, a CPU profile of the local stack's
// own process (the control API and the embedded store), if it runs with
// PPROF_DIR (chatbench -pprof): localstack-<pid>-<n>.cpu.prof there, one
// per phase of controlAPI.
func (ls *localStack) profile() {
	if !ls.pprof {
		return // SIGUSR1 would end it
	}
	ls.cmd.Process.Signal(syscall.SIGUSR1)
	time.Sleep(50 * time.Millisecond) // the handler starts or stops the profile
}

func (ls *localStack) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", ls.port, path)
}

// stop ends the stack (it stops its children), killing its process group
// after 30 s.
func (ls *localStack) stop() {
	ls.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ls.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-ls.cmd.Process.Pid, syscall.SIGKILL)
		<-ls.exited
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

// Sizes of the control API scenario (issue 21): creates from 8 concurrent
// callers, then token issue (over the created rooms, then all for one room)
// and listing with storedRooms open rooms in the
// store.
const (
	controlConc = 8
	storedRooms = 1000
)

// controlAPI measures the control API of the local stack: n creates from 8
// concurrent callers (each picks a host through the load balancers, starts
// the room on it and records it in the store); then, with the store filled
// up to 1,000 open rooms (records of a host that does not exist, written in
// one SyncHost), the listing and token issue, 8 at a time, for d each.
func (b *bench) controlAPI(ctx context.Context, serverBin string, n int, d time.Duration) error {
	dir, err := os.MkdirTemp("", "chatbench-ls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	var extra []string
	if b.pprofDir != "" {
		extra = append(extra, "PPROF_DIR="+b.pprofDir)
	}
	ls, err := startLocalStack(dir, serverBin, extra...)
	if err != nil {
		return err
	}
	ls.pprof = b.pprofDir != ""
	defer ls.stop() // the hosts close their rooms
	b.logf("local stack up in %.1fs", time.Since(t0).Seconds())
	// The hosts reach the load balancers with their first heartbeats.
	warm := time.Now().Add(30 * time.Second)
	for {
		err := ls.call(ctx, "POST", ls.url("/api/v1/rooms/warmup-"+randHex(3)), ls.apiKey, map[string]any{}, nil)
		if err == nil {
			break
		}
		if time.Now().After(warm) || ctx.Err() != nil {
			return fmt.Errorf("control API: no room created in 30s: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	add := func(name string, lat []time.Duration, wall time.Duration, gen time.Duration, detail string) {
		b.res.add(row{Scenario: "control", Case: name, Value: float64(len(lat)) / wall.Seconds(), Unit: "req/s",
			P50ms: ms(percentile(lat, 0.5)), P99ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
			WallS: wall.Seconds(), GenCPUS: gen.Seconds(), Detail: detail})
		b.logf("control API %s: %.1f req/s p50 %.1f ms p99 %.1f ms; %s", name, float64(len(lat))/wall.Seconds(), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), detail)
	}

	prefix := "api-" + randHex(3)
	var mu sync.Mutex
	var created []string
	pid := ls.cmd.Process.Pid
	self0, tree0 := selfCPU(), treeCPU(pid)
	ls.profile()
	lat, wall, err := hammer(ctx, controlConc, n, 2*time.Minute, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		if err := ls.call(ctx, "POST", ls.url("/api/v1/rooms/"+name), ls.apiKey, map[string]any{}, nil); err != nil {
			return err
		}
		mu.Lock()
		created = append(created, name)
		mu.Unlock()
		return nil
	})
	ls.profile()
	if err != nil {
		return err
	}
	add(fmt.Sprintf("control API create (%d conc.)", controlConc), lat, wall, selfCPU()-self0,
		fmt.Sprintf("%d rooms through the local stack (functions/api, 2 LBs, 2 hosts, embedded store); %s", len(lat), cpuSplit(tree0, treeCPU(pid))))

	// The pick alone, what each create asks the load balancers first: 64
	// calls, since each counts as a room on its host until the host's next
	// heartbeat.
	self0 = selfCPU()
	lat, wall, err = hammer(ctx, controlConc, 64, time.Second, func(ctx context.Context, _ int) error {
		return ls.call(ctx, "POST", fmt.Sprintf("http://127.0.0.1:%d/api/v1/pick", ls.lbPort), ls.lbKey, map[string]any{}, nil)
	})
	if err != nil {
		return err
	}
	add(fmt.Sprintf("load balancer pick (%d conc.)", controlConc), lat, wall, selfCPU()-self0,
		fmt.Sprintf("%d calls, POST /api/v1/pick on one load balancer of the stack", len(lat)))

	open := len(created) + 1 // and the warm-up room
	if err := ls.fillStore(ctx, storedRooms-open); err != nil {
		return fmt.Errorf("fill the store: %w", err)
	}
	// Token issue, then the listing, both with the store full. An answer
	// 503 (the store did not answer in time) is counted, not fatal.
	phase := func(name, what string, call func(ctx context.Context, i int) error) error {
		var unavailable atomic.Int64
		self0, tree0 := selfCPU(), treeCPU(pid)
		ls.profile()
		lat, wall, err := hammer(ctx, controlConc, 50000, d, func(ctx context.Context, i int) error {
			err := call(ctx, i)
			if err != nil && strings.Contains(err.Error(), ": HTTP 503:") {
				unavailable.Add(1)
				return nil
			}
			return err
		})
		ls.profile()
		if err != nil {
			return err
		}
		detail := fmt.Sprintf("%d calls, %s, %d open rooms stored; %s", len(lat), what, storedRooms, cpuSplit(tree0, treeCPU(pid)))
		if n := unavailable.Load(); n > 0 {
			detail = fmt.Sprintf("%d of them 503 (the store did not answer in 2 s); %s", n, detail)
		}
		add(name, lat, wall, selfCPU()-self0, detail)
		return nil
	}
	if err := phase(fmt.Sprintf("control API token issue (%d conc.)", controlConc), "POST /api/v1/rooms/{name}/tokens (viewer)",
		func(ctx context.Context, i int) error {
			return ls.call(ctx, "POST", ls.url("/api/v1/rooms/"+created[i%len(created)]+"/tokens"), ls.apiKey, map[string]any{"role": "viewer"}, nil)
		}); err != nil {
		return err
	}
	// A crowd joining one room: every token for the same room, which the
	// control API's read cache serves from about one store read a second.
	if err := phase(fmt.Sprintf("control API token issue, one room (%d conc.)", controlConc), "POST /api/v1/rooms/{name}/tokens (viewer), all for one room",
		func(ctx context.Context, _ int) error {
			return ls.call(ctx, "POST", ls.url("/api/v1/rooms/"+created[0]+"/tokens"), ls.apiKey, map[string]any{"role": "viewer"}, nil)
		}); err != nil {
		return err
	}
	return phase(fmt.Sprintf("control API list, %d rooms (%d conc.)", storedRooms, controlConc), "GET /api/v1/rooms?limit=50 (sort by viewers)",
		func(ctx context.Context, _ int) error {
			return ls.call(ctx, "GET", ls.url("/api/v1/rooms?limit=50"), ls.apiKey, nil, nil)
		})
}

// fillStore adds n open rooms to the local stack's store in one insertMany,
// as records of a host named bench-records, which no load balancer knows;
// they hold no process. (Through the Store, SyncHost would first look the
// names up, which on the embedded store costs a read of every room per
// name.)
func (ls *localStack) fillStore(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	cl, err := mongodrv.Connect(options.Client().ApplyURI(fmt.Sprintf("mongodb://127.0.0.1:%d/", ls.storePort)))
	if err != nil {
		return err
	}
	defer cl.Disconnect(context.Background())
	now := time.Now().UTC().Truncate(time.Millisecond)
	docs := make([]any, n)
	for i := range docs {
		docs[i] = &chatfleet.Room{Name: fmt.Sprintf("rec-%04d", i), HostID: "bench-records", HostAddr: "127.0.0.1", Port: 1 + i%60000,
			Status: chatfleet.RoomOffline, Viewers: i % 97, Title: "a stored room", OwnerID: "owner-bench", Instance: randHex(16),
			CreatedAt: now, UpdatedAt: now}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = cl.Database("chatfleet").Collection("rooms").InsertMany(ctx, docs)
	return err
}

// call does one request to the control API and decodes {"data": …} into out.
func (ls *localStack) call(ctx context.Context, method, url, key string, body any, out any) error {
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
	resp, err := ls.http.Do(req)
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

// treeCPU returns the CPU time of pid and of every process below it, summed
// by kind: the local stack itself (control API and embedded store), the
// chatserver masters, their room processes, the load balancers.
func treeCPU(pid int) map[string]time.Duration {
	out := map[string]time.Duration{}
	var walk func(pid int, depth int)
	walk = func(pid int, depth int) {
		if depth > 4 {
			return
		}
		cpu, err := procCPU(pid)
		if err != nil {
			return
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		kind := strings.TrimSpace(string(comm))
		switch {
		case depth == 0:
			kind = "localstack"
		case kind == "chatserver" && depth > 1:
			kind = "rooms"
		}
		out[kind] += cpu
		// A child is listed under the thread that started it.
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, t := range tasks {
			children, _ := os.ReadFile(t)
			for _, c := range strings.Fields(string(children)) {
				if n, err := strconv.Atoi(c); err == nil {
					walk(n, depth+1)
				}
			}
		}
	}
	walk(pid, 0)
	return out
}

// cpuSplit says how much CPU each kind of process of the stack used since
// before, in seconds, for a row's detail.
func cpuSplit(before, after map[string]time.Duration) string {
	var parts []string
	for _, k := range []string{"localstack", "chatserver", "rooms", "loadbalancer"} {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, (after[k]-before[k]).Seconds()))
	}
	return "CPU s: " + strings.Join(parts, ", ")
}
