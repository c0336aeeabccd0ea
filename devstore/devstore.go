// Package devstore runs an embedded MongoDB-compatible server, FerretDB on
// SQLite, inside the process: the default store of the local stack and of the
// tests, so that neither needs a MongoDB installed.
//
// It is for the local stack and tests only: production binaries must never
// import it (they talk to a real MongoDB through package mongo). The server
// has no authentication and listens on loopback only, unless Config.AnyAddr
// says otherwise (containers).
//
// FerretDB implements a subset of MongoDB; package mongo keeps to that subset.
// See docs/store.md.
package devstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// DefaultDir is the data directory used when Config.Dir is empty, relative to
// the working directory: where the local stack keeps its store by default.
const DefaultDir = ".data/store"

// Config says where a Server keeps its data and where it listens.
// The zero value of every field means its default.
type Config struct {
	// Dir holds the SQLite files, one per database; DefaultDir if empty.
	// It is created if missing and kept by Stop, so a server started again
	// on the same Dir sees the data. (FerretDB's in-memory SQLite mode is
	// not offered: it gives each database one connection, and its updates,
	// which read on one and write on another, hang.)
	Dir string
	// Addr is the loopback address clients connect to; "127.0.0.1:0" (a
	// free port) if empty. Starting again on the Addr of a stopped server
	// gives clients the same URI.
	Addr string
	// Log receives FerretDB's own log lines; slog.Default() if nil.
	Log *slog.Logger
	// LogLevel is the lowest level of FerretDB's lines that reach Log;
	// slog.LevelWarn if nil, so that a running server is quiet.
	LogLevel slog.Leveler
	// LogFile, if set, receives FerretDB's lines as text, one record a line,
	// whatever LogLevel says: from LogFileLevel up. The file and its folder
	// are created if missing and appended to. Once it would pass
	// LogFileMax bytes it is renamed to LogFile+".1" (replacing the one
	// before) and a new one begun, so the two never hold more than twice
	// LogFileMax.
	LogFile string
	// LogFileLevel is the lowest level written to LogFile; slog.LevelInfo
	// if nil. slog.LevelDebug adds every request and response, whole.
	LogFileLevel slog.Leveler
	// LogFileMax bounds LogFile; DefaultLogFileMax if 0.
	LogFileMax int64
	// AnyAddr lets Addr be a non-loopback address, such as 0.0.0.0:27018
	// for containers that reach the store through the Docker host's
	// address. The server has no authentication: development only, on a
	// machine whose firewall keeps that port private.
	AnyAddr bool
}

// DefaultLogFileMax is the size at which Config.LogFile is rotated.
const DefaultLogFileMax = 10 << 20

// Server is a running embedded server. Its methods may be called from any
// goroutine.
//
// Clients do not reach FerretDB directly but through a small TCP relay that
// the Server owns, so that Stop cuts every client connection at once, like a
// crash or a network outage would: FerretDB itself would keep serving open
// connections for three more seconds after it is told to stop.
type Server struct {
	ln      net.Listener // clients connect here
	backend string       // FerretDB's own loopback address
	cancel  context.CancelFunc
	done    chan struct{} // closed when FerretDB has stopped
	indexed chan struct{} // closed when the _id indexer has stopped

	mu      sync.Mutex
	conns   map[net.Conn]struct{} // both ends of every relayed connection
	stopped bool
	relays  sync.WaitGroup // the accept loop and every relay goroutine

	logFile *rotatingFile // Config.LogFile, closed once FerretDB has stopped; nil if none

	stopOnce sync.Once
}

// newMu serializes ferretdb.New, which writes a package variable of FerretDB.
var newMu sync.Mutex

