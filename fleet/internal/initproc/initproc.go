// Package initproc is the minimal init of the chatserver container
// (`chatserver init`, the image's entry point): PID 1, which is not the
// master. It runs the master as its child; reaps every process that becomes
// its child (rooms whose master died are re-parented to it); forwards
// SIGTERM, SIGINT and SIGHUP to the master; starts the master again after a
// crash, with backoff, so that the new master re-adopts the rooms that kept
// serving; and exits with the master's status when the master exits on
// purpose (a drain that is done). It is what systemd's Restart=always and
// KillMode=process give a host outside a container.
package initproc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Config says which master to run and how to restart it. Zero means the
// default for every field but Path.
type Config struct {
	Path string   // the master's binary
	Args []string // its arguments, after the program name
	Env  []string // its environment; nil: this process's
	Log  *slog.Logger
	// MinBackoff is the wait before the first restart after a crash
	// (500ms); each further crash in a row doubles it, up to MaxBackoff (30s).
	MinBackoff, MaxBackoff time.Duration
	// StableAfter is how long a master must have run for its crash to
	// count as the first of a row again (1m).
	StableAfter time.Duration
	// MaxCrashes is how many crashes in a row, each within StableAfter of
	// its start, init restarts before it gives up and exits with the last
	// status, for the container's restart policy and the operator (10).
	MaxCrashes int
}

func (c *Config) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(30*time.Second, c.MinBackoff)
	}
	if c.StableAfter <= 0 {
		c.StableAfter = time.Minute
	}
	if c.MaxCrashes <= 0 {
		c.MaxCrashes = 10
	}
}

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER.
const prSetChildSubreaper = 36

// Run runs the master until it exits on purpose and returns the exit code
// init should exit with: the master's, or 128+signal if a signal ended it.
// It handles SIGTERM, SIGINT, SIGHUP and SIGCHLD for the whole process, so
// nothing else in the process may start or wait for children.
func Run(cfg Config) int {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	return run(cfg, sigs)
}

// run is Run with the signals read from sigs, which must receive SIGCHLD.
func run(cfg Config, sigs <-chan os.Signal) int {
	cfg.defaults()
	log := cfg.Log
	// As PID 1 every orphan comes here anyway; as any other process (a
	// test, `docker run --init`), this makes them.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		log.Warn("init: cannot become the child subreaper; orphaned rooms are reaped by the real init", "err", errno)
	}
	backoff, crashes := cfg.MinBackoff, 0
	for {
		pid, err := start(cfg)
		if err != nil {
			log.Error("init: cannot start the master", "path", cfg.Path, "err", err)
			return 1
		}
		started := time.Now()
		ws, stopping := waitMaster(pid, sigs, log)
		code := exitCode(ws)
		if stopping || (ws.Exited() && ws.ExitStatus() == 0) {
			log.Info("init: the master exited", "code", code)
			return code
		}
		if time.Since(started) >= cfg.StableAfter {
			backoff, crashes = cfg.MinBackoff, 0
		}
		crashes++
		if crashes > cfg.MaxCrashes {
			log.Error("init: the master keeps crashing; giving up", "crashes", crashes-1, "status", describe(ws))
			return code
		}
		log.Error("init: the master crashed; starting it again", "status", describe(ws), "pid", pid, "in", backoff.String())
		if sig := sleep(backoff, sigs); sig != nil {
			log.Info("init: stopped while the master was down", "signal", sig.String())
			return 128 + int(sig.(syscall.Signal))
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// start starts the master, its standard files those of init.
func start(cfg Config) (int, error) {
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	p, err := os.StartProcess(cfg.Path, append([]string{cfg.Path}, cfg.Args...), &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		return 0, err
	}
	pid := p.Pid
	p.Release() // reaped by reap, not by os.Process.Wait
	return pid, nil
}

// waitMaster forwards signals to the master and reaps children until the
// master has exited; stopping reports whether a SIGTERM or SIGINT was
// forwarded, which makes its exit one on purpose.
func waitMaster(pid int, sigs <-chan os.Signal, log *slog.Logger) (ws syscall.WaitStatus, stopping bool) {
	// A master that ended before SIGCHLD was being watched for is found by
	// this first reap.
	if st, done := reap(pid, log); done {
		return st, false
	}
	for sig := range sigs {
		s := sig.(syscall.Signal)
		switch s {
		case syscall.SIGCHLD:
			if st, done := reap(pid, log); done {
				return st, stopping
			}
			continue
		case syscall.SIGTERM, syscall.SIGINT:
			stopping = true
		}
		log.Info("init: forwarding a signal to the master", "signal", s.String(), "pid", pid)
		if err := syscall.Kill(pid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
			log.Error("init: cannot signal the master", "err", err)
		}
	}
	return ws, stopping // not reached: sigs is never closed
}

// reap collects every child that has exited, without blocking, and reports
// the master's status if it was one of them.
func reap(master int, log *slog.Logger) (syscall.WaitStatus, bool) {
	var mst syscall.WaitStatus
	found := false
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return mst, found
		}
		if pid == master {
			mst, found = ws, true
		} else {
			log.Debug("init: reaped an orphan", "pid", pid, "status", describe(ws))
		}
	}
}

// sleep waits d while reaping children, and returns early with SIGTERM or
// SIGINT if one comes (nil after d).
func sleep(d time.Duration, sigs <-chan os.Signal) os.Signal {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil
		case sig := <-sigs:
			switch sig {
			case syscall.SIGCHLD:
				reap(-1, slog.New(slog.NewTextHandler(io.Discard, nil)))
			case syscall.SIGTERM, syscall.SIGINT:
				return sig
			}
		}
	}
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}
