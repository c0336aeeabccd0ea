package main

import (
	"fmt"
	"time"
)

// stepResult is one measured interval: the producer sending at a fixed rate
// to one audience, then the audience catching up.
type stepResult struct {
	Viewers    int     `json:"viewers"`
	Rate       float64 `json:"rate"`     // offered, msg/s
	SentRate   float64 `json:"sentRate"` // achieved by the producer, msg/s
	Sent       int64   `json:"sent"`
	Refused    int64   `json:"refused"`    // answered with an error (the room's rate limit, …)
	Deliveries int64   `json:"deliveries"` // chat messages received by viewers
	Frames     int64   `json:"frames"`     // WebSocket messages (room writes) that carried them
	DelivPerS  float64 `json:"deliveriesPerSec"`
	P50ms      float64 `json:"p50ms"`
	P99ms      float64 `json:"p99ms"`
	P999ms     float64 `json:"p999ms"`
	MaxMs      float64 `json:"maxMs"`
	Lost       int64   `json:"lost"`    // seq gaps and events never received, viewers that stayed
	Dropped    int     `json:"dropped"` // viewers that lost their connection during the step
	NoSendTS   int64   `json:"noSendTs"`
	WallS      float64 `json:"wallS"`     // send plus catch-up
	RoomCPUS   float64 `json:"roomCpuS"`  // the room process's user+system CPU over WallS
	GenCPUS    float64 `json:"genCpuS"`   // this load generator's CPU over WallS
	OtherCPUS  float64 `json:"otherCpuS"` // the rest of the machine's busy CPU over WallS (other rooms, other work on the host)
	CPUPerDlvU float64 `json:"roomCpuUsPerDelivery"`
	CPUPerFrmU float64 `json:"roomCpuUsPerFrame"` // per write to one viewer: the cost coalescing divides
	MsgsPerFrm float64 `json:"msgsPerFrame"`
	RoomRSS    int64   `json:"roomRssBytes"`
	// OthersCPUS is the CPU of each other process the step measured (the
	// scale-out scenario's edges and NATS server), over WallS.
	OthersCPUS []float64 `json:"othersCpuS,omitempty"`
	Profile    string    `json:"profile,omitempty"`
	Err        string    `json:"error,omitempty"`
}

// ok reports whether the step delivered everything, sent at the asked rate
// (within 3 %), and kept p99 under maxP99.
func (s *stepResult) ok(maxP99 float64) (bool, string) {
	switch {
	case s.Err != "":
		return false, s.Err
	case s.SentRate < 0.97*s.Rate:
		return false, fmt.Sprintf("sent only %.0f/s", s.SentRate)
	case s.Refused > 0:
		return false, fmt.Sprintf("%d refused", s.Refused)
	case s.Lost > 0 || s.Dropped > 0:
		return false, fmt.Sprintf("%d lost, %d dropped", s.Lost, s.Dropped)
	case s.P99ms >= maxP99:
		return false, fmt.Sprintf("p99 %.1f ms", s.P99ms)
	}
	return true, ""
}

// runStep sends at rate for d to aud through prod and measures what the
// viewers receive, the room process's CPU (pid) and this process's.
func (b *bench) runStep(aud *audience, prod *producer, pid int, rate float64, d time.Duration, profile string) stepResult {
	return b.runStepOthers(aud, prod, pid, nil, rate, d, profile)
}

// runStepOthers is runStep that also measures the CPU of the processes
// others (in OthersCPUS).
func (b *bench) runStepOthers(aud *audience, prod *producer, pid int, others []int, rate float64, d time.Duration, profile string) stepResult {
	if b.quietWait > 0 {
		if w, cores := waitQuiet(b.quietWait); w > time.Second {
			b.logf("waited %.1fs for the machine to quieten (%.2f cores busy)", w.Seconds(), cores)
		}
	}
	step, rec := b.rec.newStep()
	res := stepResult{Viewers: len(aud.viewers), Rate: rate}
	lost0, _ := aud.counts()
	closed0 := aud.closed.Load()
	answered0 := prod.acked.Load() + prod.refused.Load()
	refused0 := prod.refused.Load()
	if profile != "" {
		b.profileStart(pid)
	}
	meter := startCPU(pid)
	others0 := make([]time.Duration, len(others))
	for i, p := range others {
		others0[i], _ = procCPU(p)
	}
	sent, elapsed, err := prod.send(step, rate, d)
	if err != nil {
		res.Err = err.Error()
	}
	if !prod.waitAnswered(answered0+sent, 15*time.Second) && res.Err == "" {
		res.Err = "producer: messages left unanswered"
	}
	missing := aud.waitCaughtUp(prod.maxAck.Load(), 15*time.Second)
	wall, roomCPU, self := meter.stop()
	machine := meter.machineBusy()
	othersCPU := time.Duration(0)
	for i, p := range others {
		c, _ := procCPU(p)
		res.OthersCPUS = append(res.OthersCPUS, (c - others0[i]).Seconds())
		othersCPU += c - others0[i]
	}
	if profile != "" {
		res.Profile = b.profileStop(pid, profile)
	}
	lost1, _ := aud.counts()
	res.Sent = sent
	res.SentRate = float64(sent) / elapsed.Seconds()
	res.Refused = prod.refused.Load() - refused0
	res.Deliveries, res.Frames, res.NoSendTS = rec.deliveries()
	res.DelivPerS = float64(res.Deliveries) / wall.Seconds()
	lat := rec.latencies()
	res.P50ms = float64(lat.quantile(0.50)) / 1000
	res.P99ms = float64(lat.quantile(0.99)) / 1000
	res.P999ms = float64(lat.quantile(0.999)) / 1000
	res.MaxMs = float64(lat.max()) / 1000
	res.Lost = lost1 - lost0 + missing
	res.Dropped = int(aud.closed.Load() - closed0)
	res.WallS, res.RoomCPUS, res.GenCPUS = wall.Seconds(), roomCPU.Seconds(), self.Seconds()
	res.OtherCPUS = max(0, (machine - roomCPU - othersCPU - self).Seconds())
	if res.Deliveries > 0 {
		res.CPUPerDlvU = roomCPU.Seconds() * 1e6 / float64(res.Deliveries)
	}
	if res.Frames > 0 {
		res.CPUPerFrmU = roomCPU.Seconds() * 1e6 / float64(res.Frames)
		res.MsgsPerFrm = float64(res.Deliveries) / float64(res.Frames)
	}
	res.RoomRSS, _ = procRSS(pid)
	return res
}

// summary is a one-line account of a step, for progress output.
func (s *stepResult) summary() string {
	return fmt.Sprintf("N=%d %5.0f msg/s (sent %6.0f): %8.0f deliv/s p50 %6.2f p99 %7.2f p99.9 %7.2f ms, lost %d, dropped %d, refused %d, room CPU %.2fs = %.2f µs/delivery (%.1f msgs/write, %.1f µs/write), gen CPU %.2fs, others %.2fs, wall %.1fs %s",
		s.Viewers, s.Rate, s.SentRate, s.DelivPerS, s.P50ms, s.P99ms, s.P999ms, s.Lost, s.Dropped, s.Refused, s.RoomCPUS, s.CPUPerDlvU, s.MsgsPerFrm, s.CPUPerFrmU, s.GenCPUS, s.OtherCPUS, s.WallS, s.Err)
}
