package devstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/mongo"
)

var quiet = slog.New(slog.DiscardHandler)

func start(t *testing.T, cfg devstore.Config) *devstore.Server {
	t.Helper()
	srv, err := devstore.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, devstore.Config{Dir: dir, Log: quiet})
	if want := "mongodb://" + srv.Addr() + "/"; srv.URI() != want || !strings.HasPrefix(srv.Addr(), "127.0.0.1:") {
		t.Fatalf("URI %q, Addr %q: want %q on 127.0.0.1", srv.URI(), srv.Addr(), want)
	}

	s, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "devstore", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.CreateRoom(ctx, &chatfleet.Room{Name: "lobby", Port: 34001}); err != nil {
		t.Fatal(err)
	}

	// Stop cuts connections at once and frees the address.
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv.Stop()
	srv.Stop()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read from a connection after Stop: %v, want it closed", err)
	}
	if c, err := net.Dial("tcp", srv.Addr()); err == nil {
		c.Close()
		t.Fatal("the address still accepts connections after Stop")
	}

	// The same Dir and Addr again: the same URI, the same data.
	again := start(t, devstore.Config{Dir: dir, Addr: srv.Addr(), Log: quiet})
	if again.URI() != srv.URI() {
		t.Fatalf("restarted on %s, want %s", again.URI(), srv.URI())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.Room(ctx, "lobby")
		if err == nil {
			if r.Port != 34001 {
				t.Fatalf("after restart: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not back within 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAnyAddr: with AnyAddr the store listens on every address, for
// containers, and its URI still names loopback; the store answers there.
func TestAnyAddr(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := start(t, devstore.Config{Dir: t.TempDir(), Addr: "0.0.0.0:0", AnyAddr: true, Log: quiet})
	host, _, _ := net.SplitHostPort(srv.Addr())
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() || !strings.HasPrefix(srv.URI(), "mongodb://127.0.0.1:") {
		t.Fatalf("Addr %q, URI %q: want every address, and a loopback URI", srv.Addr(), srv.URI())
	}
	st, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "anyaddr"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("query over the store's URI: %v", err)
	}
}

func TestStartRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	busy := start(t, devstore.Config{Dir: t.TempDir(), Log: quiet})
	for _, tc := range []struct {
		name string
		cfg  devstore.Config
		want string
	}{
		{"NotLoopback", devstore.Config{Dir: t.TempDir(), Addr: "0.0.0.0:0"}, "not a loopback address"},
		{"BadAddr", devstore.Config{Dir: t.TempDir(), Addr: "nowhere"}, "nowhere"},
		{"BusyAddr", devstore.Config{Dir: t.TempDir(), Addr: busy.Addr()}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Log = quiet
			srv, err := devstore.Start(ctx, tc.cfg)
			if err == nil {
				srv.Stop()
				t.Fatalf("Start succeeded, want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestLogFile: the store's commands that fail on a fresh database (the
// listIndexes of collections that do not exist yet) are WARN lines of whole
// wire messages; with LogLevel at ERROR they stay out of Log and are
// written, each on one line, to LogFile, which Stop closes.
func TestLogFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var terminal testutil.SyncBuffer
	path := filepath.Join(t.TempDir(), "logs", "store.log")
	srv := start(t, devstore.Config{
		Dir:      t.TempDir(),
		Log:      slog.New(slog.NewTextHandler(&terminal, nil)),
		LogLevel: slog.LevelError,
		LogFile:  path,
	})
	s, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "fresh", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRoom(ctx, &chatfleet.Room{Name: "lobby", Port: 34001}); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	srv.Stop()

	if out := terminal.String(); out != "" {
		t.Errorf("Log at ERROR got lines on a fresh start:\n%s", out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, want := range []string{"level=INFO", "component=ferretdb", "level=WARN", "ns does not exist: fresh."} {
		if !strings.Contains(log, want) {
			t.Errorf("the log file does not hold %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "level=DEBUG") {
		t.Error("the log file holds DEBUG lines; LogFileLevel defaults to INFO")
	}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if !strings.HasPrefix(line, "time=") {
			t.Fatalf("a record spans lines; this one starts %.80q", line)
		}
	}
}

// TestLogFileRotates: with LogFileLevel DEBUG (every request and response)
// and a small LogFileMax, the file is renamed to .1 when full, and neither
// the file nor the one before passes the bound by more than one record.
func TestLogFileRotates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.log")
	const max = 16 << 10
	srv := start(t, devstore.Config{
		Dir: t.TempDir(), Log: quiet,
		LogFile: path, LogFileLevel: slog.LevelDebug, LogFileMax: max,
	})
	s, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "rotate", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for i := 0; ; i++ {
		if err := s.CreateRoom(ctx, &chatfleet.Room{Name: fmt.Sprintf("r%d", i), Port: 34001}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + ".1"); err == nil {
			break
		}
		if i == 1000 {
			t.Fatalf("no %s.1 after 1000 rooms", path)
		}
	}
	for _, p := range []string{path, path + ".1"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		last := strings.LastIndex(strings.TrimSuffix(string(b), "\n"), "\ntime=")
		if len(b) > max && last > 0 { // more than one record past the bound
			t.Errorf("%s holds %d bytes, more than %d", p, len(b), max)
		}
		if !strings.Contains(string(b), "level=DEBUG") {
			t.Errorf("%s holds no DEBUG line", p)
		}
	}
}

// TestIDIndex: every collection's table gets an index SQLite uses for
// FerretDB's lookups by _id (a find of {_id}, each document's update and
// delete), and the lookups still find what they should.
func TestIDIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv := start(t, devstore.Config{Dir: dir, Log: quiet})
	s, err := mongo.Open(ctx, mongo.Config{URI: srv.URI(), Database: "indexed", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for i := range 20 {
		if err := s.CreateRoom(ctx, &chatfleet.Room{Name: fmt.Sprintf("room-%02d", i), Port: 34000 + i}); err != nil {
			t.Fatal(err)
		}
	}

	// The plan of the statement FerretDB runs for each document an update
	// writes, from a new connection each time (EXPLAIN reads no table, so a
	// connection would not see the schema change).
	file := "file:" + filepath.Join(dir, "indexed.sqlite") + "?mode=ro&_pragma=busy_timeout(10000)"
	plan := func() string {
		db, err := sql.Open("sqlite", file)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var table string
		if err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = 'rooms'`).Scan(&table); err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(fmt.Sprintf(`EXPLAIN QUERY PLAN UPDATE %q SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`, table), "{}", `"room-07"`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			out = append(out, detail)
		}
		return strings.Join(out, "; ")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(plan(), "__cf_id (<expr>=?)") {
		if time.Now().After(deadline) {
			t.Fatalf("the update's plan after 10 s: %s", plan())
		}
		time.Sleep(50 * time.Millisecond)
	}

	viewers := 3
	if err := s.UpdateRoom(ctx, "room-07", chatfleet.RoomUpdate{Viewers: &viewers}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r, err := s.Room(ctx, fmt.Sprintf("room-%02d", i))
		if err != nil || r.Port != 34000+i || (i == 7) != (r.Viewers == 3) {
			t.Fatalf("room %d: %+v, %v", i, r, err)
		}
	}
}
