package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU returns the user plus system CPU time process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat
// line; the command name (field 2) may hold spaces and parentheses.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: bad utime/stime")
	}
	return time.Duration(ut+st) * clockTick, nil
}

// procRSS returns VmRSS of process pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("proc status of %d: no VmRSS", pid)
}

// selfCPU returns this process's user plus system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy returns the CPU time all CPUs spent busy (not idle or
// waiting for I/O) since boot, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseMachineBusy(line)
}

// parseMachineBusy reads the "cpu" line of /proc/stat: user nice system idle
// iowait irq softirq steal ..., in clock ticks.
func parseMachineBusy(line string) time.Duration {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		if i >= 8 { // guest time is counted in user already
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}

// cpuMeter measures the CPU a process used over an interval, next to the
// wall time and to what the whole machine was busy with.
type cpuMeter struct {
	pid        int
	wall       time.Time
	room, self time.Duration
	machine    time.Duration
	roomErr    error
}

func startCPU(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid, wall: time.Now(), self: selfCPU(), machine: machineBusy()}
	m.room, m.roomErr = procCPU(pid)
	return m
}

// machine returns the busy CPU time of the whole machine since start.
func (m *cpuMeter) machineBusy() time.Duration { return machineBusy() - m.machine }

// stop returns the wall time, the room process's CPU and this process's CPU
// since start.
func (m *cpuMeter) stop() (wall, room, self time.Duration) {
	wall = time.Since(m.wall)
	self = selfCPU() - m.self
	if r, err := procCPU(m.pid); err == nil && m.roomErr == nil {
		room = r - m.room
	}
	return wall, room, self
}

// waitQuiet waits, up to max, for a moment when the rest of the machine is
// nearly idle (under 0.3 of a core over 500 ms), since the host is shared:
// a step measured while a neighbour compiles measures the neighbour. It
// returns how long it waited and the busy cores of the last sample.
func waitQuiet(max time.Duration) (time.Duration, float64) {
	start := time.Now()
	var cores float64
	for {
		b0 := machineBusy()
		time.Sleep(500 * time.Millisecond)
		cores = (machineBusy() - b0).Seconds() / 0.5
		if cores < 0.3 || time.Since(start) >= max {
			return time.Since(start), cores
		}
	}
}

// procPSS returns the proportional set size of process pid and its anonymous
// part, in bytes, from /proc/<pid>/smaps_rollup: pages shared with other
// processes (the binary's text, shared libraries) count as their share.
func procPSS(pid int) (pss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	pss, anon = -1, 0
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "Pss" && name != "Pss_Anon") {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if name == "Pss" {
			pss = kb << 10
		} else {
			anon = kb << 10
		}
	}
	if pss < 0 {
		return 0, 0, fmt.Errorf("smaps_rollup of %d: no Pss", pid)
	}
	return pss, anon, nil
}

// procFDs returns how many file descriptors process pid has open.
func procFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// procRuntime returns the CPU time process pid has run, the sum of its
// threads' /proc/<pid>/task/<tid>/schedstat (nanoseconds). Unlike procCPU's
// clock ticks it is exact, so that the CPU of a thousand nearly idle
// processes adds up instead of rounding to nothing. (Threads that exited are
// not counted: a Go program keeps its threads.)
func procRuntime(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			total += time.Duration(ns)
		}
	}
	return total, nil
}

// memUsed returns the machine's memory in use, MemTotal minus MemAvailable
// from /proc/meminfo, in bytes (0 if unreadable).
func memUsed() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var total, avail int64
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch name {
		case "MemTotal":
			total = kb << 10
		case "MemAvailable":
			avail = kb << 10
		}
	}
	return total - avail
}
