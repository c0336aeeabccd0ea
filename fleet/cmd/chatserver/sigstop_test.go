package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// audience is a room's viewers, each read by a goroutine that counts the
// chat messages it gets (their seqs must increase) and notes the room's
// closing notice.
type audience struct {
	chats   []atomic.Int64
	closing []atomic.Bool
	mu      sync.Mutex
	errs    []string
}

// head returns the type and seq of a server message, which Marshal writes
// first, without decoding the rest: 300,000 messages of 1 KB would cost
// the test more than the room.
func head(b []byte) (typ string, seq int64) {
	if i := bytes.Index(b, []byte(`,"ts":`)); i > 0 {
		b = append(b[:i:i], '}')
	}
	var m struct {
		Type string
		Seq  int64
	}
	json.Unmarshal(b, &m)
	return m.Type, m.Seq
}

// watch connects n viewers to the room at url, waits for their welcome and
// reads them until the test ends.
func watch(t *testing.T, url, room string, n int) *audience {
	t.Helper()
	a := &audience{chats: make([]atomic.Int64, n), closing: make([]atomic.Bool, n)}
	fail := func(i int, format string, args ...any) {
		a.mu.Lock()
		a.errs = append(a.errs, fmt.Sprintf("viewer %d: ", i)+fmt.Sprintf(format, args...))
		a.mu.Unlock()
	}
	var welcomed sync.WaitGroup
	welcomed.Add(n)
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		ws, _, err := testutil.TryDialRoom(url, issue(t, room, fmt.Sprintf("v%04d", i), chatfleet.RoleViewer), -1)
		<-sem
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		t.Cleanup(func() { ws.Conn.Close() })
		go func() {
			welcome, last := false, int64(0)
			for {
				_, frame, err := ws.Conn.ReadMessage()
				if err != nil {
					if !welcome {
						fail(i, "no welcome: %v", err)
						welcomed.Done()
					}
					return
				}
				protocol.Split(frame, func(b []byte) {
					switch typ, seq := head(b); typ {
					case protocol.TypeWelcome:
						if !welcome {
							welcome = true
							welcomed.Done()
						}
					case protocol.TypeChat:
						if seq <= last {
							fail(i, "chat seq %d after %d", seq, last)
						}
						last = seq
						a.chats[i].Add(1)
					case protocol.TypeSystem:
						if m, err := protocol.DecodeServer(b); err == nil && m.Kind == protocol.KindClosing {
							a.closing[i].Store(true)
						}
					}
				})
			}
		}()
	}
	welcomed.Wait()
	a.check(t)
	return a
}

// check fails the test if a viewer saw something wrong.
func (a *audience) check(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errs) > 0 {
		t.Fatalf("%d viewers failed, the first: %s", len(a.errs), a.errs[0])
	}
}

// all reports nil once every viewer has want chat messages.
func (a *audience) all(want int64) error {
	for i := range a.chats {
		if got := a.chats[i].Load(); got != want {
			return fmt.Errorf("viewer %d has %d chat messages of %d", i, got, want)
		}
	}
	return nil
}

// stopped reports whether pid is stopped (by SIGSTOP).
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
}

// TestStoppedMasterDoesNotStallTheRoom stops the master (SIGSTOP) under a
// room with 1,000 viewers while the producer sends 300 messages of 1 KB,
// enough to fill the master's socket many times over: every viewer gets
// every message while the master is still stopped (the room never waits for
// it), and the room gives up on the stopped master's connection. Continued,
// the master connects to the room again, ends up with every event in order
// with no gap (the store's event log) and still supervises the room.
func TestStoppedMasterDoesNotStallTheRoom(t *testing.T) {
	const viewers, msgs, batch = 1000, 300, 50
	ctx := context.Background()
	st, storeEnv := startStore(t, "sigstop")
	// ORPHAN_GRACE outlasts the stop however slow the machine: a room that
	// gave up on its master drains after it, which is not what is tested.
	h := startHost(t, append(storeEnv, "MAX_CONNS_PER_IP=0", "SYNC_EVERY=200ms", "ORPHAN_GRACE=10m")...)
	port := h.create("stage")
	url := fmt.Sprintf("ws://127.0.0.1:%d", port)
	a := watch(t, url, "stage", viewers)

	// The producer's acks give the seq of each message.
	prod := join(t, port, "stage", "boss", chatfleet.RoleProducer)
	acks := make(chan int64, msgs)
	prod.Conn.SetReadDeadline(time.Time{}) // join's read had one
	go func() {
		for {
			_, frame, err := prod.Conn.ReadMessage()
			if err != nil {
				return
			}
			protocol.Split(frame, func(b []byte) {
				if typ, seq := head(b); typ == protocol.TypeAck {
					acks <- seq
				}
			})
		}
	}()

	masterPID := h.Proc.Cmd.Process.Pid
	if err := syscall.Kill(masterPID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(masterPID, syscall.SIGCONT) })
	start := time.Now()
	text := strings.Repeat("é", 500) // 1,000 bytes, the longest message allowed
	for sent := 0; sent < msgs; {
		for range batch { // at most 50 KB ahead of the slowest viewer
			prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: text, ClientID: fmt.Sprint(sent)})
			sent++
		}
		testutil.Eventually(t, 60*time.Second, func() error { return a.all(int64(sent)) })
	}
	a.check(t)
	t.Logf("%d messages reached %d viewers in %v with the master stopped", msgs, viewers, time.Since(start).Round(time.Millisecond))
	// The room drops the connection its write to the master timed out on.
	testutil.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(h.Proc.Output(), "write to the master failed; closing its connection") {
			return fmt.Errorf("the room has not given up on the stopped master")
		}
		return nil
	})
	if !stopped(masterPID) {
		t.Fatal("the master is not stopped")
	}
	last := int64(0)
	for range msgs {
		select {
		case seq := <-acks:
			last = max(last, seq)
		case <-time.After(10 * time.Second):
			t.Fatal("the producer did not get an ack for every message")
		}
	}

	if err := syscall.Kill(masterPID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Every event the room sequenced reaches the store, in order, no gap.
	testutil.Eventually(t, 30*time.Second, func() error {
		evs, err := st.Events(ctx, "stage", 0, 100_000)
		if err != nil {
			return err
		}
		for i, ev := range evs {
			if ev.Seq != int64(i+1) {
				return fmt.Errorf("event %d of the store has seq %d: a gap", i, ev.Seq)
			}
		}
		if n := int64(len(evs)); n < last {
			return fmt.Errorf("the store has events up to seq %d, want %d", n, last)
		}
		return nil
	})
	// The master supervises the room still: an admin close reaches it.
	if status, body := testutil.Do(t, "DELETE", h.Admin+"/api/v1/rooms/stage", adminKey, `{"reason":"show's over"}`); status != 200 {
		t.Fatalf("close: %d %s", status, body)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for i := range a.closing {
			if !a.closing[i].Load() {
				return fmt.Errorf("viewer %d has no closing notice", i)
			}
		}
		return nil
	})
	a.check(t)
}
