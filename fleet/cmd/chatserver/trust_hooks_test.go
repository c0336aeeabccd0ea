package main

// Regression tests of issue 15's findings about the host's outgoing calls
// and secrets: 5 (SSRF through webhookUrls), 6 (one secret signs everyone's
// webhooks and the entitlement requests), 9 (room processes inherit the
// master's secrets).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/webhook"
)

const entSecret = "entsec-integration-0123456789"

// createHooked creates a room with body and returns its port and the
// webhookSecret of the answer ("" if none).
func (h *host) createHooked(name, body string) (int, string) {
	h.t.Helper()
	status, resp := testutil.Do(h.t, "POST", h.API+"/api/v1/room/"+name, userKey, body)
	var r struct {
		Data struct {
			Port          int
			WebhookSecret string
		}
	}
	if status != 201 || json.Unmarshal([]byte(resp), &r) != nil || r.Data.Port == 0 {
		h.t.Fatalf("create %s: %d %s", name, status, resp)
	}
	return r.Data.Port, r.Data.WebhookSecret
}

// viaName returns rc's URL with its host replaced by name.
func viaName(rc *receiver, name string) string {
	return strings.Replace(rc.url, "127.0.0.1", name, 1)
}

// say makes prod chat text and returns the event id of the message.
func say(t *testing.T, prod *testutil.WS, room, text string) string {
	t.Helper()
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: text})
	return fmt.Sprintf("%s:%d", room, prod.Next(protocol.TypeAck, 5*time.Second).Seq)
}

// TestWebhookSSRFRefused (finding 5): a room's webhook URL at a literal
// loopback, private, link-local, IPv4-mapped or numeric address (the host's
// own admin port among them) is refused at create with 400; one whose name
// resolves to loopback is accepted but never called: the receiver on
// loopback gets no request while chatserver_webhook_refused_total rises,
// and the batch is not retried.
func TestWebhookSSRFRefused(t *testing.T) {
	name := testutil.LoopbackName(t)
	rc := newReceiver(t)
	h := startHost(t, "STATS_EVERY=200ms", "WEBHOOK_BACKOFF=100ms")
	for _, u := range []string{
		"http://127.0.0.1:9999/x",
		fmt.Sprintf("http://127.0.0.1:%d/api/v1/rooms", h.AdminPort),
		rc.url,
		"http://10.1.2.3/in",
		"http://192.168.0.1/in",
		"http://100.64.0.1/in",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:8090/",
		"http://[::ffff:127.0.0.1]:8090/",
		"http://[fd00::1]/",
		"http://0.0.0.0:8090/",
		"http://2130706433:8090/",
		"http://0x7f.1:8090/",
		"http://localhost:8090/",
	} {
		status, body := testutil.Do(t, "POST", h.API+"/api/v1/room/ssrf", userKey, `{"options":{"webhookUrls":["https://hooks.example.com/ok","`+u+`"]}}`)
		if status != 400 || !strings.Contains(body, `"invalid"`) || !strings.Contains(body, "public") {
			t.Errorf("create with webhook %s: %d %s, want 400 invalid saying public addresses only", u, status, body)
		}
	}
	if rs := h.rooms(); len(rs) != 0 {
		t.Fatalf("rooms %+v after refused creates", rs)
	}

	port, _ := h.createHooked("rebound", `{"options":{"webhookUrls":["`+viaName(rc, name)+`"]}}`)
	prod := join(t, port, "rebound", "pia", chatfleet.RoleProducer)
	for i := range 3 {
		say(t, prod, "rebound", fmt.Sprint("probe ", i))
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := h.metric("chatserver_webhook_refused_total"); n < 4 { // room.opened and 3 chats at least
			return fmt.Errorf("refused_total %v", n)
		}
		return nil
	})
	refused := h.metric("chatserver_webhook_refused_total")
	if d := h.metric("chatserver_webhook_dropped_total"); d < refused {
		t.Errorf("dropped_total %v < refused_total %v: refused events are dropped", d, refused)
	}
	// No retry: one failed attempt per batch. Proving an absence takes a
	// wait: 500 ms is five retry delays (WEBHOOK_BACKOFF=100ms).
	failures := h.metric("chatserver_webhook_failures_total")
	time.Sleep(500 * time.Millisecond)
	if f := h.metric("chatserver_webhook_failures_total"); f != failures || f > refused {
		t.Errorf("failures %v then %v for %v refused events: the batches were retried", failures, f, refused)
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
	if !strings.Contains(h.Proc.Output(), "the destination is not a public address") {
		t.Error("the refusal is not logged")
	}
}

