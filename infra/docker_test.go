package infra

// The Docker tests: the images of infra/docker/ run for real, on this
// machine's Docker engine, with the host's network. They build the images as
// `make images IMAGE_BASES=local` does (testutil.DockerImages) and skip,
// saying why, only where no Docker engine runs (.ci/run starts one). The
// Lambda images are run by functions/lambda_docker_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/protocol"
)

const (
	testKey      = "TESTING_KEY"
	testAdminKey = "ADMIN_TESTING_KEY"
	testLBKey    = "LB_TESTING_KEY"
	testSecret   = "docker-test-token-secret-0123456789"
)

// issueToken returns a join token of room for user with role.
func issueToken(t *testing.T, room, user string, role chatfleet.Role) string {
	return testutil.Token(t, testSecret, room, user, role)
}

// chat joins room (on port) as a producer and a viewer, and checks that the
// viewer gets what the producer says; it returns both connections.
func chat(t *testing.T, port int, room string) (prod, viewer *testutil.WS) {
	t.Helper()
	base := fmt.Sprintf("ws://127.0.0.1:%d", port)
	prod = testutil.DialRoom(t, base, issueToken(t, room, "pia", chatfleet.RoleProducer), -1)
	prod.Next(protocol.TypeWelcome, 10*time.Second)
	viewer = testutil.DialRoom(t, base, issueToken(t, room, "vin", chatfleet.RoleViewer), -1)
	viewer.Next(protocol.TypeWelcome, 10*time.Second)
	say(t, prod, viewer, "hello from "+room)
	return prod, viewer
}

// say sends text from prod and waits for viewer to get it.
func say(t *testing.T, prod, viewer *testutil.WS, text string) {
	t.Helper()
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: strconv.FormatInt(time.Now().UnixNano(), 36)})
	for {
		m := viewer.Next(protocol.TypeChat, 10*time.Second)
		if m.Text == text {
			return
		}
	}
}

// seedTranscript replays the seed README's curl calls against a host on
// api/admin and checks that its first room port answers the room's name.
func seedTranscript(t *testing.T, api, admin string, roomMin int) {
	t.Helper()
	for _, s := range []struct{ method, url, key, want string }{
		{"GET", api + "/api/v1/", "", `{"data":{"app":"chatserver","version":"`},
		{"GET", admin + "/api/v1/", testAdminKey, `{"data":{"app":"Admin chatserver","version":"`},
		{"POST", api + "/api/v1/room/testroom", testKey, fmt.Sprintf(`{"data":{"port":%d,"message":"Room created"}}`, roomMin)},
		{"GET", fmt.Sprintf("http://127.0.0.1:%d", roomMin), "", "testroom"},
	} {
		status, body := testutil.Do(t, s.method, s.url, s.key, "")
		if status/100 != 2 || !strings.HasPrefix(body, s.want) {
			t.Fatalf("%s %s = %d %q, want %q", s.method, s.url, status, body, s.want)
		}
	}
}

