package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet/hostapi"
)

// scaleOut runs one room over an origin (on the benchmark's chatserver) and
// two edges (on two more chatservers), all on one NATS server (natsd, a
// process of its own): n viewers split evenly over the edges, the producer
// on the origin, each rate b.reps times (docs/scaleout.md). Each step
// reports the latency producer → viewers on edges, the loss, and the CPU of
// the origin, each edge and NATS; the rows scaleout/"per delivery" put them
// next to the single room of fanout at the same n and rate, when it ran.
func (b *bench) scaleOut(ctx context.Context, n int, rates []float64) error {
	dir, err := os.MkdirTemp("", "chatbench-scaleout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	natsPID, natsURL, stopNATS, err := startNATS(dir)
	if err != nil {
		return err
	}
	defer stopNATS()
	// The benchmark's own chatserver has no NATS: the origin's host is a
	// third one. Every host shares the token secret, as a fleet does.
	env := []string{"NATS_URL=" + natsURL, "TOKEN_SECRET=" + b.srv.secret}
	var hosts [3]*server
	for i := range hosts {
		hd := filepath.Join(dir, fmt.Sprintf("host%d", i))
		if err := os.MkdirAll(hd, 0o700); err != nil {
			return err
		}
		if hosts[i], err = startServer(b.serverBin, hd, 4, env...); err != nil {
			return err
		}
		defer hosts[i].stop()
	}
	name := fmt.Sprintf("spread%d-%s", n, randHex(3))
	var ports, pids [3]int
	for i, h := range hosts {
		role := hostapi.RoleEdge
		if i == 0 {
			role = hostapi.RoleOrigin
		}
		c, err := h.api.CreateRoom(ctx, name, hostapi.RoomOptions{Role: role})
		if err != nil {
			return fmt.Errorf("create the %s on host %d: %w", role, i, err)
		}
		ports[i] = c.Port
		if pids[i], err = h.roomPID(ctx, name); err != nil {
			return err
		}
	}
	defer hosts[0].closeRoom(context.Background(), name)
	prod, err := connectProducer(ctx, b.src, b.iss, name, ports[0], "producer-"+name)
	if err != nil {
		return err
	}
	defer prod.close()
	aud, err := connectAudience(ctx, b.src, b.iss, b.rec, connectOpts{
		room: name, ports: ports[1:], n: n, prefix: name + "-v", rate: 2500, workers: 32, timeout: 120 * time.Second,
	})
	if err != nil {
		return err
	}
	defer aud.close()
	for _, p := range pids {
		b.settle(p, 3*time.Second)
	}
	others := []int{pids[1], pids[2], natsPID}
	for _, r := range rates {
		var reps []stepResult
		for range b.reps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s := b.runStepOthers(aud, prod, pids[0], others, r, b.stepDur, "")
			b.logf("spread over 2 edges: %s; edges CPU %.2fs %.2fs, NATS %.2fs", s.summary(), s.OthersCPUS[0], s.OthersCPUS[1], s.OthersCPUS[2])
			reps = append(reps, s)
			if aud.live() == 0 {
				return fmt.Errorf("N=%d spread: every viewer was dropped", n)
			}
			for _, p := range pids {
				b.settle(p, time.Second)
			}
		}
		c := fmt.Sprintf("N=%d over 2 edges %.0f/s", n, r)
		b.res.addSteps("scaleout", c, reps)
		b.res.Rows[len(b.res.Rows)-1].Fail = "" // not a ceiling step: its targets are evaluate's
		b.spreadRows(n, r, c, reps)
	}
	return nil
}

// spreadRows adds the per-process figures of a spread step (medians of reps),
// next to the single room's at the same n and rate when fanout ran.
func (b *bench) spreadRows(n int, rate float64, name string, reps []stepResult) {
	med := func(f func(*stepResult) float64) float64 {
		xs := make([]float64, len(reps))
		for i := range reps {
			xs[i] = f(&reps[i])
		}
		return median(xs)
	}
	dlv := med(func(s *stepResult) float64 { return float64(s.Deliveries) })
	origin := med(func(s *stepResult) float64 { return s.RoomCPUS })
	edge := med(func(s *stepResult) float64 { return (s.OthersCPUS[0] + s.OthersCPUS[1]) / 2 })
	nats := med(func(s *stepResult) float64 { return s.OthersCPUS[2] })
	if dlv == 0 {
		return
	}
	perEdge := edge * 1e6 / (dlv / 2)
	originRow := row{Scenario: "scaleout", Case: name + ": origin CPU", Viewers: n, Rate: rate, Value: origin, Unit: "s"}
	edgeRow := row{Scenario: "scaleout", Case: name + ": edge CPU per delivery", Viewers: n, Rate: rate, Value: perEdge, Unit: "µs"}
	if single := b.res.find("fanout", fmt.Sprintf("N=%d fixed %.0f/s", n, rate)); single != nil && single.RoomCPUS > 0 {
		ratio, edgeRatio := origin/single.RoomCPUS, perEdge/single.CPUPerDlvU
		originRow.Detail = fmt.Sprintf("%.1f%% of the single room's %.2fs for the same viewers", 100*ratio, single.RoomCPUS)
		edgeRow.Detail = fmt.Sprintf("%.2fx the single room's %.2f µs", edgeRatio, single.CPUPerDlvU)
		originRow.Target, originRow.Met = "<=10% of a single room", &[]bool{ratio <= 0.1}[0]
		edgeRow.Target, edgeRow.Met = "<=1.3x a single room", &[]bool{edgeRatio <= 1.3}[0]
	}
	b.res.add(originRow)
	b.res.add(edgeRow)
	b.res.add(row{Scenario: "scaleout", Case: name + ": NATS CPU", Viewers: n, Rate: rate, Value: nats, Unit: "s",
		Detail: fmt.Sprintf("%.1f µs per event (%d events)", nats*1e6/max(1, rate*b.stepDur.Seconds()), int(rate*b.stepDur.Seconds()))})
}

// startNATS builds and starts natsd (package devnats's server as a process)
// with its data under dir; it returns its pid, URL and a stop function.
func startNATS(dir string) (pid int, url string, stop func(), err error) {
	bin := filepath.Join(dir, "natsd")
	if out, err := exec.Command("go", "build", "-o", bin, "./devnats/natsd").CombinedOutput(); err != nil {
		return 0, "", nil, fmt.Errorf("go build ./devnats/natsd: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return 0, "", nil, err
	}
	cmd := exec.Command(bin, "-dir", filepath.Join(dir, "nats"), "-port", fmt.Sprint(port))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, "", nil, err
	}
	stop = func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n') // natsd prints its URL once it takes connections
	if err != nil {
		stop()
		return 0, "", nil, fmt.Errorf("natsd did not start: %v", err)
	}
	return cmd.Process.Pid, strings.TrimSpace(line), stop, nil
}