// TestWebhookSecretsPerRoom (finding 6): two rooms with their own webhook
// URLs (on loopback, WEBHOOK_ALLOW_PRIVATE=1; one reached through a name
// that resolves to loopback) and the host's WEBHOOK_URLS: each room's
// receiver verifies its deliveries with that room's secret only (one given
// at create, one made by the host and told once in the create answer), the
// WEBHOOK_URLS receiver with WEBHOOK_SECRET only. The secrets are in the
// private state files, never in the logs or the room listing, and survive a
// master's kill and re-adoption.
func TestWebhookSecretsPerRoom(t *testing.T) {
	const alphaSecret = "alpha-owner-secret-0123456789"
	name := testutil.LoopbackName(t)
	op, rcA, rcB := newReceiver(t), newReceiver(t), newReceiver(t)
	h := startHost(t, hookEnv(op, "WEBHOOK_ALLOW_PRIVATE=1")...)

	portA, told := h.createHooked("alpha", `{"options":{"webhookUrls":["`+rcA.url+`"],"webhookSecret":"`+alphaSecret+`"}}`)
	if told != "" {
		t.Errorf("the answer repeats a secret the caller gave: %q", told)
	}
	portB, betaSecret := h.createHooked("beta", `{"options":{"webhookUrls":["`+viaName(rcB, name)+`"]}}`)
	if len(betaSecret) < 16 || betaSecret == hookSecret || betaSecret == alphaSecret {
		t.Fatalf("made webhookSecret %q: want a new one of 16 bytes or more", betaSecret)
	}
	status, body := testutil.Do(t, "POST", h.API+"/api/v1/room/short", userKey, `{"options":{"webhookUrls":["`+rcA.url+`"],"webhookSecret":"short"}}`)
	if status != 400 || !strings.Contains(body, "webhookSecret") {
		t.Errorf("a short webhookSecret: %d %s, want 400", status, body)
	}
	a := say(t, join(t, portA, "alpha", "pia", chatfleet.RoleProducer), "alpha", "for alpha")
	prodB := join(t, portB, "beta", "bo", chatfleet.RoleProducer)
	b := say(t, prodB, "beta", "for beta")
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, c := range []struct {
			rc *receiver
			id string
		}{{rcA, a}, {rcB, b}, {op, a}, {op, b}} {
			if !c.rc.has(c.id) {
				return fmt.Errorf("%s not delivered to %s", c.id, c.rc.url)
			}
		}
		return nil
	})
	secrets := map[string]string{"WEBHOOK_SECRET": hookSecret, "alpha's": alphaSecret, "beta's": betaSecret}
	check := func(who string, rc *receiver, room, want string) {
		t.Helper()
		for _, r := range rc.requests() {
			for _, ev := range r.batch.Events {
				if room != "" && ev.Room != room {
					t.Errorf("%s got an event of room %s", who, ev.Room)
				}
			}
			for what, s := range secrets {
				err := webhook.Verify(s, r.ts, r.body, r.sig, webhook.DefaultMaxSkew)
				if ok := err == nil; ok != (what == want) {
					t.Errorf("%s: a delivery verifies with %s secret: %v (want only with %s)", who, what, ok, want)
				}
			}
		}
	}
	check("alpha's receiver", rcA, "alpha", "alpha's")
	check("beta's receiver", rcB, "beta", "beta's")
	check("the WEBHOOK_URLS receiver", op, "", "WEBHOOK_SECRET")

	// The secrets are kept where only this user reads them, and told nowhere else.
	if st, err := os.Stat(filepath.Join(h.StateDir, "rooms")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state folder: %v %v, want 0700", st.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(h.StateDir, "rooms", "*.json"))
	found := 0
	for _, f := range files {
		st, _ := os.Stat(f)
		b, _ := os.ReadFile(f)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode())
		}
		if bytes.Contains(b, []byte(betaSecret)) || bytes.Contains(b, []byte(alphaSecret)) {
			found++
		}
	}
	if found != 2 {
		t.Errorf("%d state files hold a room's secret, want 2", found)
	}
	_, list := testutil.Do(t, "GET", h.Admin+"/api/v1/rooms", adminKey, "")
	_, one := testutil.Do(t, "GET", h.API+"/api/v1/room/beta", userKey, "")
	for _, s := range []string{list, one, h.Proc.Output()} {
		if strings.Contains(s, betaSecret) || strings.Contains(s, alphaSecret) {
			t.Fatalf("a room's secret is shown: %.300s", s)
		}
	}

	// A new master re-adopts beta: its deliveries are still signed with its secret.
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	h.Start()
	testutil.Eventually(t, 5*time.Second, func() error {
		if rs := h.rooms(); len(rs) != 2 {
			return fmt.Errorf("rooms %+v", rs)
		}
		return nil
	})
	after := say(t, prodB, "beta", "after the restart")
	testutil.Eventually(t, 10*time.Second, func() error {
		if !rcB.has(after) {
			return fmt.Errorf("%s not delivered after re-adoption", after)
		}
		return nil
	})
	check("beta's receiver after re-adoption", rcB, "beta", "beta's")
	if out := h.Proc.Output(); strings.Contains(out, betaSecret) || strings.Contains(out, alphaSecret) {
		t.Fatal("the new master logged a room's secret")
	}
}

