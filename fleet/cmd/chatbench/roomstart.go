package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
)

// startEvery paces room creates: a host gets rooms at a human rate (people
// going live), far below 10 a second, and refills its spare room processes
// (ROOM_SPARES) in ~50 ms after each.
const startEvery = 100 * time.Millisecond

// roomStarts creates n rooms one after another, one every startEvery, on the
// chatserver and times,
// for each, the create call alone and the create call until the room's
// welcome arrived on a WebSocket (the room accepting clients). The rooms are
// closed after.
func (b *bench) roomStarts(ctx context.Context, n int) error {
	prefix := "start-" + randHex(3)
	var created []string
	defer func() { b.closeRooms(created) }()
	d := b.src.wsDialer()
	var toCreated, toWelcome []time.Duration
	meter := startCPU(b.srv.cmd.Process.Pid)
	next := time.Now()
	for i := range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(time.Until(next))
		name := fmt.Sprintf("%s-%03d", prefix, i)
		t0 := time.Now()
		next = t0.Add(startEvery)
		port, err := b.srv.createRoom(ctx, name)
		if err != nil {
			return err
		}
		t1 := time.Now()
		created = append(created, name)
		ws, err := dialRoom(ctx, d, b.iss, name, port, "starter", chatfleet.RoleViewer)
		if err != nil {
			return err
		}
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, frame, err := ws.ReadMessage()
		t2 := time.Now()
		ws.Close()
		if err != nil {
			return fmt.Errorf("room %s: no welcome: %w", name, err)
		}
		if m, ok := parseMsg(firstLine(frame)); !ok || m.typ != "welcome" {
			return fmt.Errorf("room %s: first message is not a welcome: %.80q", name, frame)
		}
		toCreated = append(toCreated, t1.Sub(t0))
		toWelcome = append(toWelcome, t2.Sub(t0))
	}
	wall, masterCPU, genCPU := meter.stop()
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.res.add(row{Scenario: "roomstart", Case: fmt.Sprintf("%d rooms: create call", n),
		P50ms: ms(percentile(toCreated, 0.5)), P99ms: ms(percentile(toCreated, 0.99)), MaxMs: ms(percentile(toCreated, 1)),
		WallS: wall.Seconds(), GenCPUS: genCPU.Seconds()})
	b.res.add(row{Scenario: "roomstart", Case: fmt.Sprintf("%d rooms: create to welcome", n),
		P50ms: ms(percentile(toWelcome, 0.5)), P99ms: ms(percentile(toWelcome, 0.99)), MaxMs: ms(percentile(toWelcome, 1)),
		WallS: wall.Seconds(), GenCPUS: genCPU.Seconds(),
		Detail: fmt.Sprintf("POST /api/v1/room/{name} until the room's welcome on /ws; master CPU %.2fs", masterCPU.Seconds())})
	b.logf("room start (%d): create p50 %.1f p99 %.1f ms; to welcome p50 %.1f p99 %.1f ms", n,
		ms(percentile(toCreated, 0.5)), ms(percentile(toCreated, 0.99)), ms(percentile(toWelcome, 0.5)), ms(percentile(toWelcome, 0.99)))
	return nil
}

// firstLine returns the first message of a server frame.
func firstLine(frame []byte) []byte {
	for i, c := range frame {
		if c == '\n' {
			return frame[:i]
		}
	}
	return frame
}

// closeRooms closes rooms through the API, 8 at a time, bounded in time.
func (b *bench) closeRooms(names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.srv.closeRoom(ctx, n); err != nil {
				b.logf("close %s: %v", n, err)
			}
		}()
	}
	wg.Wait()
}
