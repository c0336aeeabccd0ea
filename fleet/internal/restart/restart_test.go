package restart

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// dupFD returns a duplicate of ln's socket that the caller owns, as the
// previous image of a process hands it on.
func dupFD(t *testing.T, ln net.Listener) int {
	t.Helper()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// port returns ln's port.
func port(t *testing.T, ln net.Listener) int {
	t.Helper()
	return ln.Addr().(*net.TCPAddr).Port
}

// accepts checks that a client connecting to ln is accepted by ln.
func accepts(t *testing.T, ln net.Listener) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s: %v", ln.Addr(), err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on %s: %v", ln.Addr(), err)
	}
	s.Close()
}

// TestListenBinds: without EnvFDs, Listen binds the ports it is given.
func TestListenBinds(t *testing.T) {
	t.Setenv(EnvFDs, "")
	l, err := Listen("127.0.0.1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepts(t, l.API)
	accepts(t, l.Admin)
	if len(l.files) != 2 {
		t.Errorf("%d duplicates kept for Exec, want 2", len(l.files))
	}
}

// TestListenTakesOver: with EnvFDs naming two listening sockets, Listen
// serves on them (binding their ports again would fail: they are in use)
// and unsets EnvFDs, so rooms do not inherit it.
func TestListenTakesOver(t *testing.T) {
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	t.Setenv(EnvFDs, fmt.Sprintf("%d,%d", dupFD(t, api), dupFD(t, admin)))

	l, err := Listen("127.0.0.1", port(t, api), port(t, admin))
	if err != nil {
		t.Fatalf("Listen did not take the sockets over: %v", err)
	}
	defer l.Close()
	if v, ok := os.LookupEnv(EnvFDs); ok {
		t.Errorf("%s=%q is still set", EnvFDs, v)
	}
	if l.API.Addr().String() != api.Addr().String() || l.Admin.Addr().String() != admin.Addr().String() {
		t.Errorf("listening on %s and %s, want %s and %s", l.API.Addr(), l.Admin.Addr(), api.Addr(), admin.Addr())
	}
	api.Close() // the old image's listener is gone; the socket still accepts
	admin.Close()
	accepts(t, l.API)
	accepts(t, l.Admin)
}

// TestListenBadFDs: an EnvFDs that names no listeners is ignored, and the
// ports are bound as on a first start.
func TestListenBadFDs(t *testing.T) {
	for _, v := range []string{"x", "1,2" /* stdout and stderr: no sockets */} {
		t.Setenv(EnvFDs, v)
		l, err := Listen("127.0.0.1", 0, 0)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvFDs, v, err)
		}
		accepts(t, l.API)
		l.Close()
		if _, ok := os.LookupEnv(EnvFDs); ok {
			t.Errorf("%s=%q is still set", EnvFDs, v)
		}
	}
}

// TestListenPortInUse: a port that cannot be bound is an error naming its
// variable, and the other listener is not left open.
func TestListenPortInUse(t *testing.T) {
	t.Setenv(EnvFDs, "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := port(t, free)
	free.Close()
	if _, err := Listen("127.0.0.1", freePort, port(t, busy)); err == nil || !strings.Contains(err.Error(), "ADMIN_PORT "+strconv.Itoa(port(t, busy))) {
		t.Fatalf("err %v, want one naming ADMIN_PORT", err)
	}
	again, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort)))
	if err != nil {
		t.Fatalf("the API port was left bound: %v", err)
	}
	again.Close()
}