// Start starts a server as cfg says and returns once it accepts
// connections. ctx bounds the start only; the server runs until Stop.
// It fails if Addr is not a loopback address (unless AnyAddr) or is in use, or if Dir cannot
// be created.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start devstore: %w", err)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.LogLevel == nil {
		cfg.LogLevel = slog.LevelWarn
	}
	if cfg.LogFileLevel == nil {
		cfg.LogFileLevel = slog.LevelInfo
	}
	if cfg.LogFileMax <= 0 {
		cfg.LogFileMax = DefaultLogFileMax
	}
	if err := checkLoopback(cfg.Addr); err != nil && !cfg.AnyAddr {
		return nil, err
	}
	dir, sqliteURL, err := sqliteURL(cfg)
	if err != nil {
		return nil, err
	}

	// Bind the client address first, so a busy port fails before any file is opened.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("start devstore: listen: %w", err)
	}

	logger, logFile, err := newLogger(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	fail := func(err error) (*Server, error) {
		ln.Close()
		logFile.Close()
		return nil, err
	}

	newMu.Lock()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
		Logger:    logger,
	})
	newMu.Unlock()
	if err != nil {
		return fail(fmt.Errorf("start devstore: %w", err))
	}
	// FerretDB listens from New on, so its address is known and connections
	// wait in the backlog until Run accepts them.
	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		return fail(fmt.Errorf("start devstore: ferretdb address: %w", err))
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ln:      ln,
		backend: u.Host,
		cancel:  cancel,
		done:    make(chan struct{}),
		indexed: make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
		logFile: logFile,
	}
	go func() {
		defer close(s.done)
		f.Run(runCtx)
	}()
	go func() {
		defer close(s.indexed)
		indexIDs(runCtx, dir, func(err error) { logger.Warn("devstore: _id index", "err", err) })
	}()
	s.relays.Add(1)
	go s.accept()
	return s, nil
}

// URI returns the connection string of the server, mongodb://127.0.0.1:port/
// (loopback also when it listens on every address).
func (s *Server) URI() string {
	host := s.Addr()
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	}
	return (&url.URL{Scheme: "mongodb", Host: host, Path: "/"}).String()
}

// Addr returns the address clients connect to, with the port chosen if
// Config.Addr asked for port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop closes every client connection at once, stops FerretDB and waits for
// it to close its files. Data in Dir stays. Stop may be called more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.relays.Wait()
		s.cancel()
		<-s.done
		<-s.indexed
		s.logFile.Close()
	})
}

// accept relays every client connection to FerretDB until Stop.
func (s *Server) accept() {
	defer s.relays.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a transient error such as too many open files
			continue
		}
		s.relays.Add(1)
		go s.relay(c)
	}
}

// relay copies bytes both ways between client connection c and a new
// connection to FerretDB until either end closes or Stop.
func (s *Server) relay(c net.Conn) {
	defer s.relays.Done()
	b, err := net.Dial("tcp", s.backend)
	if err != nil {
		c.Close()
		return
	}
	if !s.track(c, b) {
		c.Close()
		b.Close()
		return
	}
	defer s.untrack(c, b)

	copied := make(chan struct{}, 1)
	go func() {
		io.Copy(b, c)
		copied <- struct{}{}
	}()
	io.Copy(c, b)
	// One side ended: end the other, then wait for its copy to return.
	c.Close()
	b.Close()
	<-copied
}

// track records the two ends of a relayed connection so that Stop can close
// them; it reports false if the server is stopping.
func (s *Server) track(c, b net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	s.conns[b] = struct{}{}
	return true
}

func (s *Server) untrack(c, b net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	delete(s.conns, b)
}

// checkLoopback refuses an address that is not on a loopback interface: the
// server has no authentication.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("start devstore: address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("start devstore: address %q is not a loopback address", addr)
	}
	return nil
}

// sqliteURL returns the absolute Dir of cfg and FerretDB's SQLite URI for
// it, creating Dir if needed.
func sqliteURL(cfg Config) (dir, u string, err error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	dir, err = filepath.Abs(cfg.Dir)
	if err != nil {
		return "", "", fmt.Errorf("start devstore: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("start devstore: data directory: %w", err)
	}
	// synchronous(normal): in WAL mode a commit is not synced to disk (a
	// checkpoint is), so the machine's crash, not the process's, may lose
	// the last commits; fine for development, and updates cost less.
	u = (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir) + "/", RawQuery: "_pragma=synchronous(normal)"}).String()
	return dir, u, nil
}
