package master

import (
	"slices"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/hooks"
	"github.com/chatfleet/chatfleet/webhook"
)

// The delivery of webhooks is tested in package hooks; here, what the
// master checks of them.

const hookSecret = "whsec-test-0123456789"

func TestWebhookURLValidation(t *testing.T) {
	long := "https://example.com/" + string(make([]byte, webhook.MaxURLLen))
	tests := []struct {
		name    string
		urls    []string
		ok      bool
		private bool // ok with WebhookAllowPrivate
	}{
		{"none", nil, true, true},
		{"https and http", []string{"https://hooks.example.com/chat?k=1", "http://93.184.215.14:8080/in"}, true, true},
		{"six", []string{"http://a/1", "http://a/2", "http://a/3", "http://a/4", "http://a/5", "http://a/6"}, false, false},
		{"ftp", []string{"ftp://example.com/x"}, false, false},
		{"relative", []string{"/hook"}, false, false},
		{"credentials", []string{"https://user:pw@example.com/"}, false, false},
		{"too long", []string{long}, false, false},
		{"loopback", []string{"http://127.0.0.1:9999/x"}, false, true},
		{"private", []string{"http://10.0.0.1:8080/in"}, false, true},
		{"link-local metadata", []string{"http://169.254.169.254/latest/meta-data/"}, false, true},
		{"IPv4-mapped loopback", []string{"http://[::ffff:127.0.0.1]:8090/"}, false, true},
		{"IPv6 loopback", []string{"http://[::1]/"}, false, true},
		{"numeric loopback", []string{"http://2130706433/"}, false, true},
		{"localhost", []string{"http://localhost:8090/api/v1/rooms"}, false, true},
		{"a name (checked when dialled)", []string{"http://hooks.internal.example.net:8080/in"}, true, true},
		{"public then private", []string{"https://hooks.example.com/", "http://192.168.1.1/"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, private := range []bool{false, true} {
				want := tt.ok || private && tt.private
				err := RoomOptions{WebhookURLs: tt.urls}.validate(&Config{Webhooks: hooks.Config{AllowPrivate: private}})
				if (err == nil) != want || (err != nil && chatfleet.ErrorCode(err) != chatfleet.EINVALID) {
					t.Fatalf("validate (allow private %v) = %v, want ok=%v", private, err, want)
				}
			}
		})
	}
	for _, secret := range []string{"short", strings.Repeat("s", maxHookSecretLen+1)} {
		if err := (RoomOptions{WebhookURLs: []string{"https://example.com/"}, WebhookSecret: secret}).validate(&Config{}); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
			t.Errorf("webhookSecret of %d bytes: %v, want invalid", len(secret), err)
		}
	}
}

// TestRoomWebhookSecret: a room with webhookUrls and no secret gets a new
// one (told once), one given is kept, and one without URLs is dropped.
func TestRoomWebhookSecret(t *testing.T) {
	o, made := RoomOptions{WebhookURLs: []string{"https://example.com/"}}.withWebhookSecret()
	if made == "" || o.WebhookSecret != made || len(made) < minHookSecretLen {
		t.Fatalf("made %q, options %+v: want a new secret of %d bytes or more", made, o, minHookSecretLen)
	}
	if _, again := (RoomOptions{WebhookURLs: []string{"https://example.com/"}}).withWebhookSecret(); again == made {
		t.Fatal("two rooms got the same secret")
	}
	o, made = RoomOptions{WebhookURLs: []string{"https://example.com/"}, WebhookSecret: "given-0123456789abc"}.withWebhookSecret()
	if made != "" || o.WebhookSecret != "given-0123456789abc" {
		t.Fatalf("a given secret: made %q, options %+v", made, o)
	}
	if o, made = (RoomOptions{WebhookSecret: "given-0123456789abc"}).withWebhookSecret(); made != "" || o.WebhookSecret != "" {
		t.Fatalf("a secret without URLs: made %q, kept %q", made, o.WebhookSecret)
	}
}

// TestRoomEnviron: a room process gets only the variables a room needs.
func TestRoomEnviron(t *testing.T) {
	got := roomEnviron([]string{
		"KEY=k", "ADMIN_KEY=a", "LOADBALANCER_KEY=l", "MONGODB_URI=mongodb://u:p@db/", "WEBHOOK_SECRET=w",
		"AWS_SECRET_ACCESS_KEY=s", "FLEET_KEY=f", "HOME=/root", "PATH=/bin",
		"TOKEN_SECRET=t", "ROOM_IDLE_TIMEOUT=30s", "ENTITLEMENT_URL=https://pay/", "ENTITLEMENT_SECRET=e",
		"MAX_CONNS_PER_IP=50", "GOMAXPROCS=8", "TZ=UTC", "LOG_LEVEL=info",
	}, []string{"GOMAXPROCS=1"})
	want := []string{"TOKEN_SECRET=t", "ROOM_IDLE_TIMEOUT=30s", "ENTITLEMENT_URL=https://pay/", "ENTITLEMENT_SECRET=e",
		"MAX_CONNS_PER_IP=50", "GOMAXPROCS=8", "TZ=UTC", "LOG_LEVEL=info", "GOMAXPROCS=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("roomEnviron =\n%q\nwant\n%q", got, want)
	}
}

func TestWebhookConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"none", Config{}, true},
		{"urls and secret", Config{Webhooks: hooks.Config{URLs: []string{"https://h.example.com/in"}, Secret: hookSecret}}, true},
		{"urls without secret", Config{Webhooks: hooks.Config{URLs: []string{"https://h.example.com/in"}}}, false},
		{"private operator urls", Config{Webhooks: hooks.Config{URLs: []string{"http://127.0.0.1:9000/in"}, Secret: hookSecret}}, true},
		{"short secret", Config{Webhooks: hooks.Config{Secret: "short"}}, false},
		{"bad url", Config{Webhooks: hooks.Config{URLs: []string{"h.example.com/in"}, Secret: hookSecret}}, false},
		{"negative queue", Config{Webhooks: hooks.Config{Queue: -1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.StateDir = t.TempDir()
			_, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
