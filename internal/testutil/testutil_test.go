package testutil

import (
	"net"
	"os"
	"testing"
)

// TestListensOn: a listener of this process is found on its port, over
// IPv4 and IPv6, and a port nobody listens on is not.
func TestListensOn(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !ListensOn(os.Getpid(), port) {
			t.Errorf("%s: this process's listener on %d not found", addr, port)
		}
		ln.Close()
		if ListensOn(os.Getpid(), port) {
			t.Errorf("%s: port %d found after its listener closed", addr, port)
		}
	}
	if ListensOn(1, FreePort(t)) {
		t.Error("pid 1 listens on a port just found free")
	}
}
