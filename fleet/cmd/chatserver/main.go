// Command chatserver is the fleet host daemon (the master); run as
// `chatserver room ...` by the master, one room process; and run as
// `chatserver init`, the container's PID 1, which runs the master, reaps
// orphaned rooms and restarts the master after a crash (package initproc).
// docs/operations.md lists the environment it reads.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatfleet/chatfleet/fleet/internal/hostinfo"
	"github.com/chatfleet/chatfleet/fleet/internal/initproc"
	"github.com/chatfleet/chatfleet/fleet/internal/master"
	"github.com/chatfleet/chatfleet/fleet/internal/restart"
	"github.com/chatfleet/chatfleet/fleet/internal/roomproc"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/mongo"
)

func main() {
	log := newLogger(os.Getenv("LOG_LEVEL"))
	if len(os.Args) > 1 && os.Args[1] == "room" {
		os.Exit(roomproc.Main(os.Args[2:], log))
	}
	if len(os.Args) > 1 && os.Args[1] == "init" {
		os.Exit(runInit(log))
	}
	if err := run(log); err != nil {
		fmt.Fprintln(os.Stderr, "chatserver:", err)
		os.Exit(1)
	}
}

// runInit runs this binary, without arguments, as the master under
// initproc.
func runInit(log *slog.Logger) int {
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "chatserver: init takes no arguments")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatserver: init:", err)
		return 1
	}
	return initproc.Run(initproc.Config{Path: self, Log: log})
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil || level == "" {
		l = slog.LevelError // production logs errors only, as the original did
	}
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: l}))
}

// run wires the host daemon from the environment and runs it until a signal
// or the admin API stops it, or re-executes it for an in-place restart.
func run(log *slog.Logger) error {
	cfg, err1 := master.ConfigFromEnv(os.Getenv)
	hcfg, err2 := hostinfo.ConfigFromEnv(os.Getenv)
	rcfg, err3 := lbclient.RegistrarConfigFromEnv(os.Getenv)
	if err := cmp.Or(err1, err2, err3); err != nil {
		return err // the first bad setting
	}
	cfg.Log = log
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// Unset, the public name is loopback, not the host name: tests and the
	// local stack reach rooms there. Deployments set PUBLIC_HOST.
	hcfg.PublicHost = cmp.Or(hcfg.PublicHost, "127.0.0.1")
	info, err := hostinfo.Discover(ctx, hcfg)
	if err != nil {
		return err
	}
	cfg.HostID, cfg.PublicHost, cfg.Region, cfg.Zone = info.ID, info.PublicHost, info.Region, info.Zone
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		st, err := mongo.Open(ctx, mongo.Config{URI: uri, Database: os.Getenv("MONGODB_DATABASE"), Timeout: cfg.StoreTimeout})
		if err != nil {
			return err
		}
		defer st.Close(context.Background())
		cfg.Store = st
	}
	lns, err := restart.Listen(cfg.BindAddr, cfg.Port, cfg.AdminPort)
	if err != nil {
		return err
	}
	cfg.APIListener, cfg.AdminListener = lns.API, lns.Admin
	m, err := master.New(cfg)
	if err != nil {
		return err
	}
	// The registrar deregisters once the master has drained its rooms, and
	// not at all on an in-place restart: the new image heartbeats on.
	stopReg := func() {}
	if len(rcfg.URLs) > 0 {
		rcfg.Report, rcfg.Log = m.Host, log
		reg, err := lbclient.NewRegistrar(rcfg)
		if err != nil {
			return fmt.Errorf("LOADBALANCERS: %w", err)
		}
		m.SetNotify(reg.Nudge)
		regCtx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- reg.Run(regCtx) }()
		stopReg = func() { cancel(); <-done }
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			m.RequestRestart()
		}
	}()
	if err = m.Run(ctx); errors.Is(err, master.ErrRestart) {
		return lns.Exec(log)
	}
	stopReg()
	return err
}
