// Package webhook is what a receiver of chatfleet's webhooks needs: the
// payload types, the header names, and Verify, which checks that a delivery
// was signed with its secret and is recent. The host daemon signs a room's
// own deliveries (options.webhookUrls) with that room's secret and the
// host's WEBHOOK_URLS deliveries with WEBHOOK_SECRET, both with Sign.
// docs/events.md describes the events.
//
// Entitlement requests (ENTITLEMENT_URL) are signed too, with their own key
// (ENTITLEMENT_SECRET), their own header and a signed string of their own
// (SignEntitlement, VerifyEntitlementRequest): an entitlement signature never
// verifies as a webhook's, nor the other way round, whatever the keys.
//
// It imports the standard library only (and internal/netguard, for
// ValidateURLs, which does too), so that a receiver can import it without
// the rest of the project. ValidateURLs is the rule for a room's own
// webhook URLs, which the control API and the host both apply.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery.
const (
	// HeaderTimestamp is the attempt's time in Unix seconds, as signed.
	HeaderTimestamp = "X-Chatfleet-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256 of timestamp + "." +
	// body under the secret. Several comma-separated values may be sent
	// (secret rotation); one valid value is enough.
	HeaderSignature = "X-Chatfleet-Signature"
	// HeaderDelivery is the batch's id: the same on every attempt of one
	// batch, different for every batch.
	HeaderDelivery = "X-Chatfleet-Delivery"
	// HeaderAttempt counts the attempts of one batch from 1.
	HeaderAttempt = "X-Chatfleet-Attempt"
	// HeaderEntitlementSignature signs an entitlement request: "v1=" and
	// the hex HMAC-SHA256 of "chatfleet-entitlement." + timestamp + "." +
	// body under ENTITLEMENT_SECRET, the timestamp in HeaderTimestamp.
	// Entitlement requests never carry HeaderSignature.
	HeaderEntitlementSignature = "X-Chatfleet-Entitlement-Signature"
)

// entitlementPrefix starts the string an entitlement signature signs. A
// webhook's signed string starts with the timestamp's digits, so no
// signature of one kind is ever valid for the other.
const entitlementPrefix = "chatfleet-entitlement."

// Event types the host daemon adds to a room's own message types (chat,
// join, leave, deleted, muted, unmuted, kicked, banned, stream, slowmode,
// system; see docs/protocol.md).
const (
	TypeRoomOpened  = "room.opened"  // sequenced: the room was created and started
	TypeRoomClosed  = "room.closed"  // sequenced: the room ended (Status closed or failed)
	TypeRoomViewers = "room.viewers" // not sequenced: the number of distinct users changed
)

// DefaultMaxSkew is how far a delivery's timestamp may be from the
// receiver's clock; the sender retries with a fresh timestamp.
const DefaultMaxSkew = 5 * time.Minute

// MaxBody is the largest delivery body VerifyRequest reads.
const MaxBody = 16 << 20

// Batch is the JSON body of one delivery.
type Batch struct {
	DeliveryID string  `json:"deliveryId"` // as in HeaderDelivery
	HostID     string  `json:"hostId"`     // the host that delivered it
	Events     []Event `json:"events"`     // oldest first; one room per batch
}

// Event is one event of a room. Events of one room arrive in order; an
// event may arrive more than once (delivery is at least once), always with
// the same ID, so receivers deduplicate by ID.
type Event struct {
	// ID is "<room>:<seq>" for sequenced events and "<room>:viewers:<unix
	// ns>" for room.viewers.
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Room string    `json:"room"`
	Seq  int64     `json:"seq,omitempty"` // 0 for room.viewers
	At   time.Time `json:"at"`
	// Data is the room's message exactly as its clients got it (a
	// protocol.ServerMsg: {"type":"chat","seq":…,"from":…,"text":…}); for
	// room.opened and room.closed a system message of kind "opened" or
	// "closed". Absent for room.viewers.
	Data json.RawMessage `json:"data,omitempty"`

	// Where the room is, on room.opened, room.closed and room.viewers.
	HostID    string    `json:"hostId,omitempty"`
	Host      string    `json:"host,omitempty"` // host name or address clients use with Port
	Port      int       `json:"port,omitempty"`
	URL       string    `json:"url,omitempty"` // the public room URL when the host has ROOM_URL
	Paid      bool      `json:"paid,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"` // tells two rooms of one name apart

	Status  string `json:"status,omitempty"`  // room.closed: "closed" or "failed"
	Reason  string `json:"reason,omitempty"`  // room.closed
	Viewers *int   `json:"viewers,omitempty"` // room.viewers: distinct users now
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: no signature or timestamp")
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: timestamp outside the allowed skew")
)

