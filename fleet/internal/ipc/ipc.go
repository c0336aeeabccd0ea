// Package ipc is the channel between the host daemon (the master) and a room
// process: a stream of frames over a Unix socket, each a 4-byte big-endian
// length followed by that many bytes of one JSON-encoded Msg.
//
// The room process listens on a Unix socket in the master's state directory;
// the master connects to it after forking the room, and a restarted master
// connects to it again to re-adopt the room. The room serves one master at a
// time: a new connection replaces the old one.
package ipc

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
)

// MaxFrame is the largest frame either side accepts; bans frames stay far
// below it (about 1.4 MB at most).
const MaxFrame = 4 << 20

// Message types. Room to master: Ready (after every Hello), Stats, Event.
// Master to room: Hello (first on every connection), Resume (after Ready, for
// a room process the master just started), Cache, Global, Close, Drain, Procs.
// A spare room process (package roomproc) sends Ready on its socket pair
// with the master and gets Assign there, with the room's listeners.
const (
	TypeHello  = "hello"
	TypeReady  = "ready"
	TypeStats  = "stats"
	TypeEvent  = "event"
	TypeCache  = "cache"
	TypeGlobal = "global"
	TypeClose  = "close"
	TypeDrain  = "drain"
	TypeResume = "resume"
	TypeAssign = "assign"
	TypeBans   = "bans"
	TypeProcs  = "procs"
)

// Msg is one IPC message; Type says which other fields are set.
type Msg struct {
	Type string `json:"type"`

	// Hello (master to room).
	MasterPID int `json:"masterPid,omitempty"`
	// Hello and Ready: the protocol version the sender speaks (Version;
	// absent: 1). See ProtoOf.
	Proto int `json:"proto,omitempty"`

	// Ready (room to master): who the room is. Assign (master to a spare):
	// the room it becomes.
	Room string `json:"room,omitempty"`
	Port int    `json:"port,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// BanSnapshot (Ready, room to master): the room takes the fleet's bans
	// as a snapshot (BanUpdate.Snapshot, Lift). A room process of an older
	// binary (adopted after an in-place upgrade) leaves it false and gets
	// the fleet's bans as Add frames.
	BanSnapshot bool `json:"banSnapshot,omitempty"`

	// Assign (master to a spare): the room's options.
	Assign *Assignment `json:"assign,omitempty"`

	// Stats (room to master).
	Stats *chatfleet.RoomStats `json:"stats,omitempty"`

	// Procs (master to room, protocol 3): how many cores (GOMAXPROCS) the
	// room may use now; its audience grew past what one core serves, or
	// shrank back (docs/architecture.md, "Cores for big rooms").
	Procs int `json:"procs,omitempty"`

	// Event (room to master): "ban" (Ban set), "closed" (Reason set), "log"
	// (Events set: sequenced room events, written ahead of their delivery).
	Event string         `json:"event,omitempty"`
	Ban   *chatfleet.Ban `json:"ban,omitempty"`

	// Log events (room to master) and Resume (master to room): the room's
	// last events, oldest first; Resume's Seq is where the sequence continues.
	Events []chatfleet.Event `json:"events,omitempty"`
	Seq    int64             `json:"seq,omitempty"`

	// Cache (master to room): blocked words and defaults; its Bans are empty.
	Cache *chatfleet.Cache `json:"cache,omitempty"`

	// Bans (master to room): changes to the bans the room applies (the
	// fleet's and its own), in frames of at most MaxBansPerFrame bans or
	// MaxSnapshotFrameBytes of snapshot.
	Bans *BanUpdate `json:"bans,omitempty"`

	// Global, Close and Drain (master to room); Closed events (room to master).
	Text     string        `json:"text,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Deadline time.Duration `json:"deadline,omitempty"` // Drain: window to close clients over
}

// Assignment is what a spare room process needs to become a room besides its
// name: the options a started room gets as flags.
type Assignment struct {
	Instance       string `json:"instance,omitempty"`
	Owner          string `json:"owner,omitempty"`
	AllowAnonymous bool   `json:"allowAnonymous,omitempty"`
	HistorySize    int    `json:"historySize,omitempty"`
	Paid           bool   `json:"paid,omitempty"`
	HLSURL         string `json:"hlsUrl,omitempty"` // the create's: a stream announced live without one uses it
	// Role is the room's part in a room spread over hosts: "" (plain),
	// hostapi.RoleOrigin or hostapi.RoleEdge (docs/scaleout.md). A new
	// optional field: a spare of an older binary would ignore it, but spares
	// are always of the master's own binary, so Version does not change.
	Role string `json:"role,omitempty"`
}

