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
	"sync"
	"syscall"
	"time"
)

// localStack is the whole platform on loopback (go run ./localstack): the
// embedded store, two load balancers, two chatservers and the control API,
// started with free ports and a fresh data folder of its own.
type localStack struct {
	cmd     *exec.Cmd
	port    int // control API
	apiKey  string
	http    *http.Client
	logPath string
	exited  chan struct{}
}

// startLocalStack builds the local stack and the binaries it runs into dir
// (reusing the chatserver at serverBin) and waits until its room API answers.
func startLocalStack(dir, serverBin string) (*localStack, error) {
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
	ls := &localStack{port: ports[0], apiKey: "bench-api-" + randHex(8), logPath: filepath.Join(dir, "localstack.log"),
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
		"KEY=bench-" + randHex(8), "ADMIN_KEY=bench-admin-" + randHex(8), "LOADBALANCER_KEY=bench-lb-" + randHex(8),
		"TOKEN_SECRET=" + randHex(32),
	}
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

// controlAPI measures the control API of the local stack: n creates, 4 at a
// time (each picks a host through the load balancers, records the room in
// the store and starts its process), then the listing, 8 at a time, for d.
func (b *bench) controlAPI(ctx context.Context, serverBin string, n int, d time.Duration) error {
	dir, err := os.MkdirTemp("", "chatbench-ls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	ls, err := startLocalStack(dir, serverBin)
	if err != nil {
		return err
	}
	defer ls.stop()
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
	prefix := "api-" + randHex(3)
	var mu sync.Mutex
	var created []string
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, name := range created {
			ls.call(cctx, "DELETE", ls.url("/api/v1/rooms/"+name), ls.apiKey, map[string]string{}, nil)
		}
	}()
	self0 := selfCPU()
	lat, wall, err := hammer(ctx, 4, n, time.Minute, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		if err := ls.call(ctx, "POST", ls.url("/api/v1/rooms/"+name), ls.apiKey, map[string]any{}, nil); err != nil {
			return err
		}
		mu.Lock()
		created = append(created, name)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.res.add(row{Scenario: "control", Case: "control API create (4 conc.)", Value: float64(len(lat)) / wall.Seconds(), Unit: "req/s",
		P50ms: ms(percentile(lat, 0.5)), P99ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		WallS: wall.Seconds(), GenCPUS: (selfCPU() - self0).Seconds(),
		Detail: fmt.Sprintf("%d rooms through the local stack (functions/api, 2 LBs, 2 hosts, embedded store)", len(lat))})
	self0 = selfCPU()
	lat, wall, err = hammer(ctx, 8, 50000, d, func(ctx context.Context, _ int) error {
		return ls.call(ctx, "GET", ls.url("/api/v1/rooms?limit=50"), ls.apiKey, nil, nil)
	})
	if err != nil {
		return err
	}
	b.res.add(row{Scenario: "control", Case: fmt.Sprintf("control API list, %d rooms (8 conc.)", n+1), Value: float64(len(lat)) / wall.Seconds(), Unit: "req/s",
		P50ms: ms(percentile(lat, 0.5)), P99ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		WallS: wall.Seconds(), GenCPUS: (selfCPU() - self0).Seconds(), Detail: fmt.Sprintf("%d calls, GET /api/v1/rooms?limit=50", len(lat))})
	b.logf("control API: create %.1f req/s p99 %.0f ms; list %.0f req/s p99 %.1f ms",
		b.res.Rows[len(b.res.Rows)-2].Value, b.res.Rows[len(b.res.Rows)-2].P99ms, b.res.Rows[len(b.res.Rows)-1].Value, b.res.Rows[len(b.res.Rows)-1].P99ms)
	return nil
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
