// Command loadbalancer runs one load-balancer instance: chatservers register
// and heartbeat with it, the control API asks it for a host for a new room.
// See docs/loadbalancer.md for the API and the environment it reads.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatfleet/chatfleet/fleet/internal/lb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadbalancer:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := lb.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	srv, err := lb.New(cfg)
	if err != nil {
		return err
	}
	// The first signal drains; once ctx is done the default handling is back,
	// so a second one exits at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	if err := srv.Run(ctx); err != nil {
		cfg.Log.Error("load balancer failed", "err", err)
		return err
	}
	return nil
}
