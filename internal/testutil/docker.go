package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DockerTag is the tag of the images DockerImages builds.
const DockerTag = "test"

// dockerImageNames are the images of infra/docker/, as scripts/images.sh
// names them.
var dockerImageNames = []string{"chatserver", "loadbalancer", "devstore", "lambda-rooms", "lambda-admin"}

// dockerSocket is where the Docker engine listens, from DOCKER_HOST
// (unix://PATH) or the default.
func dockerSocket() string {
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return h
	}
	return "/var/run/docker.sock"
}

var (
	imagesOnce sync.Once
	imagesErr  error
	imagesTook time.Duration
)

// DockerImages skips t, saying why, when no Docker engine runs here (its
// socket is absent: .ci/run starts dockerd); otherwise it builds every image
// of infra/docker/ as `make images IMAGE_BASES=local` does (scripts/images.sh:
// the binaries built here, on a static base made here), tagged DockerTag,
// once per test binary, and fails t if that fails. Test binaries of several
// packages build one after the other (a lock file), the later ones from
// Go's and Docker's caches. It returns the images' tag.
//
// With CHATFLEET_DOCKER_TAG set, it builds nothing and returns that tag, so
// that the tests run images built otherwise, such as the Dockerfiles'
// production targets (`make images TAG=...`).
func DockerImages(t testing.TB) string {
	t.Helper()
	sock := dockerSocket()
	if _, err := os.Stat(sock); err != nil {
		t.Skipf("no Docker engine here (%v); .ci/run starts dockerd", err)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("the Docker engine's socket %s exists but the docker client is missing: %v", sock, err)
	}
	if tag := os.Getenv("CHATFLEET_DOCKER_TAG"); tag != "" {
		for _, name := range dockerImageNames {
			if _, err := TryDocker("image", "inspect", "chatfleet/"+name+":"+tag); err != nil {
				t.Fatalf("CHATFLEET_DOCKER_TAG=%s: %v", tag, err)
			}
		}
		return tag
	}
	imagesOnce.Do(func() {
		lock, err := os.OpenFile(filepath.Join(os.TempDir(), "chatfleet-images.lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			imagesErr = err
			return
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			imagesErr = err
			return
		}
		start := time.Now()
		cmd := exec.Command("bash", "scripts/images.sh")
		cmd.Dir = ModuleRoot(t)
		cmd.Env = append(os.Environ(), "IMAGE_BASES=local", "TAG="+DockerTag)
		if out, err := cmd.CombinedOutput(); err != nil {
			imagesErr = fmt.Errorf("scripts/images.sh: %v\n%s", err, out)
		}
		imagesTook = time.Since(start)
	})
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	t.Logf("images built (or found in the caches) in %v", imagesTook.Round(time.Second))
	return DockerTag
}

// Docker runs the docker client with args and returns its standard output,
// trimmed, failing t with its standard error if it fails.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := TryDocker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TryDocker is Docker that returns the error, holding the standard error.
func TryDocker(args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	var stderr SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// ChildPIDs returns the PIDs of the processes whose parent is pid, from /proc.
func ChildPIDs(pid int) []int {
	var out []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		var p int
		if _, err := fmt.Sscanf(d.Name(), "%d", &p); err != nil || fmt.Sprint(p) != d.Name() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		var ppid int
		if len(f) > 1 {
			fmt.Sscanf(f[1], "%d", &ppid)
		}
		if ppid == pid {
			out = append(out, p)
		}
	}
	return out
}
