package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// spares returns the PIDs of h's spare room processes: its children started
// with -spare, but for the given rooms (spares that became rooms).
func (h *host) spares(rooms ...roomInfo) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("\x00room\x00")) || !bytes.HasSuffix(b, []byte("\x00-spare\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if parent(pid) == h.Proc.Cmd.Process.Pid && !slices.ContainsFunc(rooms, func(r roomInfo) bool { return r.PID == pid }) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parent returns the parent PID of pid, 0 if it is gone.
func parent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// oneSpare waits until h has exactly one spare other than not, and returns it.
func (h *host) oneSpare(not int) int {
	h.t.Helper()
	var pid int
	testutil.Eventually(h.t, 10*time.Second, func() error {
		sp := h.spares(h.rooms()...)
		if len(sp) != 1 || sp[0] == not {
			return fmt.Errorf("spares %v (not %d), want one new", sp, not)
		}
		if v := h.metric("chatserver_room_spares"); v != 1 {
			return fmt.Errorf("chatserver_room_spares = %v", v)
		}
		pid = sp[0]
		return nil
	})
	return pid
}

// TestSparesBecomeRooms runs a host with one spare room process: a create
// turns the spare into the room (with the options asked for), a new spare
// replaces it, a spare that dies is replaced too, and a shutdown ends them.
func TestSparesBecomeRooms(t *testing.T) {
	h := startHost(t, "ROOM_SPARES=1")
	sp := h.oneSpare(0)

	port := h.createWith("open", hostapi.RoomOptions{AllowAnonymous: true})
	rs := h.rooms()
	if len(rs) != 1 || rs[0].PID != sp || rs[0].Port != port || port != h.RoomMin {
		t.Fatalf("rooms %+v: want room open in spare %d on the lowest port %d", rs, sp, h.RoomMin)
	}
	if err := roomAnswers(port, "open"); err != nil {
		t.Fatal(err)
	}
	// The assigned options hold: an anonymous viewer is let in and chats.
	ws := testutil.DialRoom(t, fmt.Sprintf("ws://127.0.0.1:%d", port), "", -1)
	if w := ws.Next(protocol.TypeWelcome, 5*time.Second); w.Room != "open" {
		t.Fatalf("welcome for room %q", w.Room)
	}
	prod := join(t, port, "open", "ada", chatfleet.RoleProducer)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "from a spare"})
	if m := ws.Next(protocol.TypeChat, 5*time.Second); m.Text != "from a spare" {
		t.Fatalf("chat %q", m.Text)
	}

	sp2 := h.oneSpare(sp)
	// A room created without options in the next spare refuses anonymous viewers.
	closedPort := h.create("closed")
	for _, r := range h.rooms() {
		if r.Name == "closed" && (r.PID != sp2 || r.Port != closedPort) {
			t.Fatalf("room %+v: want it in spare %d", r, sp2)
		}
	}
	if _, resp, err := testutil.TryDialRoom(fmt.Sprintf("ws://127.0.0.1:%d", closedPort), "", -1); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("anonymous join of a room without allowAnonymous: err %v, resp %v", err, resp)
	}

	// A spare that dies is replaced.
	sp3 := h.oneSpare(sp2)
	syscall.Kill(sp3, syscall.SIGKILL)
	sp4 := h.oneSpare(sp3)

	// A shutdown ends the spares with the rooms.
	h.Proc.Signal(syscall.SIGTERM)
	h.Proc.Wait(t, 20*time.Second)
	if code := h.Proc.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if alive(sp4) {
		t.Errorf("spare %d still runs after the shutdown", sp4)
	}
}

// TestSparesEndWithTheirMaster kills the master: its spares, which no master
// will come back for, exit, while its rooms keep serving; the next master
// re-adopts a room that was a spare and starts spares of its own.
func TestSparesEndWithTheirMaster(t *testing.T) {
	h := startHost(t, "ROOM_SPARES=2")
	var spares []int
	testutil.Eventually(t, 10*time.Second, func() error {
		if spares = h.spares(); len(spares) != 2 {
			return fmt.Errorf("spares %v, want 2", spares)
		}
		return nil
	})
	port := h.create("stays")
	room := h.rooms()[0]
	if !slices.Contains(spares, room.PID) {
		t.Fatalf("room pid %d, want one of the spares %v", room.PID, spares)
	}
	h.Proc.Signal(syscall.SIGKILL)
	h.Proc.Wait(t, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, pid := range spares {
			if pid != room.PID && alive(pid) {
				return fmt.Errorf("spare %d still runs", pid)
			}
		}
		return nil
	})
	if err := roomAnswers(port, "stays"); err != nil {
		t.Fatal(err)
	}
	h.Start()
	testutil.Eventually(t, 5*time.Second, func() error {
		if rs := h.rooms(); len(rs) != 1 || rs[0].PID != room.PID || rs[0].Port != port {
			return fmt.Errorf("rooms %+v, want %+v re-adopted", rs, room)
		}
		if sp := h.spares(room); len(sp) != 2 {
			return fmt.Errorf("spares %v, want 2", sp)
		}
		return nil
	})
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !bytes.Contains(b, []byte(") Z "))
}
