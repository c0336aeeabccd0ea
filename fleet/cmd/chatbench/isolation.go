package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/token"
)

// Isolation: a quiet room of quietN viewers at quietRate, measured alone and
// while a neighbour room of floodN viewers on the same host is flooded at the
// N=1,000 ceiling. The neighbour's clients run in a child process (chatbench
// flood), so that they compete with the quiet room's viewers for the machine,
// as another room's clients would, and not inside this process's scheduler.
const (
	quietN    = 100
	quietRate = 50
	floodN    = 1000
)

func (b *bench) isolation(ctx context.Context) error {
	// The neighbour floods at its ceiling: the measured one, or the issue's
	// 1,500 msg/s for N=1,000 when a busy machine measured less.
	floodRate := max(b.res.Ceilings["1000"], 1500)
	quiet := "quiet-" + randHex(3)
	port, err := b.srv.createRoom(ctx, quiet)
	if err != nil {
		return err
	}
	defer b.srv.closeRoom(context.Background(), quiet)
	pid, err := b.srv.roomPID(ctx, quiet)
	if err != nil {
		return err
	}
	prod, err := connectProducer(ctx, b.src, b.iss, quiet, port, "producer-"+quiet)
	if err != nil {
		return err
	}
	defer prod.close()
	aud, err := connectAudience(ctx, b.src, b.iss, b.rec, connectOpts{room: quiet, port: port, n: quietN, prefix: quiet + "-v", rate: 1000, timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer aud.close()

	flood := "flood-" + randHex(3)
	fport, err := b.srv.createRoom(ctx, flood)
	if err != nil {
		return err
	}
	defer b.srv.closeRoom(context.Background(), flood)
	fpid, err := b.srv.roomPID(ctx, flood)
	if err != nil {
		return err
	}
	child, err := startFlood(ctx, b.self, b.srv.secret, flood, fport, fpid, floodN, floodRate)
	if err != nil {
		return err
	}
	defer child.stop()
	b.settle(pid, 2*time.Second)
	b.settle(fpid, 2*time.Second)

	d := b.stepDur + 3*time.Second
	var alone, with, floods []stepResult
	for range b.reps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s := b.runStep(aud, prod, pid, quietRate, d, "")
		b.logf("quiet alone: %s", s.summary())
		alone = append(alone, s)
		b.settle(pid, time.Second)

		if err := child.start(d + 2*time.Second); err != nil {
			return err
		}
		time.Sleep(time.Second) // the flood is on
		s = b.runStep(aud, prod, pid, quietRate, d, "")
		b.logf("quiet, neighbour flooded: %s", s.summary())
		with = append(with, s)
		f, err := child.result(d + 30*time.Second)
		if err != nil {
			return err
		}
		b.logf("flooded neighbour: %s", f.summary())
		floods = append(floods, f)
		b.settle(fpid, 3*time.Second)
		b.settle(pid, time.Second)
	}
	b.res.addSteps("isolation", fmt.Sprintf("quiet N=%d %d/s alone", quietN, quietRate), alone)
	b.res.addSteps("isolation", fmt.Sprintf("quiet N=%d %d/s, neighbour flooded", quietN, quietRate), with)
	b.res.addSteps("isolation", fmt.Sprintf("neighbour N=%d flood %.0f/s", floodN, floodRate), floods)
	var ratios []float64
	for i := range alone {
		if alone[i].P99ms > 0 {
			ratios = append(ratios, with[i].P99ms/alone[i].P99ms)
		}
	}
	b.res.add(row{Scenario: "isolation", Case: "quiet p99 flooded / alone", Value: median(ratios), Unit: "x",
		Detail: fmt.Sprintf("median of %d pairs", len(ratios))})
	return nil
}

// floodChild is a `chatbench flood` process: it connects its audience, says
// "ready", floods on every "flood <duration>" line of its stdin and answers
// with a JSON stepResult line.
type floodChild struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	lines chan string
}

func startFlood(ctx context.Context, self, secret, room string, port, pid, n int, rate float64) (*floodChild, error) {
	cmd := exec.Command(self, "flood", "-room", room, "-port", strconv.Itoa(port), "-pid", strconv.Itoa(pid),
		"-viewers", strconv.Itoa(n), "-rate", strconv.FormatFloat(rate, 'f', 0, 64))
	cmd.Env = append(os.Environ(), "CHATBENCH_TOKEN_SECRET="+secret)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &floodChild{cmd: cmd, in: in, lines: make(chan string, 4)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	select {
	case l, ok := <-c.lines:
		if ok && l == "ready" {
			return c, nil
		}
		c.stop()
		return nil, fmt.Errorf("flood child: %q instead of ready", l)
	case <-time.After(90 * time.Second):
		c.stop()
		return nil, errors.New("flood child: not ready in 90s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

func (c *floodChild) start(d time.Duration) error {
	_, err := fmt.Fprintf(c.in, "flood %s\n", d)
	return err
}

func (c *floodChild) result(timeout time.Duration) (stepResult, error) {
	var s stepResult
	select {
	case l, ok := <-c.lines:
		if !ok {
			return s, errors.New("flood child ended")
		}
		return s, json.Unmarshal([]byte(l), &s)
	case <-time.After(timeout):
		return s, errors.New("flood child: no result in time")
	}
}

// stop closes the child's stdin (it exits) and kills it if it lingers.
func (c *floodChild) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// floodMain is `chatbench flood`: the neighbour's producer and viewers.
// It lives at most 10 minutes.
func floodMain(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	room := fs.String("room", "", "room name")
	port := fs.Int("port", 0, "room port on 127.0.0.1")
	pid := fs.Int("pid", 0, "room process id, for its CPU time")
	n := fs.Int("viewers", 1000, "viewers")
	rate := fs.Float64("rate", 1500, "messages per second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	iss, err := token.NewIssuer(os.Getenv("CHATBENCH_TOKEN_SECRET"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b := &bench{rec: &recorder{}, src: newSourceAddrs(8)}
	prod, err := connectProducer(ctx, b.src, iss, *room, *port, "producer-"+*room)
	if err != nil {
		return err
	}
	defer prod.close()
	aud, err := connectAudience(ctx, b.src, iss, b.rec, connectOpts{room: *room, port: *port, n: *n, prefix: *room + "-v", rate: 2500, timeout: 60 * time.Second})
	if err != nil {
		return err
	}
	defer aud.close()
	fmt.Println("ready")
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			ds, found := strings.CutPrefix(l, "flood ")
			d, err := time.ParseDuration(ds)
			if !found || err != nil || d <= 0 || d > time.Minute {
				return fmt.Errorf("bad command %q", l)
			}
			s := b.runStep(aud, prod, *pid, *rate, d, "")
			data, _ := json.Marshal(s)
			fmt.Println(string(data))
		}
	}
}
