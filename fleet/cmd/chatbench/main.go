// Command chatbench is chatfleet's load generator and benchmark driver
// (`make bench`, `make bench-quick`). It builds and starts its own chatserver
// on free loopback ports, opens real WebSocket clients against its rooms and
// measures fan-out throughput and latency, memory per connection, room start
// time, many rooms on one host (density), isolation between rooms and the
// control API; it prints one table and writes the results as JSON.
//
//	chatbench [-quick] [-out bench/results.json] [-pprof dir]
//	chatbench flood    (internal: the flooded neighbour of the isolation scenario)
//
// Everything it opens is on 127.0.0.0/8, every loop is bounded in count and
// time, and it stops by itself.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet/token"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "flood" {
		if err := floodMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "chatbench flood:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

// bench is one benchmark run: its chatserver, clients and results.
type bench struct {
	quick    bool
	stepDur  time.Duration
	reps     int
	srv      *server
	iss      *token.Issuer
	src      *sourceAddrs
	rec      *recorder
	pprofDir string
	// quietWait bounds the wait before each step for the shared machine to
	// go quiet (0: measure at once).
	quietWait time.Duration
	profDir   string // where the room writes profiles (ROOM_PPROF_DIR)
	self      string
	serverBin string // the chatserver binary
	res       results
	logf      func(format string, args ...any)
}