// roomsOf lists the rooms of the host whose admin API is admin: name → pid.
func roomsOf(admin string) (map[string]int, error) {
	status, body, err := testutil.TryDo("GET", admin+"/api/v1/rooms", testAdminKey, "")
	if err != nil || status != 200 {
		return nil, fmt.Errorf("list rooms: %d %s %v", status, body, err)
	}
	var resp struct {
		Data struct {
			Rooms []struct {
				Name   string
				PID    int
				Status string
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range resp.Data.Rooms {
		out[r.Name] = r.PID
	}
	return out, nil
}

func waitHealthy(t *testing.T, url string, timeout time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		status, _, err := testutil.TryDo("GET", url, "", "")
		if err == nil && status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %v after %v\n%s", url, status, err, timeout, logs())
		}
		time.Sleep(100 * time.Millisecond) // polling the container's start
	}
}

func listeningOn(port int) bool {
	status, _, err := testutil.TryDo("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), "", "")
	return err == nil && status != 0
}

// TestContainerMasterCrash runs the chatserver image as one container on the
// host's network. Its PID 1 is `chatserver init`, not the master. SIGKILL
// of the master (from the host: the image has no shell) leaves the rooms
// serving their open WebSockets, and init starts a new master that re-adopts
// the same room processes; the time from the kill to the re-adoption is
// logged. `docker stop` then drains: the container exits 0 within the
// compose file's stop_grace_period and leaves no room listening.
func TestContainerMasterCrash(t *testing.T) {
	tag := testutil.DockerImages(t)
	name := fmt.Sprintf("chatfleet-test-master-%d", os.Getpid())
	apiPort, adminPort, roomMin := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePortRange(t, 10)
	api, admin := fmt.Sprintf("http://127.0.0.1:%d", apiPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	t.Cleanup(func() { testutil.TryDocker("rm", "-f", "-v", name) })
	args := []string{"run", "-d", "--name", name, "--network", "host", "--stop-timeout", "30"}
	for _, kv := range []string{
		"KEY=" + testKey, "ADMIN_KEY=" + testAdminKey, "TOKEN_SECRET=" + testSecret, "LOG_LEVEL=info",
		"PORT=" + strconv.Itoa(apiPort), "ADMIN_PORT=" + strconv.Itoa(adminPort), "DRAIN_WINDOW=1s",
		"ROOM_PORT_MIN=" + strconv.Itoa(roomMin), "ROOM_PORT_MAX=" + strconv.Itoa(roomMin+9), "ROOM_SPARES=1",
	} {
		args = append(args, "-e", kv)
	}
	testutil.Docker(t, append(args, "chatfleet/chatserver:"+tag)...)
	logs := func() string { out, _ := exec.Command("docker", "logs", name).CombinedOutput(); return string(out) }
	waitHealthy(t, api+"/healthz", 30*time.Second, logs)

	seedTranscript(t, api, admin, roomMin)
	port := roomMin + 1
	if status, body := testutil.Do(t, "POST", api+"/api/v1/room/lounge", testKey, ""); status/100 != 2 || !strings.Contains(body, fmt.Sprintf(`"port":%d`, port)) {
		t.Fatalf("create lounge: %d %s", status, body)
	}
	prod, viewer := chat(t, port, "lounge")
	before, err := roomsOf(admin)
	if err != nil || len(before) != 2 {
		t.Fatalf("rooms %v %v, want testroom and lounge", before, err)
	}

	initPID, _ := strconv.Atoi(testutil.Docker(t, "inspect", "-f", "{{.State.Pid}}", name))
	if initPID <= 0 || testutil.ListensOn(initPID, adminPort) {
		t.Fatalf("PID 1 of the container (host pid %d) is the master; want chatserver init", initPID)
	}
	master := 0
	for _, pid := range testutil.ChildPIDs(initPID) {
		if testutil.ListensOn(pid, adminPort) {
			master = pid
		}
	}
	if master == 0 {
		t.Fatalf("no child of init (host pid %d) holds the admin port %d", initPID, adminPort)
	}

	killed := time.Now()
	if err := syscall.Kill(master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The room serves its open connections while its master is down.
	say(t, prod, viewer, "while the master is down")
	var readopted time.Duration
	testutil.Eventually(t, 20*time.Second, func() error {
		now, err := roomsOf(admin)
		if err != nil {
			return err
		}
		if fmt.Sprint(now) != fmt.Sprint(before) {
			return fmt.Errorf("rooms %v, want the same processes %v", now, before)
		}
		readopted = time.Since(killed)
		return nil
	})
	t.Logf("master SIGKILL to its rooms re-adopted by the new master, in the container: %v", readopted.Round(time.Millisecond))
	if !strings.Contains(logs(), "the master crashed") {
		t.Errorf("init did not log the crash:\n%s", logs())
	}
	say(t, prod, viewer, "after the re-adoption")
	if err := roomAnswers(roomMin, "testroom"); err != nil {
		t.Fatal(err)
	}

	stopStart := time.Now()
	testutil.Docker(t, "stop", name)
	stopped := time.Since(stopStart)
	state := testutil.Docker(t, "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name)
	t.Logf("docker stop (drain): %v, state %q", stopped.Round(time.Millisecond), state)
	if state != "false 0" {
		t.Fatalf("after docker stop: running, exit code = %q, want false 0 (drained, not killed)\n%s", state, logs())
	}
	if stopped >= 30*time.Second {
		t.Errorf("docker stop took %v, the whole grace period", stopped)
	}
	for _, p := range []int{roomMin, port} {
		if listeningOn(p) {
			t.Errorf("room port %d still answers after docker stop", p)
		}
	}
	if !strings.Contains(logs(), "draining rooms for shutdown") {
		t.Errorf("the master did not drain:\n%s", logs())
	}
}

// roomAnswers checks that the room on port answers its name.
func roomAnswers(port int, name string) error {
	status, body, err := testutil.TryDo("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), "", "")
	if err != nil || status != 200 || body != name {
		return fmt.Errorf("room on %d: %d %q %v, want %q", port, status, body, err, name)
	}
	return nil
}

// TestComposeUp brings infra/docker-compose.yml up with the override for a
// machine without an image registry (docker-compose.host.yml: the host's
// network, the local images, the dev profile's embedded store), on free
// ports. The store becomes healthy, both load balancers list the host, the
// seed's transcript and a WebSocket chat run through the containers, and
// `docker compose down -v` leaves no container, network or volume of the
// project.
func TestComposeUp(t *testing.T) {
	tag := testutil.DockerImages(t)
	if _, err := testutil.TryDocker("compose", "version"); err != nil {
		t.Fatalf("the docker compose plugin is missing (.ci/run builds it): %v", err)
	}
	project := fmt.Sprintf("chatfleet-test-%d", os.Getpid())
	ports := map[string]int{
		"LB_A_PORT": testutil.FreePort(t), "LB_B_PORT": testutil.FreePort(t), "STORE_PORT": testutil.FreePort(t),
		"HOST_PORT": testutil.FreePort(t), "HOST_ADMIN_PORT": testutil.FreePort(t), "ROOM_PORT_MIN": testutil.FreePortRange(t, 20),
	}
	env := append(os.Environ(), "CHATFLEET_TAG="+tag, "TOKEN_SECRET="+testSecret,
		"KEY="+testKey, "ADMIN_KEY="+testAdminKey, "LOADBALANCER_KEY="+testLBKey, "ROOM_PORT_MAX="+strconv.Itoa(ports["ROOM_PORT_MIN"]+19))
	for k, v := range ports {
		env = append(env, k+"="+strconv.Itoa(v))
	}
	compose := func(args ...string) (string, error) {
		cmd := exec.Command("docker", append([]string{"compose", "-p", project,
			"-f", filepath.Join(root(t), "infra/docker-compose.yml"), "-f", filepath.Join(root(t), "infra/docker-compose.host.yml"),
			"--profile", "dev"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	logs := func() string { out, _ := compose("logs", "--no-color"); return out }
	down := func() (string, error) { return compose("down", "-v", "--remove-orphans", "-t", "30") }
	t.Cleanup(func() { down() })

	start := time.Now()
	if out, err := compose("up", "-d", "--wait", "--wait-timeout", "60"); err != nil {
		t.Fatalf("compose up: %v\n%s\n%s", err, out, logs())
	}
	t.Logf("compose up (store healthy, every service started): %v", time.Since(start).Round(time.Millisecond))
	api := fmt.Sprintf("http://127.0.0.1:%d", ports["HOST_PORT"])
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports["HOST_ADMIN_PORT"])
	waitHealthy(t, api+"/healthz", 30*time.Second, logs)
	out, err := compose("ps", "--format", "{{.Service}} {{.State}} {{.Health}}")
	if err != nil || !strings.Contains(out, "devstore running healthy") || strings.Count(out, "running") != 4 {
		t.Fatalf("compose ps: %v\n%s", err, out)
	}

	// Both load balancers list the host as accepting.
	for _, lb := range []string{"LB_A_PORT", "LB_B_PORT"} {
		testutil.Eventually(t, 20*time.Second, func() error {
			status, body, err := testutil.TryDo("GET", fmt.Sprintf("http://127.0.0.1:%d/api/v1/hosts", ports[lb]), testLBKey, "")
			if err != nil || status != 200 || !strings.Contains(body, `"id":"chatserver-compose"`) || !strings.Contains(body, `"state":"accepting"`) {
				return fmt.Errorf("load balancer %s: %d %s %v", lb, status, body, err)
			}
			return nil
		})
	}
	seedTranscript(t, api, admin, ports["ROOM_PORT_MIN"])
	chat(t, ports["ROOM_PORT_MIN"], "testroom")
	// The host records its rooms in the store of the devstore container.
	st, err := mongo.Open(context.Background(), mongo.Config{URI: fmt.Sprintf("mongodb://127.0.0.1:%d/", ports["STORE_PORT"]), Database: "chatfleet"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	testutil.Eventually(t, 20*time.Second, func() error {
		r, err := st.Room(context.Background(), "testroom")
		if err != nil || r.Port != ports["ROOM_PORT_MIN"] {
			return fmt.Errorf("testroom in the store: %+v %v", r, err)
		}
		return nil
	})

	if out, err := down(); err != nil {
		t.Fatalf("compose down: %v\n%s", err, out)
	}
	for _, what := range [][]string{
		{"ps", "-a", "-q", "--filter", "label=com.docker.compose.project=" + project},
		{"volume", "ls", "-q", "--filter", "label=com.docker.compose.project=" + project},
		{"network", "ls", "-q", "--filter", "label=com.docker.compose.project=" + project},
	} {
		if left := testutil.Docker(t, what...); left != "" {
			t.Errorf("after compose down, docker %s: %s", strings.Join(what, " "), left)
		}
	}
	if listeningOn(ports["ROOM_PORT_MIN"]) || listeningOn(ports["HOST_PORT"]) {
		t.Error("a port still answers after compose down")
	}
}
