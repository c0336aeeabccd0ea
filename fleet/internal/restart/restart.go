// Package restart carries a chatserver's API and admin listeners across an
// in-place restart (SIGHUP, the admin restart, an upgrade): the process
// re-executes the binary now on disk with the same PID, and the new image
// takes the listening sockets over, so no connection is refused meanwhile.
//
// The sockets travel as inherited descriptors named in CHATSERVER_LISTEN_FDS
// ("api,admin"). That variable is a contract between releases: a host
// upgraded by SIGHUP is re-executed by the previous release's binary, so
// its name and format never change.
package restart

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// EnvFDs names the descriptors of the listeners handed over, "api,admin".
const EnvFDs = "CHATSERVER_LISTEN_FDS"

// Listeners are a chatserver's API and admin listeners, with the duplicates
// of their sockets that Exec hands on: the servers close the listeners when
// they shut down, the duplicates stay open.
type Listeners struct {
	API, Admin net.Listener
	files      []*os.File
}

// Listen takes the listeners over from the previous image of this process
// when EnvFDs names them (and unsets it, so rooms do not inherit it), or else
// binds port and adminPort on bindAddr.
func Listen(bindAddr string, port, adminPort int) (*Listeners, error) {
	api, admin := inherited()
	if api == nil {
		var err error
		if api, err = net.Listen("tcp", net.JoinHostPort(bindAddr, strconv.Itoa(port))); err != nil {
			return nil, fmt.Errorf("listen on PORT %d: %w", port, err)
		}
		if admin, err = net.Listen("tcp", net.JoinHostPort(bindAddr, strconv.Itoa(adminPort))); err != nil {
			api.Close()
			return nil, fmt.Errorf("listen on ADMIN_PORT %d: %w", adminPort, err)
		}
	}
	l := &Listeners{API: api, Admin: admin}
	for _, ln := range []net.Listener{api, admin} {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("restart: keep listener %s: %w", ln.Addr(), err)
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

// inherited returns the listeners EnvFDs names, or nils if it names none
// that work (then the caller binds its ports as on a first start).
func inherited() (api, admin net.Listener) {
	fds := os.Getenv(EnvFDs)
	if fds == "" {
		return nil, nil
	}
	os.Unsetenv(EnvFDs)
	var a, b int
	if _, err := fmt.Sscanf(fds, "%d,%d", &a, &b); err != nil {
		return nil, nil
	}
	api, err1 := fileListener(a, "api")
	admin, err2 := fileListener(b, "admin")
	if err1 != nil || err2 != nil {
		for _, ln := range []net.Listener{api, admin} {
			if ln != nil {
				ln.Close()
			}
		}
		return nil, nil
	}
	return api, admin
}

// fileListener makes a listener of the inherited descriptor fd and closes
// fd: the listener holds a duplicate, and fd, inherited without
// close-on-exec, would otherwise leak into the room processes. An fd that
// is not a listening socket is left alone: it is not ours to close.
func fileListener(fd int, name string) (net.Listener, error) {
	if on, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || on != 1 {
		return nil, fmt.Errorf("restart: descriptor %d is no listening socket", fd)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return net.FileListener(f)
}

// Close closes the listeners and their duplicates, for a process that stops
// without Exec.
func (l *Listeners) Close() {
	l.API.Close()
	l.Admin.Close()
	for _, f := range l.files {
		f.Close()
	}
}

// Exec replaces this process with the binary now on disk (an upgrade), same
// PID and arguments, passing the listeners on. It returns only on failure.
func (l *Listeners) Exec(log *slog.Logger) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	self = strings.TrimSuffix(self, " (deleted)")
	var fds []string
	for _, f := range l.files {
		fd := f.Fd()
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFD, 0); errno != 0 {
			return fmt.Errorf("restart: keep listener open: %v", errno)
		}
		fds = append(fds, strconv.Itoa(int(fd)))
	}
	env := append(os.Environ(), EnvFDs+"="+strings.Join(fds, ","))
	log.Info("restarting in place", "binary", self)
	return syscall.Exec(self, os.Args, env)
}
