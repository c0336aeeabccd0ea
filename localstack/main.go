// Command localstack runs the whole chatfleet platform on one machine, with
// nothing installed: the embedded store (FerretDB on SQLite), two
// load-balancer instances, two fleet hosts (chatserver daemons), and the
// control API and web client on http://localhost:3000, served through the
// same Lambda adapter path as in AWS. `make run` builds the binaries and
// starts it; Ctrl-C stops everything.
//
// It is a development tool: it links the embedded store, which no
// production binary does.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet/devnats"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/envconf"
	"github.com/chatfleet/chatfleet/web"
)

// config is the local stack's configuration, from the environment.
type config struct {
	DataDir     string // CHATFLEET_DATA, default .data
	Reset       bool   // CHATFLEET_RESET=1 wipes DataDir first
	BinDir      string // where chatserver and loadbalancer are; default: next to this binary
	HTTPPort    int    // HTTP_PORT: control API and web client, default 3000
	LBPorts     []int  // LB_PORTS, default 2000,2001
	HostPorts   []int  // HOST_PORTS, default 8080,8081
	AdminPorts  []int  // HOST_ADMIN_PORTS, default 8090,8091
	RoomPortMin int    // ROOM_PORT_MIN, default 34000; each host gets 500 ports
	StorePort   int    // STORE_PORT, default 27018 (embedded store)
	MongoURI    string // MONGODB_URI: use this MongoDB instead of the embedded store
	NATSURL     string // NATS_URL: use this NATS instead of the embedded one (devnats)
	// PprofDir is PPROF_DIR: if set, SIGUSR1 starts a CPU profile of this
	// process and the next one writes it there (profileOnSignal).
	PprofDir string
	LogLevel string // LOG_LEVEL of the children, default info
	// StoreLogLevel is STORE_LOG_LEVEL, the lowest level of the embedded
	// store's lines written to DataDir/store.log: info by default; debug
	// adds every request and response, whole.
	StoreLogLevel slog.Level
	// AllowPrivateHooks is the hosts' WEBHOOK_ALLOW_PRIVATE: "1" (the
	// default here) lets rooms' webhookUrls reach receivers on this
	// machine; "0" refuses them as a production host does.
	AllowPrivateHooks string
	// BindAddr is BIND_ADDR, the address the embedded store and the hosts'
	// API, admin and room ports listen on: 127.0.0.1 by default; 0.0.0.0
	// lets containers reach them through the Docker host's address (sam
	// local on Docker Desktop, docs/control-api.md).
	BindAddr string
	// PublicHost is PUBLIC_HOST, the name hosts advertise in their API,
	// admin and room URLs: 127.0.0.1 by default; host.docker.internal for
	// functions in Docker Desktop's containers.
	PublicHost string
	keys       keys
}

// keys are the stack's credentials: the seed's example keys unless the
// environment says otherwise, and a token secret generated once and kept
// in DataDir.
type keys struct {
	Key         string `json:"-"`
	AdminKey    string `json:"-"`
	LBKey       string `json:"-"`
	APIKey      string `json:"-"`
	AdminAPIKey string `json:"-"`
	TokenSecret string `json:"tokenSecret"`
}

// ports reads name, comma-separated port numbers, def if unset.
func ports(r *envconf.Reader, name, def string) []int {
	var out []int
	for _, s := range strings.Split(r.Str(name, def), ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p <= 0 || p > 65535 {
			r.Fail("%s=%q: want comma-separated port numbers", name, r.Str(name, def))
			return nil
		}
		out = append(out, p)
	}
	return out
}

