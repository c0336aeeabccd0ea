package ipc

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/hostapi"
)

func TestLaunchRoundTrip(t *testing.T) {
	for _, l := range []Launch{
		{Name: "demo", Port: 34000, StatsEvery: time.Second, OrphanGrace: time.Minute,
			Conn:    ConnSettings{PongWait: 30 * time.Second, WriteWait: 5 * time.Second, SendQueueBytes: 1 << 20},
			Options: Assignment{Instance: "I1", Owner: "producer", AllowAnonymous: true, HistorySize: 50, Paid: true, HLSURL: "https://cdn.example.com/a.m3u8"}},
		{Name: "plain", Port: 1, StatsEvery: DefaultStatsEvery, OrphanGrace: DefaultOrphanGrace},
		{Name: "spread", Port: 2, StatsEvery: DefaultStatsEvery, OrphanGrace: DefaultOrphanGrace, Options: Assignment{Instance: "I2", Role: hostapi.RoleOrigin}},
		{Name: "spread", Port: 3, StatsEvery: DefaultStatsEvery, OrphanGrace: DefaultOrphanGrace, Options: Assignment{Instance: "I2", Role: hostapi.RoleEdge}},
		{Spare: true, StatsEvery: DefaultStatsEvery, OrphanGrace: DefaultOrphanGrace},
	} {
		args := l.Args()
		if args[0] != "room" {
			t.Fatalf("Args = %q: want the room subcommand first", args)
		}
		got, err := ParseLaunch(args[1:])
		if err != nil || !reflect.DeepEqual(got, l) {
			t.Errorf("ParseLaunch(%q) = %+v, %v; want %+v", args, got, err, l)
		}
	}
}

func TestParseLaunchRefuses(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-name", "demo"},
		{"-port", "34000"},
		{"-name", "bad name", "-port", "34000"},
		{"-name", "demo", "-port", "-1"},
		{"-spare", "-name", "demo", "-port", "34000"},
		{"-spare", "extra"},
		{"-spare", "-stats-every", "0s"},
		{"-spare", "-unknown"},
		{"-name", "demo", "-port", "34000", "-role", "relay"},
		{"-name", "demo", "-port", "34000", "-role", "Edge"},
	} {
		if l, err := ParseLaunch(args); err == nil {
			t.Errorf("ParseLaunch(%q) = %+v, want an error", args, l)
		}
	}
}

// TestIsRoomCmdline checks the command lines of release 1.0.0's rooms and
// spares, as its master wrote them, and this release's.
func TestIsRoomCmdline(t *testing.T) {
	cmdline := func(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }
	old := cmdline("/usr/local/bin/chatserver", "room", "-stats-every", "2s", "-orphan-grace", "1m0s", "-pong-wait", "30s",
		"-port", "34007", "-name", "demo", "-instance", "I1", "-owner", "producer")
	oldSpare := cmdline("/usr/local/bin/chatserver", "room", "-stats-every", "2s", "-orphan-grace", "1m0s", "-spare")
	now := cmdline(append([]string{"/usr/local/bin/chatserver"}, Launch{Name: "demo", Port: 34007, StatsEvery: time.Second, OrphanGrace: time.Minute}.Args()...)...)
	edge := cmdline(append([]string{"/usr/local/bin/chatserver"}, Launch{Name: "demo", Port: 34009, StatsEvery: time.Second, OrphanGrace: time.Minute,
		Options: Assignment{Instance: "I1", Role: hostapi.RoleEdge}}.Args()...)...)
	nowSpare := cmdline(append([]string{"/usr/local/bin/chatserver"}, Launch{Spare: true, StatsEvery: time.Second, OrphanGrace: time.Minute}.Args()...)...)
	for _, c := range []struct {
		cmdline []byte
		port    int
		want    bool
	}{
		{old, 34007, true}, {old, 34000, false}, {old, 3400, false},
		{oldSpare, 34000, true}, {now, 34007, true}, {now, 34008, false}, {nowSpare, 34001, true},
		{edge, 34009, true}, {edge, 34007, false},
		{cmdline("/usr/sbin/nginx", "-port", "34007"), 34007, false},
		{cmdline("/usr/local/bin/chatserver", "room", "-name", "x", "-spare", "other"), 34007, false},
	} {
		if got := IsRoomCmdline(c.cmdline, c.port); got != c.want {
			t.Errorf("IsRoomCmdline(%q, %d) = %v, want %v", c.cmdline, c.port, got, c.want)
		}
	}
}

func TestProto(t *testing.T) {
	if ProtoOf(Msg{Type: TypeReady}) != 1 || ProtoOf(Msg{Type: TypeReady, Proto: Version}) != Version {
		t.Fatal("ProtoOf: a message without a version speaks 1")
	}
	if CheckProto(MinVersion) != nil || CheckProto(Version) != nil || CheckProto(Version+1) != nil {
		t.Fatal("CheckProto refuses a version it speaks (a newer room speaks ours)")
	}
	if CheckProto(MinVersion-1) == nil {
		t.Fatal("CheckProto accepts a version older than MinVersion")
	}
}
