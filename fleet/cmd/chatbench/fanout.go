package main

import (
	"context"
	"fmt"
	"time"
)

// maxP99ms is the ceiling's latency bound: the highest rate passes with no
// loss and p99 under it.
const maxP99ms = 100

// fanout runs the fan-out scenario for n viewers in one room: each fixed rate
// b.reps times, then the ladder of rates until one fails (the ceiling is the
// highest that passed, the fixed ones included). At n = 10,000 it also
// measures the room's RSS per idle connection.
func (b *bench) fanout(ctx context.Context, n int, fixed, ladder []float64) error {
	name := fmt.Sprintf("fan%d-%s", n, randHex(3))
	port, err := b.srv.createRoom(ctx, name)
	if err != nil {
		return err
	}
	defer b.srv.closeRoom(context.Background(), name)
	pid, err := b.srv.roomPID(ctx, name)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // let the new process settle before its baseline
	rss0, err := procRSS(pid)
	if err != nil {
		return err
	}
	prod, err := connectProducer(ctx, b.src, b.iss, name, port, "producer-"+name)
	if err != nil {
		return err
	}
	defer prod.close()
	c0 := startCPU(pid)
	aud, err := connectAudience(ctx, b.src, b.iss, b.rec, connectOpts{
		room: name, port: port, n: n, prefix: name + "-v", rate: 2500, workers: 32, timeout: 90 * time.Second,
	})
	if err != nil {
		return err
	}
	defer aud.close()
	wall, roomCPU, genCPU := c0.stop()
	connected := time.Now()
	b.logf("N=%d: connected in %.1fs (room CPU %.1fs, generator CPU %.1fs)", n, wall.Seconds(), roomCPU.Seconds(), genCPU.Seconds())

	// Idle: let the joins' broadcasts and the count settle, then weigh.
	b.settle(pid, 3*time.Second)
	if n >= 10000 {
		// Idle means idle for a while: weigh 5 s after the last connect, once
		// the room has given back what the connect burst left behind.
		time.Sleep(time.Until(connected.Add(5 * time.Second)))
		prof := ""
		if b.pprofDir != "" {
			prof = fmt.Sprintf("idle-n%d", n)
			b.profileStart(pid)
			time.Sleep(time.Second)
		}
		rssN, err := procRSS(pid)
		if err != nil {
			return err
		}
		if prof != "" {
			prof = b.profileStop(pid, prof)
		}
		per := float64(rssN-rss0) / float64(n) // the producer's connection is in rssN too: 1 in 10,000
		b.res.add(row{Scenario: "memory", Case: fmt.Sprintf("N=%d idle", n), Viewers: n,
			Value: per / 1024, Unit: "KiB/conn", Detail: fmt.Sprintf("RSS %.1f MiB with %d conns, %.1f MiB with none", mib(rssN), n+1, mib(rss0)),
			Profile: prof})
		b.logf("N=%d: RSS %.1f MiB idle vs %.1f MiB empty: %.2f KiB per connection", n, mib(rssN), mib(rss0), per/1024)
	}

	best := 0.0
	pass := func(r float64, s stepResult) {
		if ok, _ := s.ok(maxP99ms); ok && r > best {
			best = r
		}
	}
	for _, r := range fixed {
		var reps []stepResult
		for i := range b.reps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			prof := ""
			if b.pprofDir != "" && i == 0 {
				prof = fmt.Sprintf("fanout-n%d-r%.0f", n, r)
			}
			s := b.runStep(aud, prod, pid, r, b.stepDur, prof)
			b.logf("%s", s.summary())
			reps = append(reps, s)
			pass(r, s)
			if aud.live() == 0 {
				return fmt.Errorf("N=%d: every viewer was dropped", n)
			}
		}
		b.res.addSteps("fanout", fmt.Sprintf("N=%d fixed %.0f/s", n, r), reps)
		b.settle(pid, time.Second)
	}
	for _, r := range ladder {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s := b.runStep(aud, prod, pid, r, b.stepDur, "")
		b.logf("%s", s.summary())
		b.res.addSteps("ceiling", fmt.Sprintf("N=%d step %.0f/s", n, r), []stepResult{s})
		ok, _ := s.ok(maxP99ms)
		pass(r, s)
		if !ok || aud.live() == 0 {
			break
		}
		b.settle(pid, time.Second)
	}
	if len(ladder) > 0 {
		b.res.Ceilings[fmt.Sprint(n)] = best
		b.res.add(row{Scenario: "ceiling", Case: fmt.Sprintf("N=%d ceiling", n), Viewers: n, Value: best, Unit: "msg/s",
			Detail: fmt.Sprintf("highest rate with no loss and p99 < %d ms (room limit 2000/s)", maxP99ms)})
	}
	return nil
}

// settle waits up to d for the room process to go quiet (under 5 % of a core
// over 200 ms), so that one step's backlog does not weigh on the next.
func (b *bench) settle(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c0, _ := procCPU(pid)
		time.Sleep(200 * time.Millisecond)
		c1, _ := procCPU(pid)
		if c1-c0 <= 10*time.Millisecond {
			return
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