func run(args []string) error {
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "the short regression run (under a minute)")
	out := fs.String("out", "bench/results.json", "where to write the results")
	pprofDir := fs.String("pprof", "", "write CPU and heap profiles of the room process for the fixed-rate steps into this directory")
	only := fs.String("only", "", "comma-separated scenarios to run (fanout100,fanout1000,fanout10000,scaleout,roomstart,density,isolation,masterstop,control, or memory: fanout10000's idle RSS alone); default all")
	bin := fs.String("chatserver", "", "chatserver binary to use instead of building one")
	var serverEnv envList
	fs.Var(&serverEnv, "server-env", "extra NAME=value for the chatserver and its rooms (repeatable), e.g. GOGC=50, for experiments")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator itself to this file")
	quietWait := fs.Duration("quiet-wait", 0, "before each step, wait up to this long for the rest of the machine to go idle (0: 5s, quick 3s; negative: no wait)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	cpu0 := selfCPU()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "chatbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{quick: *quick, stepDur: 5 * time.Second, reps: 3, rec: &recorder{},
		src: newSourceAddrs(16), logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "# "+f+"\n", a...) }}
	b.quietWait = 5 * time.Second
	if b.quick {
		b.stepDur, b.reps, b.quietWait = 3*time.Second, 1, 3*time.Second
	}
	if *quietWait != 0 {
		b.quietWait = max(*quietWait, 0)
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	b.logf("RLIMIT_NOFILE %d; building chatserver", nofile)
	if *bin == "" {
		t0 := time.Now()
		if *bin, err = buildServer(dir); err != nil {
			return err
		}
		b.logf("built chatserver in %.1fs", time.Since(t0).Seconds())
	}
	b.serverBin = *bin
	extra := []string(serverEnv)
	if *pprofDir != "" {
		b.pprofDir, _ = filepath.Abs(*pprofDir)
		b.profDir = filepath.Join(dir, "pprof")
		if err := os.MkdirAll(b.profDir, 0o700); err != nil {
			return err
		}
		if err := os.MkdirAll(b.pprofDir, 0o755); err != nil {
			return err
		}
		extra = append(extra, "ROOM_PPROF_DIR="+b.profDir)
	}
	want := func(s string) bool {
		return *only == "" || strings.Contains(","+*only+",", ","+s+",")
	}
	// Room ports: the density scenario's rooms and a few more.
	densityRooms, roomPorts := 1000, 400
	if b.quick {
		densityRooms = 100
	}
	if want("density") {
		roomPorts = max(roomPorts, densityRooms+50)
	}
	if b.srv, err = startServer(*bin, dir, roomPorts, extra...); err != nil {
		return err
	}
	defer func() {
		t0 := time.Now()
		b.srv.stop()
		b.logf("chatserver stopped in %.1fs", time.Since(t0).Seconds())
	}()
	if b.iss, err = token.NewIssuer(b.srv.secret); err != nil {
		return err
	}
	b.res = newResults(b.quick)
	b.res.LoadAvgStart = loadAvg()
	type scenario struct {
		name string
		run  func(context.Context) error
	}
	var scenarios []scenario
	if b.quick {
		scenarios = []scenario{
			{"fanout100", func(ctx context.Context) error { return b.fanout(ctx, 100, []float64{200}, nil) }},
			{"fanout1000", func(ctx context.Context) error { return b.fanout(ctx, 1000, []float64{200, 1500}, nil) }},
			{"roomstart", func(ctx context.Context) error { return b.roomStarts(ctx, 20) }},
			{"density", func(ctx context.Context) error { return b.density(ctx, densityRooms, 10, 5*time.Second, 5*time.Second) }},
			{"scaleout", func(ctx context.Context) error { return b.scaleOut(ctx, 1000, []float64{20}) }},
			{"control", func(ctx context.Context) error { return b.control(ctx, 10, time.Second, true) }},
		}
	} else {
		scenarios = []scenario{
			{"fanout100", func(ctx context.Context) error {
				return b.fanout(ctx, 100, []float64{200}, []float64{500, 1000, 1500, 2000})
			}},
			{"fanout1000", func(ctx context.Context) error {
				return b.fanout(ctx, 1000, []float64{200, 1500}, []float64{500, 1000, 2000})
			}},
			{"fanout10000", func(ctx context.Context) error {
				return b.fanout(ctx, 10000, []float64{10, 20}, []float64{50, 100, 200})
			}},
			{"scaleout", func(ctx context.Context) error { return b.scaleOut(ctx, 10000, []float64{10, 20}) }},
			{"roomstart", func(ctx context.Context) error { return b.roomStarts(ctx, 100) }},
			{"density", func(ctx context.Context) error {
				return b.density(ctx, densityRooms, 10, 10*time.Second, 10*time.Second)
			}},
			{"isolation", b.isolation},
			{"masterstop", func(ctx context.Context) error { return b.masterStop(ctx, 1000, []float64{200, 1500}) }},
			{"control", func(ctx context.Context) error { return b.control(ctx, 40, 3*time.Second, true) }},
		}
	}
	if *only != "" && want("memory") {
		// Memory alone (part of fanout10000 otherwise), for experiments.
		scenarios = append(scenarios, scenario{"memory", func(ctx context.Context) error { return b.fanout(ctx, 10000, nil, nil) }})
	}
	for _, s := range scenarios {
		if !want(s.name) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logf("scenario %s", s.name)
		t0, c0 := time.Now(), selfCPU()
		if err := s.run(ctx); err != nil {
			b.logf("scenario %s failed: %v", s.name, err)
			b.res.Errors = append(b.res.Errors, s.name+": "+err.Error())
		}
		b.logf("scenario %s took %.1fs wall, %.1fs load-generator CPU", s.name, time.Since(t0).Seconds(), (selfCPU() - c0).Seconds())
	}

	b.res.LoadAvgEnd = loadAvg()
	b.res.WallS = time.Since(started).Seconds()
	b.res.GenCPUS = (selfCPU() - cpu0).Seconds()
	b.res.evaluate()
	b.res.print(os.Stdout)
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		data, _ := json.MarshalIndent(b.res, "", "  ")
		if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
			return err
		}
		b.logf("wrote %s", *out)
	}
	return nil
}

// loadAvg returns /proc/loadavg's first three fields.
func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// gitRev returns the commit of the working tree, marked dirty if need be.
func gitRev() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

// envList is a repeatable NAME=value flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q: want NAME=value", v)
	}
	*e = append(*e, v)
	return nil
}
