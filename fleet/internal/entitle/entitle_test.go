package entitle

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/webhook"
)

// hook serves h as a real HTTP entitlement service and returns its URL.
func hook(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestClientCheck(t *testing.T) {
	const secret = "entsec-0123456789abcdef"
	var sigErr atomic.Value
	url := hook(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(webhook.HeaderSignature) != "" {
			sigErr.Store(errors.New("the request carries a webhook signature"))
		}
		body, err := webhook.VerifyEntitlementRequest(r, secret, webhook.DefaultMaxSkew)
		if err != nil {
			sigErr.Store(err)
		}
		var req request
		json.Unmarshal(body, &req)
		var out response
		for _, c := range req.Checks {
			switch c.UserID {
			case "paying":
				out.Results = append(out.Results, Result{UserID: c.UserID, Decision: Allow, Until: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
			default:
				out.Results = append(out.Results, Result{UserID: c.UserID, Decision: Deny, Reason: "no ticket"})
			}
		}
		json.NewEncoder(w).Encode(out)
	})
	c := &Client{URL: url, Secret: secret}
	res, err := c.Check(context.Background(), []Check{
		{UserID: "freeloader", Room: "r", Role: chatfleet.RoleViewer},
		{UserID: "paying", Room: "r", Role: chatfleet.RoleViewer},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].UserID != "freeloader" || res[0].Decision != Deny || res[0].Reason != "no ticket" {
		t.Errorf("result 0 = %+v", res[0])
	}
	if res[1].Decision != Allow || res[1].Until.Year() != 2030 {
		t.Errorf("result 1 = %+v", res[1])
	}
	if err, _ := sigErr.Load().(error); err != nil {
		t.Errorf("the hook could not verify the request: %v", err)
	}
}

func TestClientFailures(t *testing.T) {
	checks := []Check{{UserID: "u1", Room: "r", Role: chatfleet.RoleViewer}}
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"5xx", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }},
		{"4xx", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }},
		{"missing user", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"results":[]}`)) }},
		{"unknown decision", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"results":[{"userId":"u1","decision":"maybe"}]}`))
		}},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // lets the server see the client go
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{URL: hook(t, tt.h), Timeout: 200 * time.Millisecond}
			if _, err := c.Check(context.Background(), checks); err == nil {
				t.Fatal("Check succeeded")
			}
		})
	}
}

// TestPolicy: open during the grace after the last good answer, closed
// after it, open again once the hook answers.
func TestPolicy(t *testing.T) {
	var failing atomic.Bool
	url := hook(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(503)
			return
		}
		var req request
		json.NewDecoder(r.Body).Decode(&req)
		var out response
		for _, c := range req.Checks {
			out.Results = append(out.Results, Result{UserID: c.UserID, Decision: Deny, Reason: "expired"})
		}
		json.NewEncoder(w).Encode(out)
	})
	clock := testutil.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := NewPolicy(&Client{URL: url}, 30*time.Second, clock.Now)
	checks := []Check{{UserID: "u1", Room: "r", Role: chatfleet.RoleViewer}}
	ctx := context.Background()

	if res, err := p.Check(ctx, checks); err != nil || res[0].Decision != Deny || res[0].FailOpen {
		t.Fatalf("hook up: %+v %v", res, err)
	}
	failing.Store(true)
	clock.Add(29 * time.Second)
	res, err := p.Check(ctx, checks)
	if err != nil || res[0].Decision != Allow || !res[0].FailOpen {
		t.Fatalf("within the grace: %+v %v, want a fail-open allow", res, err)
	}
	clock.Add(2 * time.Second)
	if _, err := p.Check(ctx, checks); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after the grace: %v, want ErrUnavailable", err)
	}
	failing.Store(false)
	if res, err := p.Check(ctx, checks); err != nil || res[0].Decision != Deny {
		t.Fatalf("hook back: %+v %v", res, err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := ConfigFromEnv(env())
	if err != nil || c.URL != "" || c.Interval != time.Minute || c.FailOpen != 30*time.Second || c.Timeout != 2*time.Second {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, err = ConfigFromEnv(env("ENTITLEMENT_URL", "https://pay.example.com/check", "ENTITLEMENT_SECRET", "entsec-0123456789",
		"ENTITLEMENT_INTERVAL", "1s", "ENTITLEMENT_FAIL_OPEN", "0s", "WEBHOOK_SECRET", "whsec-0123456789abcdef"))
	if err != nil || c.Interval != time.Second || c.FailOpen != 0 || c.Secret != "entsec-0123456789" {
		t.Fatalf("set: %+v %v", c, err)
	}
	// WEBHOOK_SECRET no longer signs entitlement requests: without a key
	// of their own the configuration is refused.
	if _, err := ConfigFromEnv(env("ENTITLEMENT_URL", "https://pay.example.com/check", "WEBHOOK_SECRET", "whsec-0123456789abcdef")); err == nil ||
		!strings.Contains(err.Error(), "ENTITLEMENT_SECRET is required") {
		t.Errorf("ENTITLEMENT_URL without ENTITLEMENT_SECRET: %v", err)
	}
	for _, bad := range [][]string{
		{"ENTITLEMENT_SECRET", "short"},
		{"ENTITLEMENT_URL", "ftp://x"},
		{"ENTITLEMENT_INTERVAL", "soon"},
		{"ENTITLEMENT_INTERVAL", "0s"},
		{"ENTITLEMENT_TIMEOUT", "-1s"},
		{"ENTITLEMENT_FAIL_OPEN", "-1s"},
		{"ENTITLEMENT_FAIL_OPEN", "later"},
	} {
		if _, err := ConfigFromEnv(env(bad...)); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s=%s: %v, want an error naming it", bad[0], bad[1], err)
		}
	}
	if c, err := ConfigFromEnv(env("ENTITLEMENT_FAIL_OPEN", "0s")); err != nil || c.FailOpen != 0 {
		t.Errorf("ENTITLEMENT_FAIL_OPEN=0s (fail closed): %+v, %v", c, err)
	}
}
