package token

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatfleet/chatfleet"
)

func TestVerify(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	iss, err := NewIssuer("0123456789abcdef-secret")
	if err != nil {
		t.Fatal(err)
	}
	iss.Now = func() time.Time { return now }
	good, err := iss.Issue("lobby", "i1", "u1", "Ann", chatfleet.RoleModerator, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewIssuer("another-secret-0123456789")
	forged, _ := other.Issue("lobby", "", "u1", "Ann", chatfleet.RoleProducer, time.Hour)
	expired, _ := iss.Issue("lobby", "", "u1", "Ann", chatfleet.RoleViewer, -time.Minute)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{Room: "lobby", Role: chatfleet.RoleProducer,
		RegisteredClaims: jwt.RegisteredClaims{Subject: "u1", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}})
	alg, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	tests := []struct {
		name, tok, room, inst, code string
	}{
		{"valid", good, "lobby", "i1", ""},
		{"any instance", good, "lobby", "", ""},
		{"other instance", good, "lobby", "i2", chatfleet.EFORBIDDEN},
		{"missing", "", "lobby", "i1", chatfleet.EUNAUTHORIZED},
		{"other room", good, "kitchen", "i1", chatfleet.EFORBIDDEN},
		{"forged", forged, "lobby", "i1", chatfleet.EFORBIDDEN},
		{"expired", expired, "lobby", "i1", chatfleet.EFORBIDDEN},
		{"alg none", alg, "lobby", "i1", chatfleet.EFORBIDDEN},
		{"garbage", "a.b.c", "lobby", "i1", chatfleet.EFORBIDDEN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := iss.Verify(tt.tok, tt.room, tt.inst)
			if code := chatfleet.ErrorCode(err); code != tt.code {
				t.Fatalf("Verify = %v, want code %q", err, tt.code)
			}
			if tt.code == "" && (c.UserID() != "u1" || c.Name != "Ann" || c.Role != chatfleet.RoleModerator) {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

func TestIssueRejects(t *testing.T) {
	if _, err := NewIssuer("short"); err == nil {
		t.Fatal("short secret accepted")
	}
	iss, _ := NewIssuer("0123456789abcdef-secret")
	for _, tt := range []struct {
		room, user string
		role       chatfleet.Role
	}{
		{"bad/room", "u", chatfleet.RoleViewer},
		{"ok", "", chatfleet.RoleViewer},
		{"ok", "u", "admin"},
	} {
		if _, err := iss.Issue(tt.room, "", tt.user, "", tt.role, time.Hour); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
			t.Errorf("Issue(%q, %q, %q) = %v, want EINVALID", tt.room, tt.user, tt.role, err)
		}
	}
}
