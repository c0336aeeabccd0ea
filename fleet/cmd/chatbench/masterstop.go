package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// masterStop measures what a master that stops reading costs a room (issue
// 18): n viewers at each rate, b.reps steps with the master running, then
// b.reps steps with it stopped (SIGSTOP) for the step and continued after.
// A stopped master's socket fills within the first second of a step; the
// room must go on serving at the same latency.
func (b *bench) masterStop(ctx context.Context, n int, rates []float64) error {
	name := fmt.Sprintf("mstop%d-%s", n, randHex(3))
	port, err := b.srv.createRoom(ctx, name)
	if err != nil {
		return err
	}
	defer b.srv.closeRoom(context.Background(), name)
	pid, err := b.srv.roomPID(ctx, name)
	if err != nil {
		return err
	}
	prod, err := connectProducer(ctx, b.src, b.iss, name, port, "producer-"+name)
	if err != nil {
		return err
	}
	defer prod.close()
	aud, err := connectAudience(ctx, b.src, b.iss, b.rec, connectOpts{
		room: name, port: port, n: n, prefix: name + "-v", rate: 2500, workers: 32, timeout: 90 * time.Second,
	})
	if err != nil {
		return err
	}
	defer aud.close()
	b.settle(pid, 3*time.Second)
	master := b.srv.cmd.Process.Pid
	defer syscall.Kill(master, syscall.SIGCONT) // whatever happens
	for _, r := range rates {
		for _, stopped := range []bool{false, true} {
			state := "running"
			if stopped {
				state = "stopped"
			}
			var reps []stepResult
			for range b.reps {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if stopped {
					syscall.Kill(master, syscall.SIGSTOP)
				}
				s := b.runStep(aud, prod, pid, r, b.stepDur, "")
				if stopped {
					syscall.Kill(master, syscall.SIGCONT)
				}
				b.logf("master %s: %s", state, s.summary())
				reps = append(reps, s)
				if aud.live() == 0 {
					return fmt.Errorf("N=%d: every viewer was dropped", n)
				}
				// The master catches up (and connects to the room again if
				// the room gave up on it) before the next step.
				if err := b.srv.waitStatsSeq(ctx, name, prod.maxAck.Load(), 20*time.Second); err != nil {
					return err
				}
				b.settle(pid, time.Second)
			}
			b.res.addSteps("masterstop", fmt.Sprintf("N=%d %.0f/s master %s", n, r, state), reps)
		}
	}
	return nil
}

// waitStatsSeq waits until the master reports room name's seq at least
// seq: it has the room's stats sent after that event, so it is connected to
// the room and has its events up to there.
func (s *server) waitStatsSeq(ctx context.Context, name string, seq int64, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		rs, err := s.api.AdminRooms(ctx)
		for _, r := range rs {
			if r.Name == name && r.Stats.Seq >= seq {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the master does not report room %s at seq %d after %v (%v)", name, seq, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
