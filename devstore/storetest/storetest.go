// Package storetest gives every test a store of its own: a database of its
// own, dropped when the test ends, on one embedded server shared by the whole
// test binary, or on the MongoDB that MONGODB_TEST_URI names when it is set.
//
// The embedded server is started by the first test that asks for it and runs
// until the test binary exits, with its data in a directory of the system's
// temporary directory named after the binary's process id. Each test's
// database file is deleted when the test ends; the directory is left, since
// nothing runs when a test binary exits, and removed by the first test binary
// that starts after its process has exited. Tests must never stop the
// server: a test that needs an outage starts a devstore.Server of its own.
//
// Its functions may be called from parallel tests.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/mongo"
)

// EnvURI names the environment variable holding the URI of a real MongoDB to
// run the tests against instead of the embedded server.
const EnvURI = "MONGODB_TEST_URI"

var (
	startOnce sync.Once
	sharedURI string
	startErr  error

	// runID and dbSeq make database names unique across tests and across
	// test binaries sharing one MONGODB_TEST_URI.
	runID = randomHex(3)
	dbSeq atomic.Int64
)

// URI returns the URI of the server tests use: MONGODB_TEST_URI if set, or
// else the embedded server's, starting it if this is the first call of the
// test binary. It fails t if the server cannot be started.
func URI(t testing.TB) string {
	t.Helper()
	if uri := os.Getenv(EnvURI); uri != "" {
		return uri
	}
	startOnce.Do(func() {
		sweep()
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
		if err != nil {
			startErr = fmt.Errorf("start embedded store: %w", err)
			return
		}
		srv, err := devstore.Start(context.Background(), devstore.Config{
			Dir:      dir,
			Log:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
			LogLevel: slog.LevelError,
		})
		if err != nil {
			os.RemoveAll(dir)
			startErr = err
			return
		}
		sharedURI = srv.URI()
	})
	if startErr != nil {
		t.Fatalf("storetest: %v", startErr)
	}
	return sharedURI
}

// dirPrefix starts the name of every data directory of the embedded server;
// the process id of the test binary follows.
const dirPrefix = "chatfleet-storetest-"

// sweep removes the data directories of test binaries that have exited.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), dirPrefix)
		pid, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '-'), 0)])
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Signal 0 checks the process exists; EPERM means it does, as another user's.
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9]+`)

// Config returns the mongo.Config of a new database for t on the server of
// URI, named after the test and unique. Adjust it (Timeout, Now) and pass it
// to Open; give URI and Database to a process under test so it sees the same
// data.
func Config(t testing.TB) mongo.Config {
	t.Helper()
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	db := fmt.Sprintf("t%s_%d_%s", runID, dbSeq.Add(1), name)
	if len(db) > 48 {
		db = db[:48]
	}
	return mongo.Config{URI: URI(t), Database: db}
}

// Open opens a store on cfg, failing t if it cannot, and when t ends drops
// its database and closes it.
func Open(t testing.TB, cfg mongo.Config) *mongo.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.DropDatabase(ctx); err != nil {
			t.Logf("storetest: drop database %s: %v", cfg.Database, err)
		}
		s.Close(ctx)
	})
	return s
}

// NewStore returns a store on a new database of t's own; see Config and Open.
func NewStore(t testing.TB) *mongo.Store {
	t.Helper()
	return Open(t, Config(t))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
