// Package devnats runs an embedded NATS server with JetStream inside the
// process: the NATS of the local stack and of the tests, so that neither needs
// a NATS installed. Production connects to a real NATS cluster (NATS_URL); its
// binaries must never import this package (deps_test.go checks).
//
// The server listens on loopback only, without authentication, and keeps
// JetStream's data on disk in Config.Dir, so a server started again on the same
// Dir has the streams of the one before (a restart mid-stream in the tests).
package devnats

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultDir is the data directory used when Config.Dir is empty, relative to
// the working directory: where the local stack keeps JetStream's files.
const DefaultDir = ".data/nats"

// Config says where a Server keeps its data and where it listens; zero fields
// take their defaults.
type Config struct {
	Dir  string // JetStream's store; DefaultDir if empty; created if missing, kept by Stop
	Port int    // the client port on 127.0.0.1; 0: a free one
	// MaxStore bounds JetStream's files (default 1 GiB).
	MaxStore int64
}

// Server is a running embedded NATS server.
type Server struct {
	s   *server.Server
	cfg Config
}

// Start starts a server and waits until it takes connections.
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if cfg.MaxStore <= 0 {
		cfg.MaxStore = 1 << 30
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devnats: %w", err)
	}
	port := cfg.Port
	if port == 0 {
		port = -1 // nats-server: a random free port
	}
	s, err := server.NewServer(&server.Options{
		ServerName:         "devnats",
		Host:               "127.0.0.1",
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.Dir,
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: 64 << 20,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("devnats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("devnats: the server did not start within 10s")
	}
	return &Server{s: s, cfg: cfg}, nil
}

// URL is the server's client URL, nats://127.0.0.1:port.
func (s *Server) URL() string { return s.s.ClientURL() }

// Port is the server's client port.
func (s *Server) Port() int { return s.s.Addr().(*net.TCPAddr).Port }

// Stop shuts the server down and waits for it; its data stays in Dir.
func (s *Server) Stop() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}
