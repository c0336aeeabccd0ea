package master

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
)

// envOf returns a getenv over KEY and ADMIN_KEY, which every host needs,
// and the given name, value pairs (which may override them).
func envOf(kv ...string) func(string) string {
	m := map[string]string{"KEY": "user-key", "ADMIN_KEY": "admin-key"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestConfigFromEnvDefaults: unset settings stay zero for setDefaults, but
// for the defaults that belong to the environment.
func TestConfigFromEnvDefaults(t *testing.T) {
	c, err := ConfigFromEnv(envOf())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 80 || c.AdminPort != 8090 || c.Spares != 2 {
		t.Errorf("ports %d, %d, spares %d; want 80, 8090, 2", c.Port, c.AdminPort, c.Spares)
	}
	if want := os.TempDir() + "/chatserver-80"; c.StateDir != want {
		t.Errorf("StateDir %q, want %q", c.StateDir, want)
	}
	if c.RoomPortMin != 0 || c.RoomPortMax != 0 || c.CacheEvery != 0 || c.StopDeadline != 0 || c.MaxRoomBans != 0 || c.RoomConn != (ipc.ConnSettings{}) {
		t.Errorf("defaults set twice: %+v", c)
	}
	if len(c.RoomEnv) != 2 || c.RoomEnv[0] != "GOMAXPROCS=1" || !strings.HasPrefix(c.RoomEnv[1], "TOKEN_SECRET=") || len(c.RoomEnv[1]) != len("TOKEN_SECRET=")+64 {
		t.Errorf("RoomEnv %q, want GOMAXPROCS=1 and a random TOKEN_SECRET", c.RoomEnv)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "TOKEN_SECRET is not set") {
		t.Errorf("Warnings %q, want the one about TOKEN_SECRET", w)
	}
	if err := c.setDefaults(); err != nil {
		t.Fatalf("setDefaults: %v", err)
	}
	if c.RoomPortMin != 34000 || c.RoomPortMax != 34999 {
		t.Errorf("room ports %d-%d, want 34000-34999", c.RoomPortMin, c.RoomPortMax)
	}
}

func TestConfigFromEnvValues(t *testing.T) {
	c, err := ConfigFromEnv(envOf("PORT", "8080", "ADMIN_PORT", "8091", "ROOM_PORT_MIN", "40000", "ROOM_SPARES", "0",
		"STALE_AFTER", "1m", "PONG_WAIT", "20s", "SEND_QUEUE_BYTES", "65536", "ROOM_GOMAXPROCS", "2",
		"WEBHOOK_URLS", "https://a.example/h, https://b.example/h", "WEBHOOK_ALLOW_PRIVATE", "1", "TOKEN_SECRET", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.AdminPort != 8091 || c.RoomPortMin != 40000 || c.Spares != 0 || c.StaleAfter != time.Minute {
		t.Errorf("%+v", c)
	}
	if want := os.TempDir() + "/chatserver-8080"; c.StateDir != want {
		t.Errorf("StateDir %q, want %q", c.StateDir, want)
	}
	if c.RoomConn != (ipc.ConnSettings{PongWait: 20 * time.Second, SendQueueBytes: 65536}) {
		t.Errorf("RoomConn %+v", c.RoomConn)
	}
	if !reflect.DeepEqual(c.RoomEnv, []string{"GOMAXPROCS=2"}) {
		t.Errorf("RoomEnv %q: the rooms inherit TOKEN_SECRET, none is made up", c.RoomEnv)
	}
	if !reflect.DeepEqual(c.Webhooks.URLs, []string{"https://a.example/h", "https://b.example/h"}) || !c.Webhooks.AllowPrivate {
		t.Errorf("webhooks %q, allow private %v", c.Webhooks.URLs, c.Webhooks.AllowPrivate)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "WEBHOOK_ALLOW_PRIVATE=1") {
		t.Errorf("Warnings %q, want the one about WEBHOOK_ALLOW_PRIVATE", w)
	}
}

// TestConfigFromEnvErrors: each bad setting is refused with an error naming
// it; the texts are those chatserver's TestBadConfiguration reads.
func TestConfigFromEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		kv   []string
		want string
	}{
		{[]string{"PORT", "http"}, `PORT="http": want a whole number`},
		{[]string{"STALE_AFTER", "soon"}, `STALE_AFTER="soon": want a duration such as 30s`},
		{[]string{"PONG_WAIT", "1s"}, "PONG_WAIT=1s: want 2s to 10m"},
		{[]string{"WRITE_WAIT", "10m"}, "WRITE_WAIT=10m0s: want 1s to 5m"},
		{[]string{"SEND_QUEUE_BYTES", "100"}, "SEND_QUEUE_BYTES=100: want 16384 to 67108864"},
		{[]string{"WEBHOOK_ALLOW_PRIVATE", "yes"}, `WEBHOOK_ALLOW_PRIVATE="yes": want 0 or 1`},
		{[]string{"KEY", ""}, "KEY and ADMIN_KEY must be set"},
		{[]string{"ADMIN_KEY", "user-key"}, "KEY and ADMIN_KEY must differ"},
		{[]string{"ENTITLEMENT_URL", "http://127.0.0.1:9/ent"}, "ENTITLEMENT_SECRET is required with ENTITLEMENT_URL"},
		{[]string{"MAX_ROOM_CONNS", "0"}, `MAX_ROOM_CONNS="0"`},
		{[]string{"NATS_CREDS", "/etc/nats.creds"}, "NATS_CREDS and NATS_CA need NATS_URL"},
		{[]string{"NATS_URL", "nats://n:4222", "NATS_STREAM_MAX_PER_ROOM", "5"}, "NATS_STREAM_MAX_PER_ROOM"},
		// The first error wins: PORT's, not the keys'.
		{[]string{"PORT", "x", "KEY", ""}, `PORT="x"`},
	} {
		_, err := ConfigFromEnv(envOf(tc.kv...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.kv, err, tc.want)
		}
	}
}

// TestConfigNATS: the NATS settings are read with the host's and given to
// every room process.
func TestConfigNATS(t *testing.T) {
	c, err := ConfigFromEnv(envOf("NATS_URL", "nats://n1:4222,nats://n2:4222", "NATS_STREAM_MAX_AGE", "2h", "TOKEN_SECRET", "s"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://n1:4222,nats://n2:4222" || c.NATS.StreamMaxAge != 2*time.Hour {
		t.Fatalf("NATS = %+v", c.NATS)
	}
	c.StateDir = t.TempDir()
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	env := roomEnviron([]string{"PATH=/bin"}, m.cfg.RoomEnv)
	for _, want := range []string{"NATS_URL=nats://n1:4222,nats://n2:4222", "NATS_STREAM_MAX_AGE=2h0m0s", "NATS_STREAM_MAX_PER_ROOM=10000"} {
		if !slices.Contains(env, want) {
			t.Errorf("room environment %q lacks %s", env, want)
		}
	}
}

// TestSetNotify: a Notify set after New (the registrar, made after the
// master) is called when the host's state changes.
func TestSetNotify(t *testing.T) {
	m, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	m.SetNotify(func() { calls++ })
	m.SetDraining(true)
	m.SetDraining(false)
	if calls != 2 {
		t.Errorf("Notify called %d times for a drain and a resume, want 2", calls)
	}
}
