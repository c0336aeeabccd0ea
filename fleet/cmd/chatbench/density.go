package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// densityCreators is how many creates the density scenario has in flight:
// a host filling up from a control API with a few callers.
const densityCreators = 4

// density runs n rooms on the one chatserver, each with perRoom viewers and a
// producer at 1 msg/s: the time to create them, each room process's PSS
// idle and loaded, the master's CPU idle and under load, the host's CPU per
// delivery, p99 and loss.
func (b *bench) density(ctx context.Context, n, perRoom int, idleFor, loadFor time.Duration) error {
	prefix := "dense-" + randHex(3)
	names := make([]string, n)
	ports := make([]int, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	var created []string
	var cmu sync.Mutex
	defer func() { b.closeRooms(created) }()
	masterPID := b.srv.cmd.Process.Pid

	// Create: densityCreators callers, as fast as the host answers.
	b.waitQuiet()
	mem0 := memUsed()
	took := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	mc0, _ := procCPU(masterPID)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range densityCreators {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil || firstErr.Load() != nil {
					return
				}
				c0 := time.Now()
				port, err := b.srv.createRoom(ctx, names[i])
				if err != nil {
					err = fmt.Errorf("create room %d of %d: %w", i+1, n, err)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				took[i], ports[i] = time.Since(c0), port
				cmu.Lock()
				created = append(created, names[i])
				cmu.Unlock()
			}
		})
	}
	wg.Wait()
	createWall := time.Since(t0)
	mc1, _ := procCPU(masterPID)
	if p := firstErr.Load(); p != nil {
		return *p
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.res.add(row{Scenario: "density", Case: fmt.Sprintf("%d rooms: create, %d callers", n, densityCreators),
		P50ms: ms(percentile(took, 0.5)), P99ms: ms(percentile(took, 0.99)), MaxMs: ms(percentile(took, 1)),
		WallS: createWall.Seconds(), Value: float64(n) / createWall.Seconds(), Unit: "creates/s",
		Detail: fmt.Sprintf("all %d in %.1f s; master CPU %.2f s", n, createWall.Seconds(), (mc1 - mc0).Seconds())})
	b.logf("density: %d rooms created in %.1fs (p50 %.1f p99 %.1f ms per create)", n, createWall.Seconds(), ms(percentile(took, 0.5)), ms(percentile(took, 0.99)))

	pids, err := b.roomPIDs(ctx, names)
	if err != nil {
		return err
	}

	// Idle: let the starts settle, then weigh the rooms and the master.
	time.Sleep(3 * time.Second)
	b.waitQuiet()
	b.densityPSS(pids, fmt.Sprintf("%d rooms idle", n))
	// The machine's memory in use grew by the rooms' own pages and by what the
	// kernel holds for each process (page tables, thread stacks, sockets);
	// other work on the machine moves it too.
	grew := memUsed() - mem0
	b.res.add(row{Scenario: "density", Case: fmt.Sprintf("%d rooms idle: host memory per room", n), Value: mib(grew) / float64(n), Unit: "MiB",
		Detail: fmt.Sprintf("MemTotal-MemAvailable grew %.0f MiB from before the creates to idle (other work on the machine included)", mib(grew))})
	b.logf("density idle: host memory in use grew %.0f MiB, %.2f MiB per room", mib(grew), mib(grew)/float64(n))
	idle := b.hostCPU(masterPID, pids, idleFor, nil)
	b.res.add(row{Scenario: "density", Case: fmt.Sprintf("%d rooms idle: master CPU", n), WallS: idle.wall.Seconds(),
		Value: 100 * idle.master.Seconds() / idle.wall.Seconds(), Unit: "% of a core",
		Detail: fmt.Sprintf("over %.1f s: master %.2f s, all rooms %.2f s (%.2f %% of a core each), master fds %d",
			idle.wall.Seconds(), idle.master.Seconds(), idle.rooms.Seconds(), 100*idle.rooms.Seconds()/idle.wall.Seconds()/float64(n), procFDs(masterPID))})
	b.logf("density idle: master %.2f%% of a core, rooms %.2f s in %.1f s", 100*idle.master.Seconds()/idle.wall.Seconds(), idle.rooms.Seconds(), idle.wall.Seconds())

	// Load: perRoom viewers and a producer per room.
	auds := make([]*audience, n)
	prods := make([]*producer, n)
	defer func() {
		for i := range n {
			if auds[i] != nil {
				auds[i].close()
			}
			if prods[i] != nil {
				prods[i].close()
			}
		}
	}()
	t0 = time.Now()
	next.Store(0)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil || firstErr.Load() != nil {
					return
				}
				p, err := connectProducer(ctx, b.src, b.iss, names[i], ports[i], "producer-"+names[i])
				if err == nil {
					prods[i] = p
					auds[i], err = connectAudience(ctx, b.src, b.iss, b.rec, connectOpts{
						room: names[i], port: ports[i], n: perRoom, prefix: names[i] + "-v",
						rate: 2500, workers: perRoom, timeout: 60 * time.Second,
					})
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	b.logf("density: %d viewers and %d producers connected in %.1fs", n*perRoom, n, time.Since(t0).Seconds())
	time.Sleep(3 * time.Second) // the joins' broadcasts and the trims
	b.waitQuiet()

	step, rec := b.rec.newStep()
	var lost0 int64
	for _, a := range auds {
		l, _ := a.counts()
		lost0 += l
	}
	var sent, sendErrs atomic.Int64
	var missing int64 // events some viewer never received
	load := b.hostCPU(masterPID, pids, 0, func() {
		// Each producer at 1 msg/s, their starts spread over the second so
		// that the rooms do not all fan out at the same instant.
		var pwg sync.WaitGroup
		for i, p := range prods {
			pwg.Go(func() {
				time.Sleep(time.Duration(i) * time.Second / time.Duration(n))
				k, _, err := p.send(step, 1, loadFor)
				sent.Add(k)
				if err != nil {
					sendErrs.Add(1)
				}
			})
		}
		pwg.Wait()
		for i, p := range prods {
			p.waitAnswered(p.n, 15*time.Second)
			missing += auds[i].waitCaughtUp(p.maxAck.Load(), 15*time.Second)
		}
	})
	var lost1, dropped, refused int64
	for i, a := range auds {
		l, _ := a.counts()
		lost1 += l
		dropped += a.closed.Load()
		refused += prods[i].refused.Load()
	}
	deliveries, frames, _ := rec.deliveries()
	lat := rec.latencies()
	hostCPU := load.master + load.rooms
	s := stepResult{Viewers: n * perRoom, Rate: float64(n), Sent: sent.Load(), SentRate: float64(sent.Load()) / loadFor.Seconds(),
		Refused: refused, Deliveries: deliveries, Frames: frames, DelivPerS: float64(deliveries) / load.wall.Seconds(),
		P50ms: float64(lat.quantile(0.5)) / 1000, P99ms: float64(lat.quantile(0.99)) / 1000, P999ms: float64(lat.quantile(0.999)) / 1000,
		MaxMs: float64(lat.max()) / 1000, Lost: lost1 - lost0 + missing, Dropped: int(dropped),
		WallS: load.wall.Seconds(), RoomCPUS: hostCPU.Seconds(), GenCPUS: load.gen.Seconds(), OtherCPUS: load.others.Seconds()}
	if deliveries > 0 {
		s.CPUPerDlvU = hostCPU.Seconds() * 1e6 / float64(deliveries)
		s.MsgsPerFrm = float64(deliveries) / float64(frames)
		s.CPUPerFrmU = hostCPU.Seconds() * 1e6 / float64(frames)
	}
	if sendErrs.Load() > 0 {
		s.Err = fmt.Sprintf("%d producers failed to send", sendErrs.Load())
	}
	b.logf("density load: %s", s.summary())
	b.res.addSteps("density", fmt.Sprintf("%d rooms × %d viewers, 1 msg/s each", n, perRoom), []stepResult{s})
	if x := b.res.find("density", fmt.Sprintf("%d rooms × %d viewers, 1 msg/s each", n, perRoom)); x != nil {
		x.Detail = fmt.Sprintf("room CPU column: all rooms + master (%.2f + %.2f s), per delivery in µs/delivery", load.rooms.Seconds(), load.master.Seconds())
	}
	b.res.add(row{Scenario: "density", Case: fmt.Sprintf("%d rooms loaded: master CPU", n), WallS: load.wall.Seconds(),
		Value: 100 * load.master.Seconds() / load.wall.Seconds(), Unit: "% of a core",
		Detail: fmt.Sprintf("over %.1f s of load: master %.2f s", load.wall.Seconds(), load.master.Seconds())})
	b.densityPSS(pids, fmt.Sprintf("%d rooms loaded", n))
	return nil
}

// roomPIDs returns the process ids of the named rooms, from one admin listing.
func (b *bench) roomPIDs(ctx context.Context, names []string) ([]int, error) {
	rs, err := b.srv.api.AdminRooms(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for _, r := range rs {
		byName[r.Name] = r.PID
	}
	pids := make([]int, len(names))
	for i, n := range names {
		if pids[i] = byName[n]; pids[i] <= 0 {
			return nil, fmt.Errorf("room %s not listed with a pid", n)
		}
	}
	return pids, nil
}

// densityPSS adds a row of the rooms' PSS: median and max, with the
// anonymous part and RSS for comparison.
func (b *bench) densityPSS(pids []int, name string) {
	var pss, anon, rss []float64
	for _, pid := range pids {
		p, a, err := procPSS(pid)
		if err != nil {
			continue
		}
		r, _ := procRSS(pid)
		pss, anon, rss = append(pss, mib(p)), append(anon, mib(a)), append(rss, mib(r))
	}
	if len(pss) == 0 {
		b.logf("density: no room's PSS readable")
		return
	}
	b.res.add(row{Scenario: "density", Case: name + ": PSS per room", Value: median(pss), Unit: "MiB",
		Detail: fmt.Sprintf("median of %d rooms; max %.2f MiB; anonymous %.2f MiB; RSS %.2f MiB; sum of PSS %.0f MiB",
			len(pss), slices.Max(pss), median(anon), median(rss), sum(pss))})
	b.logf("density %s: PSS median %.2f max %.2f MiB (anon %.2f, RSS %.2f), sum %.0f MiB", name, median(pss), slices.Max(pss), median(anon), median(rss), sum(pss))
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// hostUse is the CPU a host's processes used over an interval.
type hostUse struct {
	wall, master, rooms, gen, others time.Duration
}

// hostCPU measures the CPU of the master and the rooms (pids) while work
// runs, or for d if work is nil.
func (b *bench) hostCPU(master int, pids []int, d time.Duration, work func()) hostUse {
	cpu := func() (m, r time.Duration) {
		m, _ = procRuntime(master)
		for _, p := range pids {
			c, _ := procRuntime(p)
			r += c
		}
		return m, r
	}
	m0, r0 := cpu()
	meter := startCPU(master)
	if work != nil {
		work()
	} else {
		time.Sleep(d)
	}
	wall, _, gen := meter.stop()
	busy := meter.machineBusy()
	m1, r1 := cpu()
	u := hostUse{wall: wall, master: m1 - m0, rooms: r1 - r0, gen: gen}
	u.others = max(0, busy-u.master-u.rooms-u.gen)
	return u
}

// waitQuiet waits, up to b.quietWait, for the rest of the machine to go idle.
func (b *bench) waitQuiet() {
	if b.quietWait > 0 {
		if w, cores := waitQuiet(b.quietWait); w > time.Second {
			b.logf("waited %.1fs for the machine to quieten (%.2f cores busy)", w.Seconds(), cores)
		}
	}
}