// entRequest is one request the entitlement hook got.
type entRequest struct {
	header http.Header
	body   []byte
}

// TestEntitlementSignatureIsNotAWebhook (finding 6): entitlement requests
// are signed with ENTITLEMENT_SECRET under their own header and signed
// string: they verify as entitlement requests only, never as a webhook (with
// either secret), and a webhook delivery never verifies as an entitlement
// request. (TestTrustSettingsRefusedAtStart: a host with ENTITLEMENT_URL and
// no ENTITLEMENT_SECRET does not start.)
func TestEntitlementSignatureIsNotAWebhook(t *testing.T) {
	var mu sync.Mutex
	var ents []entRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct{ Checks []struct{ UserID string } }
		json.Unmarshal(body, &req)
		mu.Lock()
		ents = append(ents, entRequest{r.Header.Clone(), body})
		mu.Unlock()
		var out struct {
			Results []map[string]string `json:"results"`
		}
		for _, c := range req.Checks {
			out.Results = append(out.Results, map[string]string{"userId": c.UserID, "decision": "allow"})
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)

	rc := newReceiver(t)
	h := startHost(t, hookEnv(rc, "ENTITLEMENT_URL="+srv.URL, "ENTITLEMENT_SECRET="+entSecret)...)
	port := h.createWith("paid", hostapi.RoomOptions{Paid: true})
	join(t, port, "paid", "fan", chatfleet.RoleViewer)
	testutil.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ents) == 0 {
			return errors.New("no entitlement request yet")
		}
		if len(rc.requests()) == 0 {
			return errors.New("no webhook delivery yet")
		}
		return nil
	})
	mu.Lock()
	e := ents[0]
	mu.Unlock()
	ts, sig := e.header.Get(webhook.HeaderTimestamp), e.header.Get(webhook.HeaderEntitlementSignature)
	if err := webhook.VerifyEntitlement(entSecret, ts, e.body, sig, webhook.DefaultMaxSkew); err != nil {
		t.Fatalf("the entitlement request does not verify with ENTITLEMENT_SECRET: %v", err)
	}
	if e.header.Get(webhook.HeaderSignature) != "" {
		t.Error("the entitlement request carries a webhook signature header")
	}
	for _, s := range []string{entSecret, hookSecret} {
		if err := webhook.Verify(s, ts, e.body, sig, 0); err == nil {
			t.Error("an entitlement signature verifies as a webhook's")
		}
	}
	if err := webhook.VerifyEntitlement(hookSecret, ts, e.body, sig, 0); err == nil {
		t.Error("an entitlement request verifies with WEBHOOK_SECRET")
	}
	d := rc.requests()[0]
	if err := webhook.Verify(hookSecret, d.ts, d.body, d.sig, webhook.DefaultMaxSkew); err != nil {
		t.Fatalf("the webhook delivery does not verify: %v", err)
	}
	for _, s := range []string{entSecret, hookSecret} {
		if err := webhook.VerifyEntitlement(s, d.ts, d.body, d.sig, 0); err == nil {
			t.Error("a webhook signature verifies as an entitlement request's")
		}
	}
}

