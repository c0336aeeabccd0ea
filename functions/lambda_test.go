// Package functions_test tests the Lambda functions as they are deployed:
// their bootstrap binaries under the AWS Lambda Runtime Interface Emulator
// with every event of events/, the SAM template against the handlers'
// routes, and what the binaries link.
package functions_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/token"
)

// rieModule is the emulator's module and version that .ci/run installs.
const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// expectation is one entry of events/expect.json: which function an event
// is for, in which fixture it runs, and what it must answer.
type expectation struct {
	Event    string `json:"event"`
	Function string `json:"function"` // rooms or admin
	Fixture  string `json:"fixture"`  // no-host, fleet or store-down
	Status   int    `json:"status"`
	Code     string `json:"code"` // the error envelope's code; "" for a 2xx
	// Headers the answer must have ("": must not have), e.g. CORS's.
	Headers map[string]string `json:"headers,omitempty"`
	Note    string            `json:"note"`
}

// functionEnv is events/env.json: the environment of each function for
// `sam local invoke --env-vars events/env.json`, holding the keys the events carry.
type functionEnv struct {
	RoomsFunction map[string]string
	AdminFunction map[string]string
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// findRIE returns the path of aws-lambda-rie, on PATH or in GOPATH/bin,
// failing t with how to install it if it is in neither.
func findRIE(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "aws-lambda-rie")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Fatalf("aws-lambda-rie (the AWS Lambda Runtime Interface Emulator) is neither on PATH nor in GOPATH/bin; install it with\n\tgo install %s\n(.ci/run does)", rieModule)
	return ""
}

// buildBootstrap builds function (rooms or admin) as the deployment does,
// but for this machine's architecture so that it can run here, into a
// directory of its own, and returns the binary's path.
func buildBootstrap(t *testing.T, function string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", out, "./functions/"+function)
	cmd.Dir = testutil.ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", function, err, b)
	}
	return out
}

// emulator is one aws-lambda-rie running one function's bootstrap: a
// process here, or a container (lambda_docker_test.go).
type emulator struct {
	url    string
	output func() string // what the emulator and the function wrote
}

// starter starts function (rooms or admin) with env as its environment and
// returns its emulator once it accepts invocations.
type starter func(t *testing.T, function string, env map[string]string) *emulator

// startEmulator runs bootstrap under the emulator, bound to loopback, with
// env as the function's environment.
func startEmulator(t *testing.T, rie, bootstrap string, env map[string]string) *emulator {
	t.Helper()
	port, apiPort := testutil.FreePort(t), testutil.FreePort(t)
	vars := []string{"AWS_LAMBDA_FUNCTION_TIMEOUT=30", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256", "LOG_LEVEL=error"}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	p := testutil.Start(t, rie, vars,
		"--runtime-interface-emulator-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", apiPort),
		bootstrap)
	e := &emulator{url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", port), output: p.Output}
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case <-p.Done():
			t.Fatalf("aws-lambda-rie exited:\n%s", p.Output())
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return err
		}
		return c.Close()
	})
	return e
}

// invoke sends one event and returns the function's API Gateway proxy response.
func (e *emulator) invoke(t *testing.T, event []byte) events.APIGatewayProxyResponse {
	t.Helper()
	resp, err := (&http.Client{Timeout: 40 * time.Second}).Post(e.url, "application/json", bytes.NewReader(event))
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, e.output())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: emulator answered %d %s\n%s", resp.StatusCode, b, e.output())
	}
	var out events.APIGatewayProxyResponse
	if err := json.Unmarshal(b, &out); err != nil || out.StatusCode == 0 {
		t.Fatalf("invoke: %q is not an API Gateway proxy response (%v)\n%s", b, err, e.output())
	}
	return out
}

// TestEvents invokes both functions' bootstraps under the Lambda Runtime
// Interface Emulator with every event of events/, one at a time, in the
// order and fixture events/expect.json gives, against the embedded store, a
// real load balancer and a real chatserver, and checks each answer's status
// and error code.
func TestEvents(t *testing.T) {
	rie := findRIE(t)
	bootstraps := map[string]string{"rooms": buildBootstrap(t, "rooms"), "admin": buildBootstrap(t, "admin")}
	runEvents(t, func(t *testing.T, function string, env map[string]string) *emulator {
		return startEmulator(t, rie, bootstraps[function], env)
	})
}