func configFromEnv(getenv func(string) string) (config, error) {
	r := envconf.New(getenv)
	c := config{
		DataDir:       r.Str("CHATFLEET_DATA", ".data"),
		Reset:         r.Flag("CHATFLEET_RESET"),
		BinDir:        r.Str("CHATFLEET_BIN", ""),
		MongoURI:      r.Str("MONGODB_URI", ""),
		NATSURL:       r.Str("NATS_URL", ""),
		PprofDir:      r.Str("PPROF_DIR", ""),
		LogLevel:      r.Str("LOG_LEVEL", "info"),
		StoreLogLevel: r.LogLevel("STORE_LOG_LEVEL", slog.LevelInfo),
		HTTPPort:      r.IntIn("HTTP_PORT", 3000, 1, 65535),
		RoomPortMin:   r.IntIn("ROOM_PORT_MIN", 34000, 1, 65535),
		StorePort:     r.IntIn("STORE_PORT", 27018, 1, 65535),
		BindAddr:      r.Str("BIND_ADDR", "127.0.0.1"),
		PublicHost:    r.Str("PUBLIC_HOST", "127.0.0.1"),
		LBPorts:       ports(r, "LB_PORTS", "2000,2001"),
		HostPorts:     ports(r, "HOST_PORTS", "8080,8081"),
		AdminPorts:    ports(r, "HOST_ADMIN_PORTS", "8090,8091"),
		// A local stack's receivers are local: rooms may call them.
		AllowPrivateHooks: r.Str("WEBHOOK_ALLOW_PRIVATE", "1"),
		keys: keys{
			Key:         r.Str("KEY", "TESTING_KEY"),
			AdminKey:    r.Str("ADMIN_KEY", "ADMIN_TESTING_KEY"),
			LBKey:       r.Str("LOADBALANCER_KEY", "LB_TESTING_KEY"),
			APIKey:      r.Str("API_KEY", "DEV_API_KEY"),
			AdminAPIKey: r.Str("ADMIN_API_KEY", "DEV_ADMIN_API_KEY"),
			TokenSecret: r.Str("TOKEN_SECRET", ""),
		},
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	if net.ParseIP(c.BindAddr) == nil {
		return c, fmt.Errorf("BIND_ADDR=%q: want an IP address, such as 127.0.0.1 or 0.0.0.0", c.BindAddr)
	}
	if len(c.HostPorts) != len(c.AdminPorts) {
		return c, errors.New("HOST_PORTS and HOST_ADMIN_PORTS must list as many ports")
	}
	if c.BinDir == "" {
		self, e := os.Executable()
		if e != nil {
			return c, fmt.Errorf("find own binary: %w", e)
		}
		c.BinDir = filepath.Dir(self)
	}
	return c, nil
}

func main() {
	cfg, err := configFromEnv(os.Getenv)
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		go func() { <-ctx.Done(); stop() }() // a second Ctrl-C exits at once
		err = run(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatfleet:", err)
		os.Exit(1)
	}
}

// checkPorts fails with the port and the variable that changes it if any
// port the stack needs is taken.
func checkPorts(cfg config) error {
	type want struct {
		port int
		env  string
	}
	ws := []want{{cfg.HTTPPort, "HTTP_PORT"}}
	if cfg.MongoURI == "" {
		ws = append(ws, want{cfg.StorePort, "STORE_PORT"})
	}
	for _, p := range cfg.LBPorts {
		ws = append(ws, want{p, "LB_PORTS"})
	}
	for i := range cfg.HostPorts {
		ws = append(ws, want{cfg.HostPorts[i], "HOST_PORTS"}, want{cfg.AdminPorts[i], "HOST_ADMIN_PORTS"})
	}
	ws = append(ws, want{cfg.RoomPortMin, "ROOM_PORT_MIN"})
	for _, w := range ws {
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(w.port)))
		if err != nil {
			return fmt.Errorf("port %d is busy; set %s to use another (%v)", w.port, w.env, err)
		}
		ln.Close()
	}
	return nil
}