// environ returns the environment of process pid.
func environ(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatalf("environment of %d: %v", pid, err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// TestRoomProcessEnvironment (finding 9): a spare, a room made of a spare
// and a room process started afresh (after a crash) hold none of the
// master's secrets (KEY, ADMIN_KEY, LOADBALANCER_KEY, MONGODB_URI,
// WEBHOOK_SECRET, AWS_*, FLEET_*, and nothing else not on the list) but
// what a room needs: TOKEN_SECRET, the entitlement settings, GOMAXPROCS.
func TestRoomProcessEnvironment(t *testing.T) {
	_, storeEnv := startStore(t, "roomenv")
	secrets := []string{
		"WEBHOOK_SECRET=" + hookSecret, "AWS_SECRET_ACCESS_KEY=aws-secret-0123", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE",
		"FLEET_KEY=fleet-key-0123", "FLEET_ADMIN_KEY=fleet-admin-0123", "UNLISTED_SETTING=not-for-rooms",
	}
	h := startHost(t, append(append(storeEnv, secrets...),
		"ROOM_SPARES=1", "ENTITLEMENT_URL=http://127.0.0.1:9/ent", "ENTITLEMENT_SECRET="+entSecret)...)
	// startHost sets KEY, ADMIN_KEY, LOADBALANCER_KEY; storeEnv MONGODB_URI.
	for _, kv := range h.Env {
		if n, _, _ := strings.Cut(kv, "="); n == "KEY" || n == "ADMIN_KEY" || n == "LOADBALANCER_KEY" || n == "MONGODB_URI" {
			secrets = append(secrets, kv)
		}
	}
	check := func(what string, pid int) {
		t.Helper()
		env := environ(t, pid)
		joined := strings.Join(env, "\n")
		for _, kv := range secrets {
			name, value, _ := strings.Cut(kv, "=")
			for _, e := range env {
				if n, v, _ := strings.Cut(e, "="); n == name || strings.Contains(v, value) {
					t.Errorf("%s (pid %d) holds %s", what, pid, n)
				}
			}
		}
		for _, want := range []string{"TOKEN_SECRET=" + secret, "ENTITLEMENT_SECRET=" + entSecret, "GOMAXPROCS=1"} {
			if !slices.Contains(env, want) {
				t.Errorf("%s (pid %d) lacks %s; it has:\n%s", what, pid, strings.SplitN(want, "=", 2)[0], joined)
			}
		}
	}
	spare := h.oneSpare(0)
	check("a spare", spare)
	port := h.create("envy")
	rs := h.rooms()
	if len(rs) != 1 || rs[0].PID != spare {
		t.Fatalf("rooms %+v: want the spare %d to be the room", rs, spare)
	}
	check("a room made of a spare", spare)
	check("the next spare", h.oneSpare(spare))

	syscall.Kill(spare, syscall.SIGKILL) // the master starts the room again, without a spare
	var pid int
	testutil.Eventually(t, 10*time.Second, func() error {
		rs := h.rooms()
		if len(rs) != 1 || rs[0].PID == spare || rs[0].PID == 0 {
			return fmt.Errorf("rooms %+v: want envy restarted", rs)
		}
		pid = rs[0].PID
		return roomAnswers(port, "envy")
	})
	check("a room started afresh", pid)
}