// MaxBansPerFrame bounds the bans of one Bans frame: a ban is at most about
// 2 KiB of JSON (ids of 128 bytes, a reason of 200 escaped), so a frame stays
// far below MaxFrame.
const MaxBansPerFrame = 1000

// BanUpdate changes the bans a room applies. In one update Reset empties
// the list first, then Snapshot, Remove (ban ids), Lift (user ids) and Add
// apply, in that order.
//
// After a master connects it sends the whole list: a frame with Reset, the
// fleet's bans as frames of Snapshot (their bytes concatenate in order into
// one snapshot, see SnapshotEntry), the room's own bans as frames of Add, and
// a frame with Done; from then on deltas. A new fleet ban is an Add (with its
// reason); a fleet ban removed is a Remove of its id plus a Lift of its user:
// that user's snapshot entry no longer counts, and the user's fleet bans
// still active come as Add (before the Remove and Lift, so the user is never
// let in between). A room serves new clients only once it has seen Done.
type BanUpdate struct {
	Reset    bool            `json:"reset,omitempty"`
	Snapshot []byte          `json:"snapshot,omitempty"` // base64 in JSON
	Remove   []string        `json:"remove,omitempty"`
	Lift     []string        `json:"lift,omitempty"`
	Add      []chatfleet.Ban `json:"add,omitempty"`
	Done     bool            `json:"done,omitempty"`
}

// SnapshotEntry is the size of one entry of a snapshot of the fleet's bans:
// an 8-byte key (BanKey of the user id) and the 8-byte end of the user's
// bans (Unix milliseconds; 0: forever), both big-endian. A snapshot holds
// one entry per banned user, sorted by key with no key twice, so a room
// looks a user up by binary search in the bytes it received, and holds 16
// bytes per fleet-banned user instead of the bans.
const SnapshotEntry = 16

// MaxSnapshotEntries bounds a snapshot: the highest MAX_FLEET_BANS.
const MaxSnapshotEntries = 1_000_000

// MaxSnapshotFrameBytes bounds the snapshot bytes of one frame (65,536
// entries; about 1.4 MB of base64).
const MaxSnapshotFrameBytes = 1 << 20

// BanKey returns a user id's key in a snapshot: the first 8 bytes of the
// SHA-256 of the id, big-endian. Two ids share a key with a chance of about
// one in 2^64 per pair; finding an id with the key of a given user is as hard
// as a preimage of 64 bits, so nobody can pick an id that a stranger's ban
// keeps out.
func BanKey(userID string) uint64 {
	h := sha256.Sum256([]byte(userID))
	return binary.BigEndian.Uint64(h[:8])
}

// AppendSnapshotEntry appends the entry of key and until (Unix ms, 0:
// forever) to b.
func AppendSnapshotEntry(b []byte, key uint64, untilMs int64) []byte {
	b = binary.BigEndian.AppendUint64(b, key)
	return binary.BigEndian.AppendUint64(b, uint64(untilMs))
}

// SnapshotAt returns entry i of snapshot bytes b.
func SnapshotAt(b []byte, i int) (key uint64, untilMs int64) {
	e := b[i*SnapshotEntry : (i+1)*SnapshotEntry]
	return binary.BigEndian.Uint64(e), int64(binary.BigEndian.Uint64(e[8:]))
}

// CheckSnapshot checks snapshot bytes b that follow entries of keys up to
// after (a first part: after is nil): whole entries, keys strictly
// increasing, no negative end. It returns b's last key.
func CheckSnapshot(b []byte, after *uint64) (last uint64, err error) {
	if len(b)%SnapshotEntry != 0 {
		return 0, fmt.Errorf("snapshot of %d bytes: not whole entries of %d", len(b), SnapshotEntry)
	}
	prev, have := uint64(0), after != nil
	if have {
		prev = *after
	}
	for i := range len(b) / SnapshotEntry {
		k, until := SnapshotAt(b, i)
		if have && k <= prev {
			return 0, fmt.Errorf("snapshot entry %d: keys not in increasing order", i)
		}
		if until < 0 {
			return 0, fmt.Errorf("snapshot entry %d: end %d", i, until)
		}
		prev, have = k, true
	}
	return prev, nil
}