// loadKeys keeps the generated token secret in DataDir so that tokens stay
// valid across runs.
func loadKeys(cfg *config) error {
	if cfg.keys.TokenSecret != "" {
		return nil
	}
	path := filepath.Join(cfg.DataDir, "keys.json")
	if b, err := os.ReadFile(path); err == nil {
		var k keys
		if json.Unmarshal(b, &k) == nil && k.TokenSecret != "" {
			cfg.keys.TokenSecret = k.TokenSecret
			return nil
		}
	}
	var b [32]byte
	rand.Read(b[:])
	cfg.keys.TokenSecret = hex.EncodeToString(b[:])
	out, _ := json.Marshal(cfg.keys)
	return os.WriteFile(path, out, 0o600)
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.Reset {
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return fmt.Errorf("wipe %s: %w", cfg.DataDir, err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if err := checkPorts(cfg); err != nil {
		return err
	}
	if err := loadKeys(&cfg); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	logs := &logPrinter{out: out}
	k := cfg.keys
	profileOnSignal(cfg.PprofDir, out)

	storeURI, storeDesc := cfg.MongoURI, "MONGODB_URI"
	if storeURI == "" {
		st, err := startStore(ctx, cfg, logs)
		if err != nil {
			return err
		}
		defer st.Stop()
		storeURI = st.URI()
		storeDesc = fmt.Sprintf("embedded FerretDB/SQLite in %s; its log: %s",
			filepath.Join(cfg.DataDir, "store"), filepath.Join(cfg.DataDir, storeLogName))
	}

	// NATS carries rooms spread over both hosts (origins and edges,
	// docs/scaleout.md). Stopped after the hosts (defers run in reverse).
	natsURL, natsDesc := cfg.NATSURL, "NATS_URL"
	if natsURL == "" {
		dir := filepath.Join(cfg.DataDir, "nats")
		ns, err := devnats.Start(devnats.Config{Dir: dir})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		defer ns.Stop()
		natsURL, natsDesc = ns.URL(), "embedded NATS with JetStream in "+dir
	}

	var procs []*child
	defer func() {
		// Hosts first (they drain their rooms), then the load balancers.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(20 * time.Second)
		}
	}()
	var lbURLs []string
	for i, p := range cfg.LBPorts {
		lbURLs = append(lbURLs, fmt.Sprintf("http://127.0.0.1:%d", p))
		c, err := startChild(logs, fmt.Sprintf("lb-%d", i+1), filepath.Join(cfg.BinDir, "loadbalancer"), []string{
			"PORT=" + strconv.Itoa(p), "LOADBALANCER_KEY=" + k.LBKey, "LOG_LEVEL=" + cfg.LogLevel, "HOST_DOWN_AFTER=10s",
		})
		if err != nil {
			return err
		}
		procs = append(procs, c)
	}
	half := 500
	for i := range cfg.HostPorts {
		name := fmt.Sprintf("host-%d", i+1)
		min := cfg.RoomPortMin + i*half
		c, err := startChild(logs, name, filepath.Join(cfg.BinDir, "chatserver"), []string{
			"KEY=" + k.Key, "ADMIN_KEY=" + k.AdminKey, "LOADBALANCER_KEY=" + k.LBKey,
			"LOADBALANCERS=" + strings.Join(lbURLs, ","), "HEARTBEAT_EVERY=2s",
			"PORT=" + strconv.Itoa(cfg.HostPorts[i]), "ADMIN_PORT=" + strconv.Itoa(cfg.AdminPorts[i]),
			"BIND_ADDR=" + cfg.BindAddr, "ROOM_BIND=" + cfg.BindAddr, "PUBLIC_HOST=" + cfg.PublicHost, "HOST_ID=" + name,
			"ROOM_PORT_MIN=" + strconv.Itoa(min), "ROOM_PORT_MAX=" + strconv.Itoa(min+half-1),
			"STATE_DIR=" + filepath.Join(cfg.DataDir, name), "MONGODB_URI=" + storeURI, "NATS_URL=" + natsURL,
			"TOKEN_SECRET=" + k.TokenSecret, "LOG_LEVEL=" + cfg.LogLevel,
			"WEBHOOK_ALLOW_PRIVATE=" + cfg.AllowPrivateHooks,
			"ALLOWED_ORIGINS=" + fmt.Sprintf("http://localhost:%d,http://127.0.0.1:%d", cfg.HTTPPort, cfg.HTTPPort),
		})
		if err != nil {
			return err
		}
		procs = append(procs, c)
	}
	for i, p := range cfg.LBPorts {
		if err := waitHealthy(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", p), procs[i]); err != nil {
			return err
		}
	}
	for i, p := range cfg.HostPorts {
		if err := waitHealthy(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", p), procs[len(cfg.LBPorts)+i]); err != nil {
			return err
		}
	}

	// The control API reads its configuration from the environment, as in Lambda.
	for name, v := range map[string]string{
		"MONGODB_URI": storeURI, "LOADBALANCERS": strings.Join(lbURLs, ","), "LOADBALANCER_KEY": k.LBKey,
		"TOKEN_SECRET": k.TokenSecret, "API_KEY": k.APIKey, "ADMIN_API_KEY": k.AdminAPIKey,
		"FLEET_KEY": k.Key, "FLEET_ADMIN_KEY": k.AdminKey,
		// As the hosts: a local stack's webhook receivers are local
		// (WEBHOOK_ALLOW_PRIVATE=0 refuses them as production does).
		"WEBHOOK_ALLOW_PRIVATE": cfg.AllowPrivateHooks,
	} {
		os.Setenv(name, v)
	}
	apiCfg, closeAPI, err := api.ConfigFromEnv(ctx, os.Getenv)
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	defer closeAPI()
	var apiLevel slog.Level // a line per request at info: LOG_LEVEL=warn or error quiets it
	if apiLevel.UnmarshalText([]byte(cfg.LogLevel)) != nil {
		apiLevel = slog.LevelInfo
	}
	apiCfg.Log = slog.New(slog.NewJSONHandler(logs.writer("api"), &slog.HandlerOptions{Level: apiLevel}))
	roomAPI, err := api.NewRoomAPI(apiCfg)
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	adminAPI, err := api.NewAdminAPI(apiCfg)
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", newLambdaBridge(roomAPI))
	mux.Handle("/admin/", newLambdaBridge(adminAPI))
	mux.Handle("/demo/", http.StripPrefix("/demo", web.DemoHandler(filepath.Join(cfg.DataDir, "demo-hls"))))
	// The local web client needs no key typed in: the stack hands it the dev room API key.
	mux.HandleFunc("GET /config.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		fmt.Fprintf(w, "window.CHATFLEET_CONFIG = {apiKey: %q};\n", k.APIKey)
	})
	mux.Handle("/", web.Handler())
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.HTTPPort))
	if err != nil {
		return fmt.Errorf("port %d is busy; set HTTP_PORT to use another (%v)", cfg.HTTPPort, err)
	}
	srv := httpx.NewServer(mux)
	go srv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()

	logs.banner(bannerText(cfg, lbURLs, storeURI, storeDesc, natsURL, natsDesc))
	select {
	case <-ctx.Done():
	case c := <-firstExit(procs):
		return fmt.Errorf("%s exited unexpectedly; see its log above", c.name)
	}
	logs.banner("chatfleet: stopping (Ctrl-C again to exit at once)")
	return nil
}

