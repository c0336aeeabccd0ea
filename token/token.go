// Package token issues and verifies room join tokens: HS256 JWTs signed with
// TOKEN_SECRET, shared by the control API (which issues them) and the fleet
// (which checks them at the WebSocket handshake).
package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatfleet/chatfleet"
)

// Claims are what a join token carries.
type Claims struct {
	Room string `json:"room"`
	Inst string `json:"inst,omitempty"` // the room's instance: a token of another room of the same name is refused

	Name string         `json:"name"` // display name
	Role chatfleet.Role `json:"role"`
	jwt.RegisteredClaims
}

// UserID returns the token's subject, the user id.
func (c *Claims) UserID() string { return c.Subject }

// MinSecretLen is the shortest TOKEN_SECRET accepted.
const MinSecretLen = 16

// Issuer signs and verifies tokens with one secret.
type Issuer struct {
	secret []byte
	Now    func() time.Time // defaults to time.Now
}

// NewIssuer returns an Issuer for secret, which must be at least MinSecretLen bytes.
func NewIssuer(secret string) (*Issuer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("TOKEN_SECRET must be at least %d bytes", MinSecretLen)
	}
	return &Issuer{secret: []byte(secret), Now: time.Now}, nil
}

// Issue returns a signed token for user in room with role, valid for ttl.
// inst is the room's instance id ("" for a room created without one).
func (i *Issuer) Issue(room, inst, user, name string, role chatfleet.Role, ttl time.Duration) (string, error) {
	if err := chatfleet.ValidateRoomName(room); err != nil {
		return "", err
	}
	if user == "" || len(user) > 128 {
		return "", chatfleet.Errorf(chatfleet.EINVALID, "user id must be 1 to 128 bytes")
	}
	if !role.Valid() {
		return "", chatfleet.Errorf(chatfleet.EINVALID, "role must be producer, moderator or viewer")
	}
	if name == "" {
		name = user
	}
	if len(name) > 64 {
		return "", chatfleet.Errorf(chatfleet.EINVALID, "display name is longer than 64 bytes")
	}
	now := i.Now()
	c := Claims{Room: room, Inst: inst, Name: name, Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(i.secret)
}

// Verify checks tok's signature and expiry and that it was issued for room
// and, if inst is set, for that instance of it. A missing token is
// EUNAUTHORIZED; a forged, expired, malformed, other-room or other-instance
// token is EFORBIDDEN.
func (i *Issuer) Verify(tok, room, inst string) (*Claims, error) {
	if tok == "" {
		return nil, chatfleet.Errorf(chatfleet.EUNAUTHORIZED, "missing join token")
	}
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return i.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(i.Now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "join token expired")
	case err != nil:
		return nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "invalid join token")
	case c.Room != room:
		return nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "join token is for another room")
	case inst != "" && c.Inst != inst:
		return nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "join token is for an earlier room of this name")
	case c.Subject == "" || !c.Role.Valid():
		return nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "join token lacks a user or a valid role")
	}
	return &c, nil
}
