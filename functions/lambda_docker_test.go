package functions_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/testutil"
)

// TestEventsInContainers is TestEvents with each function in its own
// container, the way `sam local` runs it: the image chatfleet/lambda-FUNCTION
// of infra/docker/lambda.Dockerfile (the bootstrap in /var/task, the Runtime
// Interface Emulator as the entry point), started with `docker run --network
// host` and the function's environment (loopback addresses, as in
// events/env.host.json), invoked with every event of events/ against the
// same fixtures, with the same expectations. It skips, saying why, only
// where no Docker engine runs.
func TestEventsInContainers(t *testing.T) {
	tag := testutil.DockerImages(t)
	var n atomic.Int32
	runEvents(t, func(t *testing.T, function string, env map[string]string) *emulator {
		name := fmt.Sprintf("chatfleet-test-lambda-%d-%d", os.Getpid(), n.Add(1))
		port, apiPort := testutil.FreePort(t), testutil.FreePort(t)
		args := []string{"run", "-d", "--name", name, "--network", "host", "-e", "LOG_LEVEL=error"}
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			args = append(args, "-e", k+"="+env[k])
		}
		args = append(args, "chatfleet/lambda-"+function+":"+tag,
			"--runtime-interface-emulator-address", "127.0.0.1:"+strconv.Itoa(port),
			"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(apiPort),
			"/var/task/bootstrap")
		t.Cleanup(func() { testutil.TryDocker("rm", "-f", name) })
		testutil.Docker(t, args...)
		output := func() string { out, _ := exec.Command("docker", "logs", name).CombinedOutput(); return string(out) }
		testutil.Eventually(t, 20*time.Second, func() error {
			if running, _ := testutil.TryDocker("inspect", "-f", "{{.State.Running}}", name); running == "false" {
				t.Fatalf("%s exited:\n%s", name, output())
			}
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return err
			}
			return c.Close()
		})
		return &emulator{url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", port), output: output}
	})
}
