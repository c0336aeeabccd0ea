package infra

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/gorilla/websocket"
	"gopkg.in/yaml.v3"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

const (
	nginxConf       = "infra/nginx/chatfleet.conf"
	prodCert        = "/etc/chatfleet/tls/fullchain.pem"
	prodKey         = "/etc/chatfleet/tls/privkey.pem"
	prodAccessLog   = "/var/log/nginx/chatfleet.access.log"
	prodErrorLog    = "/var/log/nginx/chatfleet.error.log"
	prodListen      = "listen 443 ssl;"
	chatserverCmd   = "fleet/cmd/chatserver"
	loadbalancerCmd = "fleet/cmd/loadbalancer"
)

// requiredEnv are the variables without which each binary refuses to start.
var requiredEnv = map[string][]string{
	chatserverCmd:   {"KEY", "ADMIN_KEY"},
	loadbalancerCmd: {"LOADBALANCER_KEY"},
}

// TestEnvVarsFromSource checks that the variables the other tests hold the
// deployment files to are really read from the binaries' source: if the
// extraction broke, every other env check would pass vacuously.
func TestEnvVarsFromSource(t *testing.T) {
	cs := envVarsRead(t, chatserverCmd)
	for _, v := range []string{"KEY", "ADMIN_KEY", "PORT", "ADMIN_PORT", "STATE_DIR", "ROOM_BIND", "ROOM_PORT_MIN",
		"LOADBALANCERS", "LOADBALANCER_KEY", "TOKEN_SECRET", "MONGODB_URI", "IMDS", "PUBLIC_HOST", "ALLOWED_ORIGINS", "LOG_LEVEL",
		"PONG_WAIT", "ROOM_SPARES", "HEARTBEAT_EVERY", "MAX_ROOM_CONNS"} { // the last read through envconf's getters
		if !cs[v] {
			t.Errorf("chatserver: %s not found among the variables read (%v)", v, sortedKeys(cs))
		}
	}
	lb := envVarsRead(t, loadbalancerCmd)
	for _, v := range []string{"LOADBALANCER_KEY", "PORT", "LOG_LEVEL", "HOST_DOWN_AFTER"} {
		if !lb[v] {
			t.Errorf("loadbalancer: %s not found among the variables read (%v)", v, sortedKeys(lb))
		}
	}
	t.Logf("chatserver reads %v", sortedKeys(cs))
	t.Logf("loadbalancer reads %v", sortedKeys(lb))
}

// nginxBin returns nginx's path or fails: the test never skips.
func nginxBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("nginx is not installed: apt-get install -y --no-install-recommends nginx (Debian; .ci/run does it)")
	return ""
}

// nginxSetup is a rendered configuration in a temporary prefix.
type nginxSetup struct {
	dir, conf, errorLog, accessLog, siteErrorLog string
	certPEM                                      []byte
}

