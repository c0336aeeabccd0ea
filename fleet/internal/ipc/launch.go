package ipc

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
)

// Version is the master–room protocol this release speaks, carried by Hello
// (the master's) and Ready (the room's); a peer that sends none speaks 1.
// MinVersion is the oldest a master adopts rooms of. Each side speaks the
// older of the two versions: a change to the protocol is made so that the
// previous version still works (a new field, ignored by the older side, or a
// capability flag such as Ready's BanSnapshot), and Version counts it.
//
//	1: release 1.0.0 (no version in Hello and Ready)
//	2: release 1.1.0: Hello and Ready carry Proto; nothing else changed
//	3: release 1.2.0: Procs (master to room: the cores it may use) and
//	   Stats' Procs; a master sends Procs only to rooms of 3 or more
const (
	Version    = 3
	MinVersion = 1
)

// ProtoOf returns the protocol version a Hello or Ready says its sender speaks.
func ProtoOf(m Msg) int { return max(m.Proto, 1) }

// CheckProto reports why a master cannot speak with a room of protocol v,
// nil if it can.
func CheckProto(v int) error {
	if v < MinVersion {
		return fmt.Errorf("room speaks master–room protocol %d; this master speaks %d to %d", v, MinVersion, Version)
	}
	return nil
}

// File descriptors a room process inherits from its master.
const (
	FDListener  = 3 // a started room: its TCP listener
	FDControl   = 4 // a started room: its control socket's listener
	FDSpareLink = 3 // a spare: its socket pair with the master
)

// Exit codes of a room process, so the master can tell a room that ended on
// purpose from one that crashed.
const (
	ExitClosed   = 0 // the room ended: closed, idle, drained
	ExitUsage    = 2 // bad arguments or environment
	ExitSetup    = 3 // inherited sockets unusable
	ExitOrphaned = 4 // no master came back within the orphan grace; clients were drained
)

// ConnSettings holds the connection settings every room of a host gets; zero fields
// leave the room's defaults (package room).
type ConnSettings struct {
	PongWait       time.Duration // read deadline, extended by every pong and message
	WriteWait      time.Duration // deadline of one write
	SendQueueBytes int           // bytes queued for one connection before it is dropped
}

// Launch is a room process's command line: `chatserver room` and the flags
// Args writes and ParseLaunch reads. A started room has Name and Port; a
// spare (Spare) has neither and gets the room, with Options, in an Assign
// message.
type Launch struct {
	Name        string
	Port        int
	Spare       bool
	StatsEvery  time.Duration // how often the room reports stats; default 2s
	OrphanGrace time.Duration // how long it waits for a master before draining; default 60s
	Conn        ConnSettings
	Options     Assignment
}

// Defaults of the launch settings a command line leaves out.
const (
	DefaultStatsEvery  = 2 * time.Second
	DefaultOrphanGrace = 60 * time.Second
)

// Args returns l as arguments of the chatserver binary. -port comes before
// the room's options and -spare last: masters of release 1.0.0 recognise
// their rooms by those (IsRoomCmdline), so a rollback still adopts them.
// -role is a new optional flag after them: a plain room's command line is
// unchanged, so Version does not count it (an older room binary never gets
// one: the master runs its own binary).
func (l Launch) Args() []string {
	a := []string{"room"}
	if l.StatsEvery > 0 {
		a = append(a, "-stats-every", l.StatsEvery.String())
	}
	if l.OrphanGrace > 0 {
		a = append(a, "-orphan-grace", l.OrphanGrace.String())
	}
	if l.Conn.PongWait > 0 {
		a = append(a, "-pong-wait", l.Conn.PongWait.String())
	}
	if l.Conn.WriteWait > 0 {
		a = append(a, "-write-wait", l.Conn.WriteWait.String())
	}
	if l.Conn.SendQueueBytes > 0 {
		a = append(a, "-send-queue-bytes", strconv.Itoa(l.Conn.SendQueueBytes))
	}
	if l.Spare {
		return append(a, "-spare")
	}
	a = append(a, "-port", strconv.Itoa(l.Port), "-name", l.Name)
	o := l.Options
	if o.Instance != "" {
		a = append(a, "-instance", o.Instance)
	}
	if o.Owner != "" {
		a = append(a, "-owner", o.Owner)
	}
	if o.AllowAnonymous {
		a = append(a, "-allow-anonymous")
	}
	if o.HistorySize > 0 {
		a = append(a, "-history", strconv.Itoa(o.HistorySize))
	}
	if o.Paid {
		a = append(a, "-paid")
	}
	if o.HLSURL != "" {
		a = append(a, "-hls", o.HLSURL)
	}
	if o.Role != "" {
		a = append(a, "-role", o.Role)
	}
	return a
}