// Sign returns the HeaderSignature value for body sent at timestamp (Unix
// seconds, as in HeaderTimestamp): "v1=" + hex(HMAC-SHA256(secret,
// timestamp + "." + body)).
func Sign(secret, timestamp string, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, timestamp, body))
}

// SignEntitlement returns the HeaderEntitlementSignature value for an
// entitlement request body sent at timestamp: "v1=" +
// hex(HMAC-SHA256(secret, "chatfleet-entitlement." + timestamp + "." + body)).
func SignEntitlement(secret, timestamp string, body []byte) string {
	return "v1=" + hex.EncodeToString(macWith(entitlementPrefix, secret, timestamp, body))
}

func mac(secret, timestamp string, body []byte) []byte {
	return macWith("", secret, timestamp, body)
}

func macWith(prefix, secret, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(prefix))
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// now is the receiver's clock; tests replace it.
var now = time.Now

// Verify checks a delivery: signature (the HeaderSignature value) must be a
// valid signature of timestamp (the HeaderTimestamp value) and body under
// secret, and timestamp within maxSkew of now (maxSkew <= 0: not checked,
// which lets a captured delivery be replayed). It returns ErrNoSignature,
// ErrBadSignature or ErrStale.
func Verify(secret, timestamp string, body []byte, signature string, maxSkew time.Duration) error {
	return verify("", secret, timestamp, body, signature, maxSkew)
}

// VerifyEntitlement is Verify for an entitlement request: signature is the
// HeaderEntitlementSignature value.
func VerifyEntitlement(secret, timestamp string, body []byte, signature string, maxSkew time.Duration) error {
	return verify(entitlementPrefix, secret, timestamp, body, signature, maxSkew)
}

func verify(prefix, secret, timestamp string, body []byte, signature string, maxSkew time.Duration) error {
	if timestamp == "" || signature == "" {
		return ErrNoSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, timestamp)
	}
	want := macWith(prefix, secret, timestamp, body)
	ok := false
	for _, s := range strings.Split(signature, ",") {
		v, found := strings.CutPrefix(strings.TrimSpace(s), "v1=")
		if !found {
			continue
		}
		got, err := hex.DecodeString(v)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if maxSkew > 0 {
		if d := now().Sub(time.Unix(ts, 0)); d > maxSkew || d < -maxSkew {
			return ErrStale
		}
	}
	return nil
}

// VerifyRequest reads r's body (at most MaxBody bytes) and verifies it with
// r's headers; it returns the body, to decode as a Batch, or Verify's error
// (or the read error).
func VerifyRequest(r *http.Request, secret string, maxSkew time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	if err != nil {
		return nil, fmt.Errorf("webhook: read body: %w", err)
	}
	if err := Verify(secret, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignature), maxSkew); err != nil {
		return nil, err
	}
	return body, nil
}

// VerifyEntitlementRequest is VerifyRequest for the entitlement hook: it
// reads r's body (at most MaxBody bytes) and checks its
// HeaderEntitlementSignature under secret (ENTITLEMENT_SECRET).
func VerifyEntitlementRequest(r *http.Request, secret string, maxSkew time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	if err != nil {
		return nil, fmt.Errorf("webhook: read body: %w", err)
	}
	if err := VerifyEntitlement(secret, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderEntitlementSignature), maxSkew); err != nil {
		return nil, err
	}
	return body, nil
}
