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

// MaxFrame is the largest frame either side accepts; a cache snapshot with
// many bans is the largest message.
const MaxFrame = 4 << 20

// Message types. Room to master: Ready (after every Hello), Stats, Event.
// Master to room: Hello (first on every connection), Resume (after Ready, for
// a room process the master just started), Cache, Global, Close, Drain.
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
)

// Msg is one IPC message; Type says which other fields are set.
type Msg struct {
	Type string `json:"type"`

	// Hello (master to room).
	MasterPID int `json:"masterPid,omitempty"`

	// Ready (room to master): who the room is. Assign (master to a spare):
	// the room it becomes.
	Room string `json:"room,omitempty"`
	Port int    `json:"port,omitempty"`
	PID  int    `json:"pid,omitempty"`

	// Assign (master to a spare): the room's options.
	Assign *Assignment `json:"assign,omitempty"`

	// Stats (room to master).
	Stats *chatfleet.RoomStats `json:"stats,omitempty"`

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
	// fleet's and its own), in frames of at most MaxBansPerFrame bans.
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
}

// MaxBansPerFrame bounds the bans of one Bans frame: a ban is at most about
// 2 KiB of JSON (ids of 128 bytes, a reason of 200 escaped), so a frame stays
// far below MaxFrame.
const MaxBansPerFrame = 1000

// BanUpdate changes the bans a room applies: Reset empties the list first,
// then Remove (ban ids) and Add apply. After a master connects it sends the
// whole list as Reset plus frames of Add, the last with Done; from then on
// deltas. A room serves new clients only once it has seen Done.
type BanUpdate struct {
	Reset  bool            `json:"reset,omitempty"`
	Remove []string        `json:"remove,omitempty"`
	Add    []chatfleet.Ban `json:"add,omitempty"`
	Done   bool            `json:"done,omitempty"`
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
	var m Msg
	if err := json.Unmarshal(body, &m); err != nil {
		return Msg{}, fmt.Errorf("%w: %v", ErrFrame, err)
	}
	if m.Type == "" {
		return Msg{}, fmt.Errorf("%w: no type", ErrFrame)
	}
	return m, nil
}