// ParseLaunch reads the arguments after "room". It refuses a command line
// that is neither a spare nor a valid room name with a port.
func ParseLaunch(args []string) (Launch, error) {
	var l Launch
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&l.Name, "name", "", "room name")
	fs.IntVar(&l.Port, "port", 0, "room port (the listener is fd 3)")
	fs.BoolVar(&l.Spare, "spare", false, "start ahead of need: the master gives the room later (fd 3 is a socket pair with it)")
	fs.DurationVar(&l.StatsEvery, "stats-every", DefaultStatsEvery, "how often to report stats to the master")
	fs.DurationVar(&l.OrphanGrace, "orphan-grace", DefaultOrphanGrace, "how long to wait for a master before draining and exiting")
	fs.DurationVar(&l.Conn.PongWait, "pong-wait", 0, "read deadline, extended by every pong and message (0: the room default)")
	fs.DurationVar(&l.Conn.WriteWait, "write-wait", 0, "deadline of one write (0: the room default)")
	fs.IntVar(&l.Conn.SendQueueBytes, "send-queue-bytes", 0, "bytes queued for one connection before it is dropped (0: the room default)")
	o := &l.Options
	fs.StringVar(&o.Instance, "instance", "", "the room's instance id: join tokens must carry it (empty: any)")
	fs.StringVar(&o.Owner, "owner", "", "the owner's user id: the producer, whom moderation never acts on")
	fs.BoolVar(&o.AllowAnonymous, "allow-anonymous", false, "let viewers in without a token")
	fs.IntVar(&o.HistorySize, "history", 0, "messages kept for join and recovery (0: the fleet default)")
	fs.BoolVar(&o.Paid, "paid", false, "the room is paid (entitlement checks)")
	fs.StringVar(&o.HLSURL, "hls", "", "the stream URL given at create: the producer may announce live without one")
	fs.StringVar(&o.Role, "role", "", "the room's part in a room spread over hosts: empty (plain), origin or edge")
	if err := fs.Parse(args); err != nil {
		return Launch{}, err
	}
	if fs.NArg() > 0 {
		return Launch{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	named := l.Name != "" || l.Port != 0
	if l.Spare && named || !l.Spare && (chatfleet.ValidateRoomName(l.Name) != nil || l.Port <= 0) {
		return Launch{}, errors.New("give -name and -port, or -spare")
	}
	if !hostapi.ValidRole(o.Role) {
		return Launch{}, fmt.Errorf("-role %q: want origin or edge", o.Role)
	}
	if l.StatsEvery <= 0 || l.OrphanGrace <= 0 {
		return Launch{}, errors.New("-stats-every and -orphan-grace must be positive")
	}
	return l, nil
}

// IsRoomCmdline reports whether cmdline (the NUL-separated bytes of
// /proc/<pid>/cmdline) is a room process that may serve port: a room started
// on it, or a spare (given the room later). It reads only what every release
// writes, so it also recognises rooms of other releases.
func IsRoomCmdline(cmdline []byte, port int) bool {
	if !bytes.Contains(cmdline, []byte("\x00room\x00")) {
		return false
	}
	return bytes.Contains(cmdline, []byte("\x00-port\x00"+strconv.Itoa(port)+"\x00")) || bytes.HasSuffix(cmdline, []byte("\x00-spare\x00"))
}