// storeLogName is the embedded store's log file in the data folder.
const storeLogName = "store.log"

// startStore starts the embedded store in DataDir/store. Its errors reach
// the terminal, cut to their first line; its whole log from
// StoreLogLevel up goes to DataDir/store.log, rotated to store.log.1 at
// devstore.DefaultLogFileMax (10 MiB). (Every command that fails is a WARN
// line of whole wire messages there, such as the missing collections of a
// fresh start, which the store's clients expect.)
func startStore(ctx context.Context, cfg config, logs *logPrinter) (*devstore.Server, error) {
	logFile := filepath.Join(cfg.DataDir, storeLogName)
	terminal := slog.NewTextHandler(logs.writer("store"), nil)
	st, err := devstore.Start(ctx, devstore.Config{
		Dir:          filepath.Join(cfg.DataDir, "store"),
		Addr:         net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.StorePort)),
		AnyAddr:      !net.ParseIP(cfg.BindAddr).IsLoopback(), // BIND_ADDR asked for it
		Log:          slog.New(firstLineHandler{terminal, logFile}),
		LogLevel:     slog.LevelError,
		LogFile:      logFile,
		LogFileLevel: cfg.StoreLogLevel,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	return st, nil
}

// firstLineHandler cuts a record's message to its first line and says
// where the whole of it is: the embedded store's errors can be wire
// messages of many lines.
type firstLineHandler struct {
	slog.Handler
	whole string // where the whole message is
}

func (h firstLineHandler) Handle(ctx context.Context, r slog.Record) error {
	if first, _, cut := strings.Cut(r.Message, "\n"); cut {
		r.Message = fmt.Sprintf("%s … (whole in %s)", first, h.whole)
	}
	return h.Handler.Handle(ctx, r)
}

func (h firstLineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return firstLineHandler{h.Handler.WithAttrs(attrs), h.whole}
}

func (h firstLineHandler) WithGroup(name string) slog.Handler {
	return firstLineHandler{h.Handler.WithGroup(name), h.whole}
}

