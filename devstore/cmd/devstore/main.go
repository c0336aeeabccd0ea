// Command devstore runs the embedded MongoDB-compatible store (package
// devstore, FerretDB on SQLite) by itself: the store of the development
// profile of infra/docker-compose.yml, where a MongoDB image cannot be had.
// It is for development only: the server has no authentication.
//
//	devstore          serve until SIGTERM or SIGINT
//	devstore ping     exit 0 if the store accepts connections (a health check)
//
// Environment: STORE_ADDR (127.0.0.1:27017; a non-loopback address such as
// 0.0.0.0:27017 is allowed, for containers), STORE_DIR (.data/store),
// LOG_LEVEL (warn).
package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet/devstore"
)

func main() {
	addr := cmp.Or(os.Getenv("STORE_ADDR"), "127.0.0.1:27017")
	if len(os.Args) > 1 {
		if os.Args[1] != "ping" || len(os.Args) > 2 {
			fmt.Fprintln(os.Stderr, "usage: devstore [ping]")
			os.Exit(2)
		}
		os.Exit(ping(addr))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmp.Or(os.Getenv("LOG_LEVEL"), "warn"))); err != nil {
		fmt.Fprintln(os.Stderr, "devstore: LOG_LEVEL:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := devstore.Start(ctx, devstore.Config{
		Dir: os.Getenv("STORE_DIR"), Addr: addr, AnyAddr: true, Log: log, LogLevel: level,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstore:", err)
		os.Exit(1)
	}
	log.Warn("devstore: serving; no authentication, development only", "addr", srv.Addr())
	<-ctx.Done()
	srv.Stop()
}

// ping dials the store's port, on loopback if it listens on every address.
func ping(addr string) int {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstore: STORE_ADDR:", err)
		return 2
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstore:", err)
		return 1
	}
	c.Close()
	return 0
}