// renderNginx writes a main configuration that includes infra/nginx/chatfleet.conf
// with the production paths replaced: certificate, key and logs by
// temporary ones, and, when listen is not empty, the listen directive and
// the room-port map entry (roomLine).
func renderNginx(t *testing.T, listen, roomLine string) nginxSetup {
	t.Helper()
	dir := t.TempDir()
	s := nginxSetup{dir: dir, conf: filepath.Join(dir, "nginx.conf"), errorLog: filepath.Join(dir, "error.log"),
		accessLog: filepath.Join(dir, "chatfleet.access.log"), siteErrorLog: filepath.Join(dir, "chatfleet.error.log")}
	cert, key, certPEM := selfSignedCert(t, dir)
	s.certPEM = certPEM
	site := readRepo(t, nginxConf)
	site = replaceOnce(t, site, prodCert, cert)
	site = replaceOnce(t, site, prodKey, key)
	site = replaceOnce(t, site, prodAccessLog, s.accessLog)
	site = replaceOnce(t, site, prodErrorLog, s.siteErrorLog)
	if listen != "" {
		site = replaceOnce(t, site, prodListen, listen)
		line, _ := nginxRoomRegex(t, site)
		site = replaceOnce(t, site, line, roomLine)
		// The room sends X-Accel-Buffering: no, which alone would unbuffer
		// its SSE responses: ignore it, so the test shows what the
		// configuration's own proxy_buffering off does.
		site = replaceOnce(t, site, "proxy_buffering off;", "proxy_buffering off;\n        proxy_ignore_headers X-Accel-Buffering;")
		// The test wants to see the error log's content (it must hold no token).
		site = replaceOnce(t, site, s.siteErrorLog+" crit;", s.siteErrorLog+" info;")
	}
	if err := os.WriteFile(filepath.Join(dir, "chatfleet.conf"), []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;" // the workers must reach the temporary prefix
	}
	main := fmt.Sprintf(`daemon off;
master_process on;
%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    access_log off;
    include %[2]s/chatfleet.conf;
}
`, user, dir)
	if err := os.WriteFile(s.conf, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// args returns the command-line arguments that point nginx at s, then extra.
func (s nginxSetup) args(extra ...string) []string {
	return append([]string{"-p", s.dir, "-e", s.errorLog, "-c", s.conf}, extra...)
}

// stripComments drops nginx comments (the configuration has no # in strings).
func stripComments(conf string) string {
	var b strings.Builder
	for _, l := range strings.Split(conf, "\n") {
		if i := strings.Index(l, "#"); i >= 0 {
			l = l[:i]
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// nginxLocations returns each location block's pattern and body (braces
// matched; quoted patterns may hold braces).
func nginxLocations(code string) map[string]string {
	out := map[string]string{}
	re := regexp.MustCompile(`location\s+(?:[~=^*]+\s+)?("[^"]*"|\S+)\s*\{`)
	for _, m := range re.FindAllStringSubmatchIndex(code, -1) {
		depth, start := 1, m[1]
		i := start
		for ; i < len(code) && depth > 0; i++ {
			switch code[i] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		out[code[m[2]:m[3]]] = code[start : i-1]
	}
	return out
}

// TestNginxConfig checks infra/nginx/chatfleet.conf with `nginx -t` and holds
// it to what the fleet needs.
func TestNginxConfig(t *testing.T) {
	bin := nginxBin(t)
	conf := readRepo(t, nginxConf)
	code := stripComments(conf)

	t.Run("nginx -t", func(t *testing.T) {
		s := renderNginx(t, "", "")
		out, err := exec.Command(bin, s.args("-t")...).CombinedOutput()
		if err != nil {
			t.Fatalf("nginx -t: %v\n%s", err, out)
		}
	})

	t.Run("room port range is the chatserver's default", func(t *testing.T) {
		_, re := nginxRoomRegex(t, conf)
		lo, hi, ok := portsMatched(t, re)
		wantLo, wantHi := defaultRoomRange(t)
		if !ok || lo != wantLo || hi != wantHi {
			t.Errorf("room port map %q matches %d-%d (contiguous %v); the chatserver's default range is %d-%d", re, lo, hi, ok, wantLo, wantHi)
		}
	})

	t.Run("proxies to loopback room ports only", func(t *testing.T) {
		passes := regexp.MustCompile(`proxy_pass\s+([^;]+);`).FindAllStringSubmatch(code, -1)
		if len(passes) == 0 {
			t.Fatal("no proxy_pass")
		}
		for _, p := range passes {
			if !strings.HasPrefix(p[1], "http://127.0.0.1:$chatfleet_room_port$") {
				t.Errorf("proxy_pass %s: want http://127.0.0.1:$chatfleet_room_port... (rooms only, on loopback)", p[1])
			}
		}
		n := 0
		for pattern, body := range nginxLocations(code) {
			if !strings.Contains(body, "proxy_pass") {
				continue
			}
			n++
			if !strings.Contains(body, "if ($chatfleet_room_port_ok = 0)") || !strings.Contains(body, "return 404;") {
				t.Errorf("location %s does not refuse ports outside the room range", pattern)
			}
		}
		if n == 0 {
			t.Fatal("no proxying locations")
		}
	})

	t.Run("websocket, timeouts, forwarded headers", func(t *testing.T) {
		for _, want := range []string{
			"map $http_upgrade $chatfleet_connection",
			"proxy_http_version 1.1;",
			"proxy_set_header Upgrade           $http_upgrade;",
			"proxy_set_header Connection        $chatfleet_connection;",
			"proxy_set_header X-Forwarded-For   $remote_addr;",
			"proxy_set_header X-Forwarded-Proto $scheme;",
			"proxy_set_header X-Forwarded-Host",
			"listen 443 ssl;",
			"ssl_certificate ",
			"gzip on;",
		} {
			if !strings.Contains(code, want) {
				t.Errorf("missing %q", want)
			}
		}
		timeouts := regexp.MustCompile(`proxy_read_timeout\s+(\d+)s;`).FindAllStringSubmatch(code, -1)
		if len(timeouts) == 0 {
			t.Error("no proxy_read_timeout (the default 60s is the rooms' PongWait: one late ping would cut the connection)")
		}
		for _, m := range timeouts {
			if n, _ := strconv.Atoi(m[1]); n < 75 {
				t.Errorf("proxy_read_timeout %ss: want at least 75s (rooms ping every 30s and wait 60s for the pong)", m[1])
			}
		}
		sse := ""
		for pattern, body := range nginxLocations(code) {
			if strings.Contains(pattern, "/events") {
				sse = body
			}
		}
		if !strings.Contains(sse, "proxy_buffering off;") || !strings.Contains(sse, "gzip off;") {
			t.Error("the /events location must set proxy_buffering off and gzip off (SSE)")
		}
	})

	t.Run("no token in logs", func(t *testing.T) {
		for _, m := range regexp.MustCompile(`log_format\s+\w+\s+([^;]+);`).FindAllStringSubmatch(code, -1) {
			for _, v := range []string{"$request ", "$request\"", "$request_uri", "$args", "$query_string", "$arg_", "$is_args"} {
				if strings.Contains(m[1], v) {
					t.Errorf("log_format logs %s: join tokens are in the query string", strings.Trim(v, " \""))
				}
			}
		}
		if !regexp.MustCompile(`access_log\s+\S+\s+chatfleet;`).MatchString(code) {
			t.Error("access_log must use the chatfleet log format (the default one logs the query string)")
		}
		if !regexp.MustCompile(`error_log\s+\S+\s+crit;`).MatchString(code) {
			t.Error("error_log must be at level crit: error lines quote the request line, token included")
		}
	})
}

// TestNginxProxiesRoom runs nginx with infra/nginx/chatfleet.conf in front of
// a real chatserver and opens a real WebSocket session to a room through it,
// over TLS.
func TestNginxProxiesRoom(t *testing.T) {
	bin := nginxBin(t)

	const (
		key, adminKey = "infra-test-key", "infra-test-admin-key"
		secret        = "infra-test-token-secret-0123456789"
		roomName      = "infratest"
	)
	nginxPort := testutil.FreePort(t)
	base := fmt.Sprintf("127.0.0.1:%d", nginxPort)
	cs := testutil.NewChatserver(t, 10,
		"KEY="+key, "ADMIN_KEY="+adminKey, "TOKEN_SECRET="+secret, "BIND_ADDR=127.0.0.1", "ROOM_BIND=127.0.0.1",
		"LOG_LEVEL=info", "HOST_ID=infra-test", "PUBLIC_HOST=127.0.0.1", "ROOM_URL=wss://"+base+"/rooms/{port}",
		"MONGODB_URI=", "LOADBALANCERS=", "ALLOWED_ORIGINS=", "IMDS=", "IMDS_ENDPOINT=", "CACHE_FILE=")
	var alts []string
	for p := cs.RoomMin; p <= cs.RoomMax; p++ {
		alts = append(alts, strconv.Itoa(p))
	}

	s := renderNginx(t, fmt.Sprintf("listen 127.0.0.1:%d ssl;", nginxPort),
		fmt.Sprintf(`"~^(%s)$" 1;`, strings.Join(alts, "|")))
	if out, err := exec.Command(bin, s.args("-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	startNginx(t, bin, s, nginxPort)

	cs.Start()
	roomMin, roomMax, apiPort, adminPort := cs.RoomMin, cs.RoomMax, cs.APIPort, cs.AdminPort
	t.Cleanup(func() { // drain the rooms: they outlive a killed master
		cs.Proc.Signal(syscall.SIGTERM)
		select {
		case <-cs.Proc.Done():
		case <-time.After(20 * time.Second):
		}
	})
	api := cs.API
	testutil.Eventually(t, 30*time.Second, func() error {
		status, _, err := testutil.TryDo("GET", api+"/api/v1/", "", "")
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET /api/v1/: %d", status)
		}
		return err
	})

	status, body := testutil.Do(t, "POST", api+"/api/v1/room/"+roomName, key, "")
	if status != http.StatusCreated {
		t.Fatalf("create room: %d %s", status, body)
	}
	var created struct {
		Data struct{ Port int } `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.Data.Port < roomMin || created.Data.Port > roomMax {
		t.Fatalf("create room: %s (want a port in %d-%d)", body, roomMin, roomMax)
	}
	port := created.Data.Port

	issuer, err := token.NewIssuer(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := issuer.Issue(roomName, "", "producer-1", "Producer", chatfleet.RoleProducer, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.certPEM)
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(t *testing.T, path string) (int, string) {
		t.Helper()
		resp, err := client.Get("https://" + base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("websocket session over TLS", func(t *testing.T) {
		d := websocket.Dialer{TLSClientConfig: tlsConf, HandshakeTimeout: 10 * time.Second}
		u := fmt.Sprintf("wss://%s/rooms/%d/ws?%s", base, port, url.Values{"token": {tok}}.Encode())
		// A browser on the room's own origin: the room compares Origin with
		// the Host nginx passes on, port included.
		h := http.Header{"Origin": {"https://" + base}}
		conn, resp, err := d.Dial(u, h)
		if err != nil {
			st := 0
			if resp != nil {
				st = resp.StatusCode
			}
			t.Fatalf("dial through nginx: %v (HTTP %d)", err, st)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, frame, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("first server message: %v", err)
		}
		var first map[string]any
		protocol.Split(frame, func(msg []byte) {
			if first == nil {
				json.Unmarshal(msg, &first)
			}
		})
		if first["type"] != protocol.TypeWelcome {
			t.Fatalf("first server message %s: want type %q", frame, protocol.TypeWelcome)
		}
		// The session is live both ways: a ping is answered.
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		for {
			_, frame, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("waiting for pong: %v", err)
			}
			if strings.Contains(string(frame), `"type":"pong"`) {
				break
			}
		}
	})

	t.Run("sse is not buffered by the configuration", func(t *testing.T) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/rooms/%d/events?token=%s", base, port, url.QueryEscape(tok)), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("GET /rooms/%d/events through nginx: no response (buffered?): %v", port, errors.Unwrap(err))
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("GET /events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// The welcome is a few hundred bytes; a buffering proxy would hold it
		// (and the stream stays open, so nothing would flush it).
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]any
				if err := json.Unmarshal([]byte(data), &m); err != nil || m["type"] != protocol.TypeWelcome {
					t.Fatalf("first event %s: want a welcome", data)
				}
				return
			}
		}
		t.Fatalf("no event before the stream ended: %v", sc.Err())
	})

	t.Run("room page", func(t *testing.T) {
		status, body := get(t, fmt.Sprintf("/rooms/%d/", port))
		if status != http.StatusOK || body != roomName {
			t.Errorf("GET /rooms/%d/: %d %q, want 200 %q", port, status, body, roomName)
		}
	})

	t.Run("only room ports are proxied", func(t *testing.T) {
		for _, path := range []string{
			fmt.Sprintf("/rooms/%d/", roomMin-1),
			fmt.Sprintf("/rooms/%d/ws", roomMax+1),
			fmt.Sprintf("/rooms/%d/api/v1/", adminPort),
			fmt.Sprintf("/rooms/%d/metrics", adminPort),
			fmt.Sprintf("/rooms/%d/api/v1/rooms", apiPort),
			fmt.Sprintf("/rooms/%d/healthz", apiPort),
			"/api/v1/", "/api/v1/rooms", "/metrics", "/healthz", "/",
			fmt.Sprintf("/rooms/%d/%%0d%%0aX:y", port),
		} {
			status, body := get(t, path)
			if status != http.StatusNotFound && status != http.StatusForbidden {
				t.Errorf("GET %s: %d %.100q, want 404 or 403 from nginx", path, status, body)
			}
		}
	})

	t.Run("tokens stay out of the logs", func(t *testing.T) {
		// A room port in range with no room: nginx's upstream error path,
		// whose error line quotes the request (query included) below crit.
		status, _ := get(t, fmt.Sprintf("/rooms/%d/ws?token=%s", roomMax, url.QueryEscape(tok)))
		if status != http.StatusBadGateway {
			t.Errorf("room port without a room: %d, want 502", status)
		}
		// nginx logs a WebSocket request when the connection has closed.
		testutil.Eventually(t, 5*time.Second, func() error {
			access, _ := os.ReadFile(s.accessLog)
			if !strings.Contains(string(access), fmt.Sprintf("/rooms/%d/ws", port)) {
				return fmt.Errorf("access log has no line for the session:\n%s", access)
			}
			return nil
		})
		for _, f := range []string{s.accessLog, s.errorLog} {
			b, _ := os.ReadFile(f)
			if strings.Contains(string(b), tok) {
				t.Errorf("%s holds the join token", filepath.Base(f))
			}
		}
		// The site's error log runs at info here to show the risk: in
		// production it is at crit, which these lines are below.
		b, _ := os.ReadFile(s.siteErrorLog)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, tok) && (strings.Contains(l, "[crit]") || strings.Contains(l, "[alert]") || strings.Contains(l, "[emerg]")) {
				t.Errorf("an error line at crit or above holds the token: %s", l)
			}
		}
	})
}

// startNginx runs nginx in the foreground for the test and stops it after.
func startNginx(t *testing.T, bin string, s nginxSetup, port int) {
	t.Helper()
	cmd := exec.Command(bin, s.args()...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // any worker left
		if t.Failed() {
			logs, _ := os.ReadFile(s.errorLog)
			site, _ := os.ReadFile(s.siteErrorLog)
			t.Logf("nginx output:\n%s\nerror.log:\n%s\nchatfleet.error.log:\n%s", out, logs, site)
		}
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			logs, _ := os.ReadFile(s.errorLog)
			t.Fatalf("nginx exited: %v\n%s\n%s", err, out, logs)
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// systemdAnalyze returns the path of systemd-analyze or fails.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: apt-get install -y --no-install-recommends systemd (.ci/run does it)")
	}
	return p
}

// fakeRoot lays out a root for `systemd-analyze --root`: the system's unit
// directory (for the targets the units depend on), the units under test in
// /etc/systemd/system, and executables at every Exec*= path they name. It
// verifies the unit files, not the binaries or the users.
func fakeRoot(t *testing.T, units map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var sysUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		t.Fatal("no systemd unit directory with multi-user.target (install package systemd)")
	}
	if out, err := exec.Command("cp", "-a", sysUnits, filepath.Join(dir, "usr-lib-units")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", sysUnits, err, out)
	}
	os.MkdirAll(filepath.Join(dir, "usr/lib/systemd"), 0o755)
	if err := os.Rename(filepath.Join(dir, "usr-lib-units"), filepath.Join(dir, "usr/lib/systemd/system")); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc/systemd/system")
	os.MkdirAll(etc, 0o755)
	stub := []byte("#!/bin/sh\nexit 0\n")
	for name, text := range units {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		u := parseUnit(t, text)
		for _, k := range []string{"ExecStart", "ExecReload", "ExecStop", "ExecStartPre", "ExecStartPost"} {
			for _, v := range u["Service"][k] {
				exe := strings.TrimLeft(strings.Fields(v)[0], "-@:+!")
				p := filepath.Join(dir, exe)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, stub, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return dir
}

// TestSystemdUnits checks infra/systemd/*.service with systemd-analyze and
// holds them to the fleet's process model.
func TestSystemdUnits(t *testing.T) {
	sa := systemdAnalyze(t)
	texts := map[string]string{
		"chatserver.service":   readRepo(t, "infra/systemd/chatserver.service"),
		"loadbalancer.service": readRepo(t, "infra/systemd/loadbalancer.service"),
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		dir := fakeRoot(t, texts)
		cmd := exec.Command(sa, "verify", "--man=no", "--generators=no", "--root="+dir, "chatserver.service", "loadbalancer.service")
		out, err := cmd.CombinedOutput()
		// verify exits 0 on unknown keys and unparsable values, only
		// warning about them: any output at all is a failure.
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("systemd-analyze security", func(t *testing.T) {
		dir := fakeRoot(t, texts)
		for name := range texts {
			out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", "--root="+dir, name).CombinedOutput()
			m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
			if err != nil || m == nil {
				t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
			}
			if f, _ := strconv.ParseFloat(string(m[1]), 64); f > 3.0 {
				t.Errorf("%s: exposure %s, want at most 3.0 (hardening lost?)\n%s", name, m[1], out)
			}
		}
	})

	var stopDefault int
	if m := regexp.MustCompile(`def\(&c\.StopDeadline,\s*(\d+)\s*\*\s*time\.Second\)`).FindStringSubmatch(readRepo(t, "fleet/internal/master/master.go")); m != nil {
		stopDefault, _ = strconv.Atoi(m[1])
	} else {
		t.Fatal("cannot find StopDeadline's default in fleet/internal/master/master.go")
	}
	lbHandlesHUP := strings.Contains(readRepo(t, "fleet/cmd/loadbalancer/main.go"), "SIGHUP")

	// The chatserver's rooms must outlive a master crash (re-adoption), so
	// systemd signals the master alone; the load balancer has no children.
	killMode := map[string]string{"chatserver.service": "process", "loadbalancer.service": "mixed"}
	for name, text := range texts {
		t.Run(name, func(t *testing.T) {
			u := parseUnit(t, text)
			want := map[string]string{"Type": "exec", "Restart": "always", "User": "chatfleet", "KillMode": killMode[name], "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}
			for k, v := range want {
				if got := u.last("Service", k); got != v {
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
			if u.last("Service", "RestartSec") == "" {
				t.Error("RestartSec is not set")
			}
			if u.last("Service", "DynamicUser") == "yes" {
				t.Error("DynamicUser=yes: its state would not persist")
			}
			if n, err := strconv.Atoi(u.last("Service", "LimitNOFILE")); err != nil || n < 65536 {
				t.Errorf("LimitNOFILE=%q, want at least 65536", u.last("Service", "LimitNOFILE"))
			}
			stop := systemdSeconds(t, u.last("Service", "TimeoutStopSec"))
			if stop < 20 {
				t.Errorf("TimeoutStopSec=%vs, want at least 20s", stop)
			}
			bin := "/usr/local/bin/" + strings.TrimSuffix(name, ".service")
			if got := u.last("Service", "ExecStart"); got != bin {
				t.Errorf("ExecStart=%q, want %q", got, bin)
			}
			envFile := "/etc/chatfleet/" + strings.TrimSuffix(name, ".service") + ".env"
			if got := u.last("Service", "EnvironmentFile"); got != envFile {
				t.Errorf("EnvironmentFile=%q, want %q", got, envFile)
			}
			if u.last("Install", "WantedBy") != "multi-user.target" {
				t.Error("WantedBy=multi-user.target missing: the service would not start at boot")
			}
			reload := u.last("Service", "ExecReload")
			switch name {
			case "chatserver.service":
				if !strings.Contains(reload, "-HUP") || !strings.Contains(reload, "$MAINPID") {
					t.Errorf("ExecReload=%q, want /bin/kill -HUP $MAINPID (the in-place upgrade)", reload)
				}
				if float64(stopDefault)+5 > stop {
					t.Errorf("TimeoutStopSec=%vs leaves no margin over STOP_DEADLINE's default %ds", stop, stopDefault)
				}
				if u.last("Service", "StateDirectory") != "chatserver" {
					t.Error("StateDirectory=chatserver missing")
				}
				if !slices.Contains(u["Service"]["Environment"], "STATE_DIR=/var/lib/chatserver") {
					t.Error("Environment=STATE_DIR=/var/lib/chatserver missing: the default state dir is in (private) /tmp")
				}
				if !strings.Contains(u.last("Service", "ReadWritePaths"), "/var/lib/chatserver") {
					t.Error("ReadWritePaths must include /var/lib/chatserver")
				}
				if !strings.Contains(u.last("Service", "AmbientCapabilities"), "CAP_NET_BIND_SERVICE") {
					t.Error("PORT=80 as a non-root user needs AmbientCapabilities=CAP_NET_BIND_SERVICE")
				}
			default:
				if reload != "" && !lbHandlesHUP {
					t.Errorf("ExecReload=%q, but the load balancer does not handle SIGHUP (it would die)", reload)
				}
			}
		})
	}
}

// TestEnvExamples checks that infra/systemd/*.env.example name every variable
// their binary reads, set or commented, and nothing else.
func TestEnvExamples(t *testing.T) {
	for file, cmd := range map[string]string{
		"infra/systemd/chatserver.env.example":   chatserverCmd,
		"infra/systemd/loadbalancer.env.example": loadbalancerCmd,
	} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			reads := envVarsRead(t, cmd)
			ef := parseEnvFile(t, readRepo(t, file))
			for v := range reads {
				if _, ok := ef.set[v]; !ok && !ef.commented[v] {
					t.Errorf("%s reads %s; the example does not mention it", cmd, v)
				}
			}
			for v := range ef.set {
				if !reads[v] {
					t.Errorf("the example sets %s, which %s does not read", v, cmd)
				}
			}
			for v := range ef.commented {
				if !reads[v] {
					t.Errorf("the example documents %s, which %s does not read", v, cmd)
				}
			}
			for _, v := range requiredEnv[cmd] {
				if _, ok := ef.set[v]; !ok {
					t.Errorf("required %s is not set", v)
				}
			}
		})
	}
	ef := parseEnvFile(t, readRepo(t, "infra/systemd/chatserver.env.example"))
	if ef.set["ROOM_BIND"] != "127.0.0.1" {
		t.Error("chatserver.env.example: ROOM_BIND=127.0.0.1 (rooms behind nginx only)")
	}
}

// cfnTemplates are the stacks, with the binary whose env each one writes.
var cfnTemplates = []struct {
	file, cmd, envPath string
}{
	{"infra/cloudformation/fleet.yaml", chatserverCmd, "/etc/chatfleet/chatserver.env"},
	{"infra/cloudformation/loadbalancer.yaml", loadbalancerCmd, "/etc/chatfleet/loadbalancer.env"},
}

// TestCloudFormation parses the stacks and cross-checks them: references,
// the launch template's IMDS settings, public ports, IAM, and the user data
// against the repository (units, nginx, the binaries' env).
func TestCloudFormation(t *testing.T) {
	for _, c := range cfnTemplates {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			text := readRepo(t, c.file)
			tpl := parseCFN(t, text)
			checkCFNRefs(t, tpl)
			checkCFNSchema(t, text, tpl)
			checkCFNSecurity(t, tpl)
			checkCFNUserData(t, tpl, c.cmd, c.envPath)
		})
	}

	// The NATS cluster of rooms spread over hosts: three nodes with
	// JetStream, routes between them only, clients (the fleet hosts, let in
	// by the fleet stack) on 4222, and the fleet's NATS_URL from its output.
	t.Run("nats.yaml", func(t *testing.T) {
		text := readRepo(t, "infra/cloudformation/nats.yaml")
		tpl := parseCFN(t, text)
		checkCFNRefs(t, tpl)
		checkCFNSchema(t, text, tpl)
		checkCFNSecurity(t, tpl)
		res := section(tpl, "Resources")
		nodes := 0
		for _, r := range res {
			if dig(r, "Type") == "AWS::EC2::Instance" {
				nodes++
				if dig(r, "Properties", "LaunchTemplate", "LaunchTemplateId", "Ref") != "LaunchTemplate" {
					t.Errorf("a node is not launched from the stack's launch template (IMDSv2): %v", r)
				}
			}
		}
		if nodes != 3 {
			t.Errorf("%d NATS nodes, want 3", nodes)
		}
		ci := res["ClusterIngress"]
		if dig(ci, "Properties", "GroupId", "Ref") != "SecurityGroup" || dig(ci, "Properties", "SourceSecurityGroupId", "Ref") != "SecurityGroup" ||
			cfnPort(t, tpl, dig(ci, "Properties", "FromPort")) != 6222 {
			t.Errorf("cluster routes (6222) must be open between the nodes only: %v", ci)
		}
		ud, _ := dig(res["LaunchTemplate"], "Properties", "LaunchTemplateData", "UserData", "Fn::Base64", "Fn::Sub").(string)
		for _, want := range []string{"jetstream {", "store_dir: /var/lib/nats", "cluster {", "${NodeIp1}:${ClusterPort}",
			"${NodeIp2}:${ClusterPort}", "${NodeIp3}:${ClusterPort}", "http: 127.0.0.1:8222", "systemctl enable --now nats"} {
			if !strings.Contains(ud, want) {
				t.Errorf("the nodes' user data lacks %q", want)
			}
		}
		out, _ := dig(section(tpl, "Outputs")["NatsURL"], "Value", "Fn::Sub").(string)
		if strings.Count(out, "nats://") != 3 {
			t.Errorf("NatsURL output %q, want the three nodes", out)
		}

		fleet := parseCFN(t, readRepo(t, "infra/cloudformation/fleet.yaml"))
		in := section(fleet, "Resources")["NatsIngress"]
		if dig(in, "Properties", "GroupId", "Ref") != "NatsSecurityGroupId" || dig(in, "Properties", "SourceSecurityGroupId", "Ref") != "SecurityGroup" ||
			cfnPort(t, fleet, dig(in, "Properties", "FromPort")) != 4222 {
			t.Errorf("the fleet stack must let its hosts' group into NATS on 4222: %v", in)
		}
		if !slices.Contains(heredoc(t, userData(t, fleet), "cat > /etc/chatfleet/chatserver.env"), "NATS_URL=${NatsURL}") {
			t.Error("the fleet's user data does not give chatserver NATS_URL")
		}
	})

	t.Run("fleet room range matches nginx", func(t *testing.T) {
		tpl := parseCFN(t, readRepo(t, "infra/cloudformation/fleet.yaml"))
		ud := userData(t, tpl)
		env := map[string]string{}
		for _, l := range heredoc(t, ud, "cat > /etc/chatfleet/chatserver.env") {
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
		lo, _ := strconv.Atoi(env["ROOM_PORT_MIN"])
		hi, _ := strconv.Atoi(env["ROOM_PORT_MAX"])
		_, re := nginxRoomRegex(t, readRepo(t, nginxConf))
		nlo, nhi, ok := portsMatched(t, re)
		if !ok || lo != nlo || hi != nhi {
			t.Errorf("user data rooms %d-%d, nginx allows %d-%d", lo, hi, nlo, nhi)
		}
		if !strings.Contains(ud, fmt.Sprintf("net.ipv4.ip_local_reserved_ports = %d-%d", lo, hi)) {
			t.Errorf("user data must reserve the room ports %d-%d (ip_local_reserved_ports): the ephemeral range overlaps them", lo, hi)
		}
		if env["ROOM_BIND"] != "127.0.0.1" || env["IMDS"] != "1" {
			t.Errorf("user data env: ROOM_BIND=%q IMDS=%q, want 127.0.0.1 and 1", env["ROOM_BIND"], env["IMDS"])
		}
	})
}

func checkCFNRefs(t *testing.T, tpl map[string]any) {
	t.Helper()
	params, resources, conds, outputs := section(tpl, "Parameters"), section(tpl, "Resources"), section(tpl, "Conditions"), section(tpl, "Outputs")
	if len(resources) == 0 || len(outputs) == 0 {
		t.Fatal("no Resources or no Outputs")
	}
	refs := &cfnRefs{refs: map[string][]string{}, getAtts: map[string][]string{}, conditions: map[string][]string{}}
	for _, sec := range []string{"Conditions", "Resources", "Outputs"} {
		refs.collect(tpl[sec], sec)
	}
	for name, where := range refs.refs {
		_, isParam := params[name]
		_, isRes := resources[name]
		if !isParam && !isRes && !cfnPseudo[name] {
			t.Errorf("Ref/${} %q (at %s) is no parameter, resource or pseudo parameter", name, where[0])
		}
	}
	for name, where := range refs.getAtts {
		if _, ok := resources[name]; !ok {
			t.Errorf("GetAtt %q (at %s) is no resource", name, where[0])
		}
	}
	for name, where := range refs.conditions {
		if _, ok := conds[name]; !ok {
			t.Errorf("condition %q (at %s) is not defined", name, where[0])
		}
	}
	for name := range params {
		if len(refs.refs[name]) == 0 {
			t.Errorf("parameter %s is never used", name)
		}
	}
	for name := range conds {
		if len(refs.conditions[name]) == 0 {
			t.Errorf("condition %s is never used", name)
		}
	}
	for name, r := range resources {
		if dig(r, "Type") == nil {
			t.Errorf("resource %s has no Type", name)
		}
		var deps []any
		switch d := dig(r, "DependsOn").(type) {
		case string:
			deps = []any{d}
		case []any:
			deps = d
		}
		for _, d := range deps {
			if _, ok := resources[fmt.Sprint(d)]; !ok {
				t.Errorf("resource %s depends on %v, which is not a resource", name, d)
			}
		}
	}
	for name, o := range outputs {
		v := dig(o, "Value")
		one := &cfnRefs{refs: map[string][]string{}, getAtts: map[string][]string{}, conditions: map[string][]string{}}
		one.collect(v, "Outputs."+name)
		if v == nil || len(one.refs)+len(one.getAtts) == 0 {
			t.Errorf("output %s refers to nothing the stack defines: %v", name, v)
		}
	}
}

// checkCFNSchema decodes every resource into goformation's type for it,
// which refuses unknown properties (at any depth) and values of the wrong
// shape, after resolving Refs to parameter defaults. CloudFormation turns
// strings into numbers and back where a property needs it; goformation's
// types do not, so such a mismatch is coerced and the decode retried.
func checkCFNSchema(t *testing.T, text string, tpl map[string]any) {
	t.Helper()
	overrides := map[string]any{}
	for name, p := range section(tpl, "Parameters") {
		typ := fmt.Sprint(dig(p, "Type"))
		switch {
		case strings.HasPrefix(typ, "List<") || typ == "CommaDelimitedList":
			overrides[name] = []any{"x-" + name + "-1", "x-" + name + "-2"}
		case dig(p, "Default") != nil:
			overrides[name] = fmt.Sprint(dig(p, "Default"))
		default:
			overrides[name] = "x-" + name
		}
	}
	processed, err := intrinsics.ProcessYAML([]byte(text), &intrinsics.ProcessorOptions{ParameterOverrides: overrides})
	if err != nil {
		t.Fatalf("goformation intrinsics: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(processed, &raw); err != nil {
		t.Fatal(err)
	}
	types := cloudformation.AllResources()
	for name, r := range section(raw, "Resources") {
		typ := fmt.Sprint(dig(r, "Type"))
		proto, ok := types[typ]
		if !ok {
			t.Errorf("resource %s: goformation does not know type %s", name, typ)
			continue
		}
		res := r.(map[string]any)
		for attempt := 0; ; attempt++ {
			b, _ := json.Marshal(res)
			typed := reflect.New(reflect.TypeOf(proto).Elem()).Interface()
			err := json.Unmarshal(b, typed)
			if err == nil {
				break
			}
			var te *json.UnmarshalTypeError
			if attempt < 50 && errors.As(err, &te) && coerce(res, strings.Split(te.Field, "."), te.Value == "string") {
				continue
			}
			t.Errorf("resource %s (%s): %v", name, typ, err)
			break
		}
	}
}

// coerce converts, at path in v (through every list element), strings that
// hold numbers into numbers (toNumber) or numbers into strings, and reports
// whether it changed anything.
func coerce(v any, path []string, toNumber bool) bool {
	switch x := v.(type) {
	case []any:
		changed := false
		for _, e := range x {
			changed = coerce(e, path, toNumber) || changed
		}
		return changed
	case map[string]any:
		if len(path) == 0 {
			return false
		}
		if len(path) == 1 {
			switch leaf := x[path[0]].(type) {
			case string:
				if f, err := strconv.ParseFloat(leaf, 64); toNumber && err == nil {
					x[path[0]] = f
					return true
				}
			case float64:
				if !toNumber {
					x[path[0]] = strconv.FormatFloat(leaf, 'f', -1, 64)
					return true
				}
			case []any:
				return coerce(leaf, nil, toNumber) || coerceList(leaf, toNumber)
			}
			return false
		}
		return coerce(x[path[0]], path[1:], toNumber)
	}
	return false
}

func coerceList(l []any, toNumber bool) bool {
	changed := false
	for i, e := range l {
		switch leaf := e.(type) {
		case string:
			if f, err := strconv.ParseFloat(leaf, 64); toNumber && err == nil {
				l[i], changed = f, true
			}
		case float64:
			if !toNumber {
				l[i], changed = strconv.FormatFloat(leaf, 'f', -1, 64), true
			}
		}
	}
	return changed
}

// cfnPort resolves a port property: a number, or a Ref to a parameter's default.
func cfnPort(t *testing.T, tpl map[string]any, v any) int {
	t.Helper()
	if ref, ok := dig(v, "Ref").(string); ok {
		v = dig(section(tpl, "Parameters")[ref], "Default")
	}
	n, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("port %v: not a number or a parameter with a numeric default", v)
	}
	return n
}

func checkCFNSecurity(t *testing.T, tpl map[string]any) {
	t.Helper()
	resources := section(tpl, "Resources")
	roomLo, roomHi := defaultRoomRange(t)
	var rules []map[string]any
	for _, r := range resources {
		switch dig(r, "Type") {
		case "AWS::EC2::SecurityGroup":
			l, _ := dig(r, "Properties", "SecurityGroupIngress").([]any)
			for _, e := range l {
				if m, ok := e.(map[string]any); ok {
					rules = append(rules, m)
				}
			}
		case "AWS::EC2::SecurityGroupIngress":
			rules = append(rules, dig(r, "Properties").(map[string]any))
		}
	}
	if len(rules) == 0 {
		t.Error("no ingress rules")
	}
	for _, rule := range rules {
		desc := fmt.Sprint(rule["Description"])
		if p := fmt.Sprint(rule["IpProtocol"]); p == "-1" || p == "all" {
			t.Errorf("rule %q opens every protocol and port", desc)
			continue
		}
		from, to := cfnPort(t, tpl, rule["FromPort"]), cfnPort(t, tpl, rule["ToPort"])
		world := rule["CidrIp"] == "0.0.0.0/0" || rule["CidrIpv6"] == "::/0"
		if world && (from != 443 || to != 443) {
			t.Errorf("rule %q opens %d-%d to the world; only 443 (nginx) may be public", desc, from, to)
		}
		if from <= roomHi && to >= roomLo {
			t.Errorf("rule %q opens room ports (%d-%d): rooms are reached through nginx only", desc, from, to)
		}
		if !world && rule["SourceSecurityGroupId"] == nil && rule["CidrIp"] != nil {
			t.Logf("rule %q admits a CIDR: %v", desc, rule["CidrIp"])
		}
	}
	// The admin port, if the stack has one, is open to a security group only.
	if _, ok := section(tpl, "Parameters")["AdminPort"]; ok {
		admin := cfnPort(t, tpl, map[string]any{"Ref": "AdminPort"})
		found := false
		for _, rule := range rules {
			if cfnPort(t, tpl, rule["FromPort"]) <= admin && cfnPort(t, tpl, rule["ToPort"]) >= admin {
				found = true
				if dig(rule, "SourceSecurityGroupId", "Ref") != "ControlApiSecurityGroupId" {
					t.Errorf("admin port %d is open to %v; want the control API's security group only", admin, rule)
				}
			}
		}
		if !found {
			t.Error("no rule lets the control API reach the admin port")
		}
	}

	for name, r := range resources {
		switch dig(r, "Type") {
		case "AWS::EC2::LaunchTemplate":
			md := dig(r, "Properties", "LaunchTemplateData", "MetadataOptions")
			if dig(md, "HttpTokens") != "required" || dig(md, "HttpPutResponseHopLimit") != "1" {
				t.Errorf("%s: MetadataOptions %v, want HttpTokens required (IMDSv2) and HttpPutResponseHopLimit 1", name, md)
			}
		case "AWS::AutoScaling::AutoScalingGroup":
			if dig(r, "Properties", "VPCZoneIdentifier", "Ref") != "SubnetIds" ||
				!strings.HasPrefix(fmt.Sprint(dig(section(tpl, "Parameters")["SubnetIds"], "Type")), "List<") {
				t.Errorf("%s: VPCZoneIdentifier must be the SubnetIds list (several AZs)", name)
			}
		case "AWS::IAM::Role":
			checkIAM(t, name, r)
		}
	}
}

// checkIAM holds an instance role to least privilege: no wildcard actions;
// Resource "*" only for the Session Manager channel, which has no resource;
// parameter reads only of the stack's named parameters.
func checkIAM(t *testing.T, name string, role any) {
	t.Helper()
	starOK := map[string]bool{
		"ssm:UpdateInstanceInformation": true, "ssmmessages:CreateControlChannel": true, "ssmmessages:CreateDataChannel": true,
		"ssmmessages:OpenControlChannel": true, "ssmmessages:OpenDataChannel": true,
	}
	if l, _ := dig(role, "Properties", "ManagedPolicyArns").([]any); len(l) > 0 {
		t.Errorf("%s: managed policies %v (AmazonSSMManagedInstanceCore, say, reads every parameter)", name, l)
	}
	pols, _ := dig(role, "Properties", "Policies").([]any)
	var stmts []any
	for _, p := range pols {
		l, _ := dig(p, "PolicyDocument", "Statement").([]any)
		for _, s := range l {
			if iff, ok := dig(s, "Fn::If").([]any); ok && len(iff) == 3 {
				stmts = append(stmts, iff[1])
				continue
			}
			stmts = append(stmts, s)
		}
	}
	if len(stmts) == 0 {
		t.Errorf("%s: no policy statements", name)
	}
	for _, s := range stmts {
		if dig(s, "Effect") != "Allow" {
			continue
		}
		actions := asList(dig(s, "Action"))
		resources := asList(dig(s, "Resource"))
		for _, a := range actions {
			as := fmt.Sprint(a)
			if strings.Contains(as, "*") {
				t.Errorf("%s: wildcard action %s", name, as)
			}
			for _, r := range resources {
				if r == "*" && !starOK[as] {
					t.Errorf("%s: %s on every resource", name, as)
				}
			}
			if strings.HasPrefix(as, "ssm:GetParameter") {
				for _, r := range resources {
					sub, _ := dig(r, "Fn::Sub").(string)
					if !regexp.MustCompile(`:parameter\$\{\w+ParameterName\}$`).MatchString(sub) {
						t.Errorf("%s: %s on %v; want only the stack's *ParameterName parameters", name, as, r)
					}
				}
			}
		}
	}
}

// userData returns the script of the template's (one) launch template.
func userData(t *testing.T, tpl map[string]any) string {
	t.Helper()
	for _, r := range section(tpl, "Resources") {
		if dig(r, "Type") == "AWS::EC2::LaunchTemplate" {
			s, ok := dig(r, "Properties", "LaunchTemplateData", "UserData", "Fn::Base64", "Fn::Sub").(string)
			if !ok {
				t.Fatal("UserData is not Fn::Base64 of a Fn::Sub string")
			}
			return s
		}
	}
	t.Fatal("no launch template")
	return ""
}

func checkCFNUserData(t *testing.T, tpl map[string]any, cmd, envPath string) {
	t.Helper()
	ud := userData(t, tpl)
	if !strings.HasPrefix(ud, "#!/bin/bash\n") || !strings.Contains(ud, "set -euo pipefail") {
		t.Error("user data: want a bash script with set -euo pipefail")
	}
	name := filepath.Base(cmd)
	// The files the user data installs from the release tarball exist here.
	for _, p := range regexp.MustCompile(`/opt/chatfleet/((?:infra|bin)/[\w./-]+)`).FindAllStringSubmatch(ud, -1) {
		rel := p[1]
		if bin, ok := strings.CutPrefix(rel, "bin/"); ok {
			rel = "fleet/cmd/" + bin + "/main.go"
		}
		if _, err := os.Stat(filepath.Join(root(t), rel)); err != nil {
			t.Errorf("user data installs %s, which the repository does not have (%s)", p[1], rel)
		}
	}
	unit := "/opt/chatfleet/infra/systemd/" + name + ".service /etc/systemd/system/" + name + ".service"
	if !strings.Contains(ud, unit) {
		t.Errorf("user data does not install infra/systemd/%s.service", name)
	}
	if !strings.Contains(ud, "/usr/local/bin/"+name) {
		t.Errorf("user data does not install the binary at /usr/local/bin/%s (the unit's ExecStart)", name)
	}
	if !regexp.MustCompile(`systemctl enable --now [\w -]*\b` + name + `\b`).MatchString(ud) {
		t.Errorf("user data does not enable and start %s", name)
	}
	if name == "chatserver" && !strings.Contains(ud, "/opt/chatfleet/infra/nginx/chatfleet.conf /etc/nginx/conf.d/chatfleet.conf") {
		t.Error("user data does not install infra/nginx/chatfleet.conf")
	}
	// The env file it writes holds only variables the binary reads, the
	// required ones included.
	reads := envVarsRead(t, cmd)
	set := map[string]bool{}
	for _, l := range heredoc(t, ud, "cat > "+envPath) {
		k, _, ok := strings.Cut(l, "=")
		if !ok || !envNameRE.MatchString(k) {
			t.Errorf("%s: line %q is not NAME=value", envPath, l)
			continue
		}
		set[k] = true
		if !reads[k] {
			t.Errorf("user data writes %s=, which %s does not read", k, cmd)
		}
	}
	for _, k := range requiredEnv[cmd] {
		if !set[k] {
			t.Errorf("user data does not set %s", k)
		}
	}
}

// TestDockerCompose checks infra/docker-compose.yml against the binaries.
func TestDockerCompose(t *testing.T) {
	var doc struct {
		Services map[string]map[string]any `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(readRepo(t, "infra/docker-compose.yml")), &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(doc.Services) == 0 {
		t.Fatal("no services")
	}
	// Which binary each service runs: from its Dockerfile's go build target,
	// or, without a build, from the service that builds its image.
	binOf := map[string]string{}
	imageBin := map[string]string{}
	for name, svc := range doc.Services {
		df, _ := dig(svc, "build", "dockerfile").(string)
		if df == "" {
			continue
		}
		text := readRepo(t, filepath.ToSlash(filepath.Join("infra", fmt.Sprint(dig(svc, "build", "context")), df)))
		m := regexp.MustCompile(`\./(fleet/cmd/\w+)`).FindStringSubmatch(text)
		if m == nil {
			if name != "devstore" {
				t.Fatalf("%s: %s builds no ./fleet/cmd/... binary", name, df)
			}
			continue // the dev profile's store
		}
		binOf[name] = m[1]
		if img, ok := svc["image"].(string); ok {
			imageBin[img] = m[1]
		}
	}
	for name, svc := range doc.Services {
		if _, ok := binOf[name]; !ok {
			if b, ok := imageBin[fmt.Sprint(svc["image"])]; ok {
				binOf[name] = b
			}
		}
	}
	count := map[string]int{}
	for name, cmd := range binOf {
		count[cmd]++
		t.Run(name, func(t *testing.T) {
			svc := doc.Services[name]
			env := composeEnv(t, svc)
			reads := envVarsRead(t, cmd)
			for k := range env {
				if !reads[k] {
					t.Errorf("sets %s, which %s does not read", k, cmd)
				}
			}
			for _, k := range requiredEnv[cmd] {
				if env[k] == "" {
					t.Errorf("required %s is not set", k)
				}
			}
			port := env["PORT"]
			if port == "" {
				t.Fatal("PORT is not set")
			}
			published := false
			for _, p := range asList(svc["ports"]) {
				if strings.HasSuffix(fmt.Sprint(p), ":"+port) {
					published = true
				}
			}
			if !published {
				t.Errorf("PORT %s is not published (ports %v)", port, svc["ports"])
			}
		})
	}
	if count[chatserverCmd] != 1 || count[loadbalancerCmd] != 2 {
		t.Errorf("services by binary %v: want one chatserver and two load balancers", count)
	}
	lbPorts := map[string]string{} // "service:port"
	for name, cmd := range binOf {
		if cmd == loadbalancerCmd {
			lbPorts[name+":"+composeEnv(t, doc.Services[name])["PORT"]] = name
		}
	}
	for _, want := range []string{"2000", "2001"} {
		found := false
		for _, p := range lbPorts {
			for _, pp := range asList(doc.Services[p]["ports"]) {
				found = found || fmt.Sprint(pp) == want+":"+want
			}
		}
		if !found {
			t.Errorf("no load balancer published on %s", want)
		}
	}
	for name, cmd := range binOf {
		if cmd != chatserverCmd {
			continue
		}
		svc := doc.Services[name]
		env := composeEnv(t, svc)
		mongo := ""
		deps, _ := dig(svc, "depends_on").(map[string]any) // the short list form has no conditions
		for dep, cond := range deps {
			if dig(cond, "condition") == "service_healthy" {
				mongo = dep
			}
		}
		if mongo == "" || dig(doc.Services[mongo], "healthcheck", "test") == nil {
			t.Errorf("%s: want depends_on a MongoDB service with condition service_healthy and a healthcheck", name)
		}
		if u, err := url.Parse(env["MONGODB_URI"]); err != nil || u.Hostname() != mongo {
			t.Errorf("%s: MONGODB_URI %q does not point at the %q service", name, env["MONGODB_URI"], mongo)
		}
		for _, lb := range strings.Split(env["LOADBALANCERS"], ",") {
			u, err := url.Parse(lb)
			if err != nil || lbPorts[u.Host] == "" {
				t.Errorf("%s: LOADBALANCERS entry %q is not a load-balancer service's host:PORT (%v)", name, lb, sortedKeys(lbPorts))
			}
		}
		if len(strings.Split(env["LOADBALANCERS"], ",")) != len(lbPorts) {
			t.Errorf("%s: LOADBALANCERS %q must list every load balancer", name, env["LOADBALANCERS"])
		}
		if d, err := time.ParseDuration(fmt.Sprint(svc["stop_grace_period"])); err != nil || d <= 15*time.Second {
			t.Errorf("%s: stop_grace_period %v, want more than STOP_DEADLINE (15s) so rooms drain", name, svc["stop_grace_period"])
		}
	}
}

// dockerPackages is the package each Dockerfile of infra/docker/ builds.
var dockerPackages = map[string]string{
	"chatserver.Dockerfile":   "./" + chatserverCmd,
	"loadbalancer.Dockerfile": "./" + loadbalancerCmd,
	"devstore.Dockerfile":     "./devstore/cmd/devstore",
	"lambda.Dockerfile":       "./functions/${FUNCTION}",
}

// TestDockerfiles checks infra/docker/*.Dockerfile: the bases are build
// arguments whose defaults are the production images (the golang builder,
// distroless/static); the default target compiles a static (CGO_ENABLED=0)
// binary of the right package in the builder and copies it onto the stage
// `runtime`; the target `prebuilt` (CI, scripts/images.sh) copies the same
// files from the build context onto the same stage `runtime`, which runs as
// a non-root user with an exec-form ENTRYPOINT naming a copied binary. The
// chatserver's entry point is `chatserver init`, not the master.
func TestDockerfiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(root(t), "infra/docker/*.Dockerfile"))
	if len(files) != len(dockerPackages) {
		t.Errorf("Dockerfiles %v: want exactly %v", files, sortedKeys(dockerPackages))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			pkg, ok := dockerPackages[filepath.Base(f)]
			if !ok {
				t.Fatal("unknown Dockerfile: add it to dockerPackages and scripts/images.sh")
			}
			b, _ := os.ReadFile(f)
			args := dockerGlobalArgs(string(b))
			if !strings.HasPrefix(args["GO_IMAGE"], "golang:1.26") {
				t.Errorf("ARG GO_IMAGE=%q, want the golang 1.26 image by default", args["GO_IMAGE"])
			}
			if !strings.HasPrefix(args["RUNTIME_IMAGE"], "gcr.io/distroless/static") {
				t.Errorf("ARG RUNTIME_IMAGE=%q, want distroless/static by default", args["RUNTIME_IMAGE"])
			}
			stages := parseDockerfile(string(b))
			byName := map[string]dockerStage{}
			for _, st := range stages {
				byName[st.name] = st
			}
			runtime, build, prebuilt := byName["runtime"], byName["build"], byName["prebuilt"]
			if runtime.from != "${RUNTIME_IMAGE}" || build.from != "${GO_IMAGE}" || prebuilt.from != "runtime" {
				t.Fatalf("stages runtime FROM %q, build FROM %q, prebuilt FROM %q: want ${RUNTIME_IMAGE}, ${GO_IMAGE}, runtime",
					runtime.from, build.from, prebuilt.from)
			}
			final := stages[len(stages)-1]
			if final.name != "" || final.from != "runtime" {
				t.Fatalf("the last stage (the default target) is %q FROM %q, want an unnamed stage FROM runtime", final.name, final.from)
			}
			built := false
			for _, in := range build.instr {
				if in[0] == "RUN" && strings.Contains(in[1], "go build") {
					if !strings.Contains(in[1], "CGO_ENABLED=0") {
						t.Errorf("go build without CGO_ENABLED=0: %s", in[1])
					}
					built = built || strings.Contains(in[1], " "+pkg)
				}
			}
			if !built {
				t.Fatalf("the build stage does not go build %s", pkg)
			}
			for _, p := range []string{strings.ReplaceAll(pkg, "${FUNCTION}", "rooms"), strings.ReplaceAll(pkg, "${FUNCTION}", "admin")} {
				if _, err := os.Stat(filepath.Join(root(t), p, "main.go")); err != nil {
					t.Errorf("builds %s, which has no main.go", p)
				}
			}
			// Both targets put the same files at the same places.
			dests := func(st dockerStage, from string) []string {
				var out []string
				for _, in := range st.instr {
					if in[0] == "COPY" && strings.Contains(in[1], "--from="+from) == (from != "") {
						f := strings.Fields(in[1])
						out = append(out, f[len(f)-1])
					}
				}
				slices.Sort(out)
				return out
			}
			copied := dests(final, "build")
			if len(copied) == 0 || !slices.Equal(copied, dests(prebuilt, "")) {
				t.Errorf("the default target copies %v from the build stage, prebuilt copies %v: want the same", copied, dests(prebuilt, ""))
			}
			user, entry := "", ""
			for _, in := range runtime.instr {
				switch in[0] {
				case "USER":
					user = in[1]
				case "ENTRYPOINT":
					entry = in[1]
				}
			}
			if u := strings.Split(user, ":")[0]; u == "" || u == "root" || u == "0" {
				t.Errorf("runtime USER %q: want a non-root user", user)
			}
			var argv []string
			if err := json.Unmarshal([]byte(entry), &argv); err != nil || len(argv) == 0 || !slices.Contains(copied, argv[0]) {
				t.Errorf("ENTRYPOINT %s: want exec form naming a copied binary (%v)", entry, copied)
			}
			if filepath.Base(f) == "chatserver.Dockerfile" && !slices.Equal(argv, []string{"/usr/local/bin/chatserver", "init"}) {
				t.Errorf("ENTRYPOINT %s: want chatserver init as PID 1 (it reaps rooms and restarts a crashed master)", entry)
			}
		})
	}
}

// dockerGlobalArgs returns the ARGs declared before the first FROM, with
// their defaults.
func dockerGlobalArgs(text string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if strings.EqualFold(f[0], "FROM") {
			break
		}
		if strings.EqualFold(f[0], "ARG") && len(f) == 2 {
			k, v, _ := strings.Cut(f[1], "=")
			out[k] = v
		}
	}
	return out
}

// TestOperationsDoc checks that docs/operations.md documents every variable
// the binaries read, every metric they export and the operations' commands.
func TestOperationsDoc(t *testing.T) {
	doc := readRepo(t, "docs/operations.md")
	for _, cmd := range []string{chatserverCmd, loadbalancerCmd} {
		for _, v := range sortedKeys(envVarsRead(t, cmd)) {
			if !strings.Contains(doc, "`"+v+"`") {
				t.Errorf("%s reads %s; docs/operations.md does not document it (as `%s`)", cmd, v, v)
			}
		}
	}
	var metrics []string
	stats := readRepo(t, "fleet/internal/master/stats.go")
	for _, m := range regexp.MustCompile(`(?:gauge|counter)\("(\w+)"`).FindAllStringSubmatch(stats, -1) {
		metrics = append(metrics, "chatserver_"+m[1])
	}
	if len(metrics) < 8 {
		t.Fatalf("found only %v in fleet/internal/master/stats.go", metrics)
	}
	lbSrc := readRepo(t, "fleet/internal/lb/lb.go")
	for _, m := range regexp.MustCompile(`"(chatfleet_lb_\w+)"`).FindAllStringSubmatch(lbSrc, -1) {
		metrics = append(metrics, m[1])
	}
	for _, m := range metrics {
		if !strings.Contains(doc, m) {
			t.Errorf("metric %s is not in docs/operations.md", m)
		}
	}
	for _, want := range []string{
		"sam build", "sam deploy --config-env dev", "systemctl reload chatserver", "/api/v1/drain",
		"infra/cloudformation/fleet.yaml", "infra/cloudformation/loadbalancer.yaml", "infra/cloudformation/nats.yaml", "X-API-Key",
		"Scale-out (NATS)", "4222", "6222", "8222",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/operations.md does not mention %q", want)
		}
	}
}
