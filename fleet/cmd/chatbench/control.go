package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// control measures the chatserver API's create and list: n creates, 4 at a
// time, then GET /api/v1/rooms, 8 at a time, for d (at most 50,000 calls),
// with the n rooms listed; the rooms are closed after. Then, if withStack is
// set, the control API of the local stack (functions/api): stackCreates
// creates (quick: 40) from 8 callers, then listing and token issue with
// 1,000 open rooms in the store, for d each (controlAPI).
func (b *bench) control(ctx context.Context, n int, d time.Duration, withStack bool) error {
	if err := b.hostAPI(ctx, n, d); err != nil {
		return err
	}
	if !withStack {
		return nil
	}
	creates := stackCreates
	if b.quick {
		creates = 40
	}
	if err := b.controlAPI(ctx, b.serverBin, creates, d); err != nil {
		b.res.add(row{Scenario: "control", Case: "control API (local stack)", Detail: "not measured: " + err.Error()})
		return err
	}
	return nil
}

// stackCreates is how many rooms the full run creates through the control
// API: enough for a p99.
const stackCreates = 200

// hostAPI measures the chatserver's own API, which the control API calls.
func (b *bench) hostAPI(ctx context.Context, n int, d time.Duration) error {
	prefix := "ctl-" + randHex(3)
	var mu sync.Mutex
	var created []string
	defer func() { b.closeRooms(created) }()

	meter := startCPU(b.srv.cmd.Process.Pid)
	lat, wall, err := hammer(ctx, 4, n, time.Minute, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		if _, err := b.srv.createRoom(ctx, name); err != nil {
			return err
		}
		mu.Lock()
		created = append(created, name)
		mu.Unlock()
		return nil
	})
	_, masterCPU, genCPU := meter.stop()
	if err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.res.add(row{Scenario: "control", Case: "chatserver create (4 conc.)", Value: float64(len(lat)) / wall.Seconds(), Unit: "req/s",
		P50ms: ms(percentile(lat, 0.5)), P99ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		WallS: wall.Seconds(), RoomCPUS: masterCPU.Seconds(), GenCPUS: genCPU.Seconds(),
		Detail: fmt.Sprintf("%d rooms, POST /api/v1/room/{name} on one chatserver; room CPU column: the master", len(lat))})

	meter = startCPU(b.srv.cmd.Process.Pid)
	lat, wall, err = hammer(ctx, 8, 50000, d, func(ctx context.Context, _ int) error {
		_, err := b.srv.api.Rooms(ctx)
		return err
	})
	_, masterCPU, genCPU = meter.stop()
	if err != nil {
		return err
	}
	b.res.add(row{Scenario: "control", Case: fmt.Sprintf("chatserver list, %d rooms (8 conc.)", n), Value: float64(len(lat)) / wall.Seconds(), Unit: "req/s",
		P50ms: ms(percentile(lat, 0.5)), P99ms: ms(percentile(lat, 0.99)), MaxMs: ms(percentile(lat, 1)),
		WallS: wall.Seconds(), RoomCPUS: masterCPU.Seconds(), GenCPUS: genCPU.Seconds(),
		Detail: fmt.Sprintf("%d calls; room CPU column: the master", len(lat))})
	b.logf("control: create %.1f req/s p99 %.1f ms; list %.0f req/s", b.res.Rows[len(b.res.Rows)-2].Value, b.res.Rows[len(b.res.Rows)-2].P99ms, b.res.Rows[len(b.res.Rows)-1].Value)
	return nil
}

// hammer calls f from conc goroutines until max calls were made or d has
// passed, and returns each call's latency and the wall time. The first error
// stops it.
func hammer(ctx context.Context, conc, max int, d time.Duration, f func(ctx context.Context, i int) error) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= max {
					break
				}
				t0 := time.Now()
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, time.Since(start), firstErr
}