// runEvents is TestEvents with the functions started by start.
func runEvents(t *testing.T, start starter) {
	root := testutil.ModuleRoot(t)
	dir := filepath.Join(root, "events")
	var expect []expectation
	readJSON(t, filepath.Join(dir, "expect.json"), &expect)
	var fenv functionEnv
	readJSON(t, filepath.Join(dir, "env.json"), &fenv)

	t.Run("every event has one expectation", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		var listed []string
		for _, e := range expect {
			listed = append(listed, e.Event)
			if e.Function != "rooms" && e.Function != "admin" || !slices.Contains([]string{"no-host", "fleet", "store-down"}, e.Fixture) ||
				e.Status < 200 || (e.Status >= 300) != (e.Code != "") {
				t.Errorf("%s: bad expectation %+v", e.Event, e)
			}
		}
		for _, f := range files {
			name := filepath.Base(f)
			if name == "expect.json" || strings.HasPrefix(name, "env") {
				continue
			}
			if n := count(listed, name); n != 1 {
				t.Errorf("%s is listed %d times in expect.json, want once", name, n)
			}
		}
		for _, name := range listed {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Errorf("expect.json lists %s: %v", name, err)
			}
		}
	})

	lbKey, fleetKey := fenv.RoomsFunction["LOADBALANCER_KEY"], fenv.RoomsFunction["FLEET_KEY"]
	fleetAdminKey, tokenSecret := fenv.AdminFunction["FLEET_ADMIN_KEY"], fenv.RoomsFunction["TOKEN_SECRET"]
	tokens, err := token.NewIssuer(tokenSecret)
	if err != nil {
		t.Fatalf("events/env.json: %v", err)
	}

	// The fleet: the embedded store, a load balancer; the chatserver comes
	// after the no-host events.
	storeCfg := storetest.Config(t)
	storetest.Open(t, storeCfg) // drops the database at the end
	lb := startLB(t, lbKey)
	envFor := func(function, mongoURI string) map[string]string {
		env := fenv.RoomsFunction
		if function == "admin" {
			env = fenv.AdminFunction
		}
		out := map[string]string{}
		for k, v := range env {
			out[k] = v
		}
		out["MONGODB_URI"], out["MONGODB_DATABASE"], out["LOADBALANCERS"] = mongoURI, storeCfg.Database, lb
		return out
	}
	emulators := map[string]*emulator{}
	// Emulators live for the whole test: started with its t, not a subtest's.
	emulatorFor := func(e expectation) *emulator {
		key := e.Function + "/" + e.Fixture
		if e.Fixture == "no-host" {
			key = e.Function + "/fleet" // the same instance, before the host registered
		}
		if em, ok := emulators[key]; ok {
			return em
		}
		uri := storeCfg.URI
		if e.Fixture == "store-down" {
			uri = fmt.Sprintf("mongodb://127.0.0.1:%d/", testutil.FreePort(t))
		}
		em := start(t, e.Function, envFor(e.Function, uri))
		emulators[key] = em
		return em
	}

	var hostStarted bool
	for _, e := range expect {
		if e.Fixture != "no-host" && !hostStarted {
			startHost(t, lb, lbKey, fleetKey, fleetAdminKey, tokenSecret, "MONGODB_URI="+storeCfg.URI, "MONGODB_DATABASE="+storeCfg.Database)
			hostStarted = true
		}
		ok := t.Run(strings.TrimSuffix(e.Event, ".json"), func(t *testing.T) {
			event, err := os.ReadFile(filepath.Join(dir, e.Event))
			if err != nil {
				t.Fatal(err)
			}
			resp := emulatorFor(e).invoke(t, event)
			for k, want := range e.Headers {
				if got := strings.Join(resp.MultiValueHeaders[k], ", "); got != want {
					t.Errorf("%s: header %s %q, want %q", e.Event, k, got, want)
				}
			}
			checkOpenAPIAnswer(t, e, event, resp)
			if e.Status == http.StatusNoContent {
				if resp.StatusCode != e.Status || resp.Body != "" {
					t.Fatalf("%s (%s): %d %q, want 204 and no body", e.Event, e.Note, resp.StatusCode, resp.Body)
				}
				return
			}
			var env struct {
				Data  json.RawMessage `json:"data"`
				Error *struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(resp.Body), &env); err != nil {
				t.Fatalf("body %q is not JSON: %v", resp.Body, err)
			}
			if resp.StatusCode != e.Status {
				t.Fatalf("%s (%s): status %d, want %d: %s", e.Event, e.Note, resp.StatusCode, e.Status, resp.Body)
			}
			switch {
			case e.Code == "" && (env.Data == nil || env.Error != nil):
				t.Errorf("%s: %s is not a data envelope", e.Event, resp.Body)
			case e.Code != "" && (env.Error == nil || env.Error.Code != e.Code):
				t.Errorf("%s: body %s, want error code %q", e.Event, resp.Body, e.Code)
			}
			if ct := resp.MultiValueHeaders["Content-Type"]; len(ct) != 1 || !strings.HasPrefix(ct[0], "application/json") {
				t.Errorf("Content-Type %v", ct)
			}
			if e.Event == "rooms-create-webhook-private.json" && (env.Error == nil || !strings.Contains(env.Error.Message, "webhookUrls") ||
				!strings.Contains(env.Error.Message, "public addresses only")) {
				t.Errorf("%s: body %s does not say webhookUrls go to public addresses only", e.Event, resp.Body)
			}
			switch e.Event {
			case "admin-blocked-words-set.json", "admin-room-defaults-set.json":
				// host-1 runs on the events' store: it reloads the change.
				var out struct {
					Hosts  int
					Failed []any
				}
				if json.Unmarshal(env.Data, &out); out.Hosts != 1 || len(out.Failed) != 0 {
					t.Errorf("%s: %s, want host-1 told and none failed", e.Event, env.Data)
				}
			case "admin-room-inspect.json":
				var out struct{ Host *struct{ PID int } }
				if json.Unmarshal(env.Data, &out); out.Host == nil || out.Host.PID == 0 {
					t.Errorf("%s: %s, want what host-1 says of demo", e.Event, env.Data)
				}
			}
			if e.Event == "rooms-create.json" {
				var c struct {
					Name, Token, Instance string
					Port                  int
				}
				json.Unmarshal(env.Data, &c)
				claims, err := tokens.Verify(c.Token, "demo", c.Instance)
				if err != nil || claims.Role != "producer" || claims.UserID() != "streamer-1" || c.Instance == "" || claims.Inst != c.Instance || c.Port == 0 {
					t.Errorf("created %s: token claims %+v, %v", env.Data, claims, err)
				}
			}
		})
		if !ok && e.Fixture == "fleet" && e.Status/100 == 2 {
			t.Fatalf("%s failed; the events after it depend on it", e.Event)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// startLB runs the real load balancer on a free port and returns its URL.
func startLB(t *testing.T, key string) string {
	t.Helper()
	port := testutil.FreePort(t)
	testutil.Start(t, testutil.Binary(t, "./fleet/cmd/loadbalancer"), []string{
		"PORT=" + strconv.Itoa(port), "LOADBALANCER_KEY=" + key, "LOG_LEVEL=warn",
	})
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.Eventually(t, 10*time.Second, func() error {
		status, _, err := testutil.TryDo("GET", u+"/healthz", "", "")
		if err != nil || status != 200 {
			return fmt.Errorf("load balancer healthz: %d %v", status, err)
		}
		return nil
	})
	return u
}

// startHost runs the real chatserver as host-1 (the host the events name),
// on the events' store (storeEnv: MONGODB_URI and MONGODB_DATABASE), and
// waits until the load balancer lists it as accepting.
func startHost(t *testing.T, lb, lbKey, key, adminKey, tokenSecret string, storeEnv ...string) {
	t.Helper()
	testutil.NewChatserver(t, 10, append([]string{
		"HOST_ID=host-1", "PUBLIC_HOST=127.0.0.1", "IMDS=0", "KEY=" + key, "ADMIN_KEY=" + adminKey,
		"TOKEN_SECRET=" + tokenSecret, "LOADBALANCERS=" + lb, "LOADBALANCER_KEY=" + lbKey,
		"HEARTBEAT_EVERY=500ms", "LOG_LEVEL=warn", "ORPHAN_GRACE=10s", "DRAIN_WINDOW=200ms",
	}, storeEnv...)...).Start()
	testutil.Eventually(t, 15*time.Second, func() error {
		status, body, err := testutil.TryDo("GET", lb+"/api/v1/hosts", lbKey, "")
		if err != nil || status != 200 || !strings.Contains(body, `"id":"host-1"`) || !strings.Contains(body, `"state":"accepting"`) {
			return fmt.Errorf("host-1 not registered: %d %s %v", status, body, err)
		}
		return nil
	})
}
