package webhook

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	const secret = "whsec-0123456789abcdef"
	at := time.Unix(1764495600, 0)
	now = func() time.Time { return at }
	t.Cleanup(func() { now = time.Now })
	ts := strconv.FormatInt(at.Unix(), 10)
	body := []byte(`{"deliveryId":"d1","events":[{"id":"lobby:1","type":"chat"}]}`)
	sig := Sign(secret, ts, body)
	if !strings.HasPrefix(sig, "v1=") || len(sig) != 3+64 {
		t.Fatalf("signature %q: want v1= and 64 hex digits", sig)
	}
	old := strconv.FormatInt(at.Add(-10*time.Minute).Unix(), 10)
	tests := []struct {
		name      string
		secret    string
		ts        string
		body      []byte
		sig       string
		skew      time.Duration
		wantError error
	}{
		{"valid", secret, ts, body, sig, DefaultMaxSkew, nil},
		{"one of several", secret, ts, body, "v1=00ff, " + sig, DefaultMaxSkew, nil},
		{"tampered body", secret, ts, []byte(strings.Replace(string(body), "chat", "chaT", 1)), sig, DefaultMaxSkew, ErrBadSignature},
		{"other secret", "another-secret-0123", ts, body, sig, DefaultMaxSkew, ErrBadSignature},
		{"other timestamp", secret, strconv.FormatInt(at.Unix()+1, 10), body, sig, DefaultMaxSkew, ErrBadSignature},
		{"unknown scheme", secret, ts, body, "v0=" + sig[3:], DefaultMaxSkew, ErrBadSignature},
		{"not hex", secret, ts, body, "v1=zz", DefaultMaxSkew, ErrBadSignature},
		{"bad timestamp", secret, "yesterday", body, sig, DefaultMaxSkew, ErrBadSignature},
		{"no signature", secret, ts, body, "", DefaultMaxSkew, ErrNoSignature},
		{"no timestamp", secret, "", body, sig, DefaultMaxSkew, ErrNoSignature},
		{"stale", secret, old, body, Sign(secret, old, body), DefaultMaxSkew, ErrStale},
		{"stale but unchecked", secret, old, body, Sign(secret, old, body), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.ts, tt.body, tt.sig, tt.skew)
			if !errors.Is(err, tt.wantError) || (tt.wantError == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantError)
			}
		})
	}
}

func TestVerifyRequest(t *testing.T) {
	const secret = "whsec-0123456789abcdef"
	body := `{"deliveryId":"d2","hostId":"h","events":[]}`
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(secret, ts, []byte(body)))
	got, err := VerifyRequest(req, secret, DefaultMaxSkew)
	if err != nil || string(got) != body {
		t.Fatalf("VerifyRequest = %q, %v", got, err)
	}
	req = httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body+" "))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(secret, ts, []byte(body)))
	if _, err := VerifyRequest(req, secret, DefaultMaxSkew); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered request: %v, want ErrBadSignature", err)
	}
}

// TestEntitlementSignatureIsSeparate: an entitlement signature verifies only
// as one, under its key; a webhook signature of the same body, timestamp and
// key does not verify as an entitlement's, nor the other way round.
func TestEntitlementSignatureIsSeparate(t *testing.T) {
	const key = "entsec-0123456789abcdef"
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	body := []byte(`{"checks":[{"userId":"fan","room":"paid","role":"viewer"}]}`)
	ent, hook := SignEntitlement(key, ts, body), Sign(key, ts, body)
	if ent == hook {
		t.Fatal("entitlement and webhook signatures of one body and key are equal")
	}
	if err := VerifyEntitlement(key, ts, body, ent, DefaultMaxSkew); err != nil {
		t.Fatalf("VerifyEntitlement of its own signature: %v", err)
	}
	if err := VerifyEntitlement("another-key-0123456", ts, body, ent, DefaultMaxSkew); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyEntitlement under another key: %v", err)
	}
	if err := Verify(key, ts, body, ent, DefaultMaxSkew); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("an entitlement signature verified as a webhook's: %v", err)
	}
	if err := VerifyEntitlement(key, ts, body, hook, DefaultMaxSkew); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a webhook signature verified as an entitlement's: %v", err)
	}

	req := httptest.NewRequest(http.MethodPost, "/entitlements", strings.NewReader(string(body)))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderEntitlementSignature, ent)
	if got, err := VerifyEntitlementRequest(req, key, DefaultMaxSkew); err != nil || string(got) != string(body) {
		t.Fatalf("VerifyEntitlementRequest = %q, %v", got, err)
	}
	req = httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(string(body)))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderEntitlementSignature, ent)
	if _, err := VerifyRequest(req, key, DefaultMaxSkew); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("an entitlement request passed VerifyRequest: %v", err)
	}
}