// SearchSnapshot returns the end (Unix ms, 0: forever) of the entry of key
// in snapshot bytes b, sorted as CheckSnapshot checks.
func SearchSnapshot(b []byte, key uint64) (untilMs int64, ok bool) {
	lo, hi := 0, len(b)/SnapshotEntry
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch k, until := SnapshotAt(b, m); {
		case k == key:
			return until, true
		case k < key:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

// Conn frames Msgs over a net.Conn. Send is safe for concurrent use; Recv
// must be called from one goroutine.
type Conn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex // serialises Send
}

// NewConn wraps c.
func NewConn(c net.Conn) *Conn {
	return &Conn{c: c, r: bufio.NewReader(c)}
}

// Send writes m as one frame, giving up after 5 seconds so that a stuck
// peer cannot block the sender forever.
func (c *Conn) Send(m Msg) error { return c.SendWithin(m, 5*time.Second) }

// SendWithin writes m as one frame, giving up after d.
func (c *Conn) SendWithin(m Msg, d time.Duration) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	return c.SendFrame(b, d)
}

// SendFrame writes frame, as Encode returned it, giving up after d: a
// message encoded once can be sent to many rooms.
func (c *Conn) SendFrame(frame []byte, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(d))
	_, err := c.c.Write(frame)
	return err
}

// Recv reads the next frame.
func (c *Conn) Recv() (Msg, error) {
	return Decode(c.r)
}

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.c.Close() }

// Encode returns m as one frame.
func Encode(m Msg) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode ipc %s: %w", m.Type, err)
	}
	if len(body) > MaxFrame {
		return nil, fmt.Errorf("encode ipc %s: frame of %d bytes exceeds %d", m.Type, len(body), MaxFrame)
	}
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// A frame of a snapshot part, as Encode writes it, is this prefix, the
// part in base64 and this suffix.
const (
	snapshotPrefix = `{"type":"bans","bans":{"snapshot":"`
	snapshotSuffix = `"}}`
)

// decodeSnapshot decodes body if it is a frame of a snapshot part alone,
// as Encode writes it: the base64 without encoding/json, which would take
// four times as long to scan the string twice (a room's list of 100,000
// fleet bans is two such frames of 1.4 MB).
func decodeSnapshot(body []byte) (Msg, bool) {
	enc, ok := bytes.CutPrefix(body, []byte(snapshotPrefix))
	if enc, ok = bytes.CutSuffix(enc, []byte(snapshotSuffix)); !ok {
		return Msg{}, false
	}
	// The base64 alphabet has no quote or backslash: a string with either
	// is not a bare snapshot (and fails here, to be decoded as JSON).
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(raw, enc)
	if err != nil || n == 0 {
		return Msg{}, false
	}
	return Msg{Type: TypeBans, Bans: &BanUpdate{Snapshot: raw[:n:n]}}, true
}

// ErrFrame reports a malformed frame; the connection cannot be trusted after it.
var ErrFrame = errors.New("malformed ipc frame")

// Decode reads one frame from r. It returns io.EOF at a clean end of stream
// and an error wrapping ErrFrame for an oversize, truncated or invalid frame.
func Decode(r io.Reader) (Msg, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Msg{}, fmt.Errorf("%w: truncated header", ErrFrame)
		}
		return Msg{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxFrame {
		return Msg{}, fmt.Errorf("%w: length %d", ErrFrame, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Msg{}, fmt.Errorf("%w: truncated body: %v", ErrFrame, err)
	}
	if m, ok := decodeSnapshot(body); ok {
		return m, nil
	}
	var m Msg
	if err := json.Unmarshal(body, &m); err != nil {
		return Msg{}, fmt.Errorf("%w: %v", ErrFrame, err)
	}
	if m.Type == "" {
		return Msg{}, fmt.Errorf("%w: no type", ErrFrame)
	}
	return m, nil
}