func bannerText(cfg config, lbURLs []string, storeURI, storeDesc, natsURL, natsDesc string) string {
	k := cfg.keys
	var b strings.Builder
	fmt.Fprintf(&b, "\nchatfleet is running\n")
	fmt.Fprintf(&b, "  web client      http://localhost:%d/\n", cfg.HTTPPort)
	fmt.Fprintf(&b, "  control API     http://localhost:%d/api/v1/rooms    X-API-Key: %s\n", cfg.HTTPPort, k.APIKey)
	fmt.Fprintf(&b, "  admin API       http://localhost:%d/admin/v1/hosts  X-API-Key: %s\n", cfg.HTTPPort, k.AdminAPIKey)
	fmt.Fprintf(&b, "  console         http://localhost:%d/admin.html  (the operator console: type the admin API key)\n", cfg.HTTPPort)
	fmt.Fprintf(&b, "  load balancers  %s  LOADBALANCER_KEY=%s\n", strings.Join(lbURLs, " "), k.LBKey)
	for i := range cfg.HostPorts {
		min := cfg.RoomPortMin + i*500
		fmt.Fprintf(&b, "  host-%d          API http://127.0.0.1:%d (KEY=%s)  admin http://127.0.0.1:%d (ADMIN_KEY=%s)  rooms %d-%d\n",
			i+1, cfg.HostPorts[i], k.Key, cfg.AdminPorts[i], k.AdminKey, min, min+499)
	}
	if cfg.AllowPrivateHooks == "1" {
		fmt.Fprintf(&b, "  webhooks        rooms' webhookUrls may be private or loopback addresses here (WEBHOOK_ALLOW_PRIVATE=1,\n")
		fmt.Fprintf(&b, "                  development only; WEBHOOK_ALLOW_PRIVATE=0 refuses them as production hosts do)\n")
	} else {
		fmt.Fprintf(&b, "  webhooks        rooms' webhookUrls must be public addresses, as in production (WEBHOOK_ALLOW_PRIVATE=%s)\n", cfg.AllowPrivateHooks)
	}
	fmt.Fprintf(&b, "  store           %s (%s)\n", storeURI, storeDesc)
	fmt.Fprintf(&b, "  NATS            %s (%s; rooms with edges span both hosts)\n", natsURL, natsDesc)
	if ip := net.ParseIP(cfg.BindAddr); ip != nil && !ip.IsLoopback() || cfg.PublicHost != "127.0.0.1" {
		fmt.Fprintf(&b, "  containers      the store and the hosts listen on %s (BIND_ADDR), hosts advertise %s (PUBLIC_HOST);\n", cfg.BindAddr, cfg.PublicHost)
		fmt.Fprintf(&b, "                  the store has no authentication: keep these ports private\n")
	}
	fmt.Fprintf(&b, "  data folder     %s (CHATFLEET_RESET=1 wipes it)\n", cfg.DataDir)
	fmt.Fprintf(&b, "Ctrl-C stops everything.\n")
	return b.String()
}

// child is one platform process the stack runs.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(logs *logPrinter, name, bin string, env []string) (*child, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %v (run `make run`, which builds it)", name, err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	w := logs.writer(name)
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group: Ctrl-C reaches the stack, which stops the
	// children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop sends SIGTERM and waits up to grace before killing.
func (c *child) stop(grace time.Duration) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
	}
}

func firstExit(cs []*child) <-chan *child {
	out := make(chan *child, len(cs))
	for _, c := range cs {
		go func() { <-c.done; out <- c }()
	}
	return out
}

func waitHealthy(ctx context.Context, url string, c *child) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("%s exited during start; see its log above", c.name)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become healthy at %s", c.name, url)
}

// logPrinter prints the children's JSON log lines as readable text, one
// line at a time, prefixed with the child's name.
type logPrinter struct {
	mu  sync.Mutex
	out io.Writer
}

func (l *logPrinter) banner(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.out, s)
}

func (l *logPrinter) writer(name string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			fmt.Fprintf(l.out, "%-7s | %s\n", name, readable(sc.Bytes()))
			l.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	return pw
}

// readable turns a slog JSON line into "LEVEL msg key=value ..."; other
// lines pass as they are.
func readable(line []byte) string {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return string(line)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-5v %v", m["level"], m["msg"])
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "level" && k != "msg" && k != "time" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		if f, ok := v.(float64); ok { // 5000000000, not 5e+09
			v = strconv.FormatFloat(f, 'f', -1, 64)
		}
		fmt.Fprintf(&b, " %s=%v", k, v)
	}
	return b.String()
}
