// Command loadbalancer runs one load-balancer instance: chatservers register
// and heartbeat with it, the control API asks it for a host for a new room.
// See docs/loadbalancer.md for the API and the environment it reads.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet/fleet/internal/lb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadbalancer:", err)
		os.Exit(1)
	}
}

func run() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("LOG_LEVEL", "error"))); err != nil {
		return fmt.Errorf("LOG_LEVEL: want debug, info, warn or error")
	}
	key := os.Getenv("LOADBALANCER_KEY")
	if key == "" {
		return errors.New("LOADBALANCER_KEY is required")
	}
	port := envOr("PORT", "2000")
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("PORT %q: want a port number", port)
	}
	var downAfter time.Duration
	if s := os.Getenv("HOST_DOWN_AFTER"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("HOST_DOWN_AFTER %q: want a positive duration like 15s", s)
		}
		downAfter = d
	}

	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})).With("app", "loadbalancer")
	srv, err := lb.New(lb.Config{
		Addr:        net.JoinHostPort("", port),
		Key:         key,
		DownAfter:   downAfter,
		TLSCertFile: os.Getenv("TLS_CERT_FILE"),
		TLSKeyFile:  os.Getenv("TLS_KEY_FILE"),
		Log:         log,
	})
	if err != nil {
		return err
	}

	// The first signal drains; once ctx is done the default handling is back,
	// so a second one exits at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	if err := srv.Run(ctx); err != nil {
		log.Error("load balancer failed", "err", err)
		return err
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
