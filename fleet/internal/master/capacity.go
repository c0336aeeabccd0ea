package master

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// What one room costs its host beyond its clients, for the default of
// MaxRooms (docs/performance.md, "Host density"):
const (
	// roomFDs is the master's descriptors per room: its copies of the
	// room's TCP and control listeners, the control connection and the
	// process's pidfd (4,022 with 1,000 rooms).
	roomFDs = 4
	// masterFDs is kept for everything else of the master: API and admin
	// connections, the store, the spares, logs.
	masterFDs = 512
	// roomMemory is a room process's fixed cost, budgeted: its PSS is
	// 1.7 MiB idle and 2.4 MiB with ten viewers, plus the kernel's share
	// (page tables, thread stacks). Rooms may take half of the host's
	// memory; the rest is for their connections (~9 KiB each), the master
	// and the system.
	roomMemory = 4 << 20
	// roomTasks is what a room process counts against the kernel's pid_max
	// (a Go process of GOMAXPROCS=1 runs 5 to 7 threads); rooms may take
	// half of it.
	roomTasks = 8
)

// defaultMaxRooms returns how many rooms a host can serve: the size of its
// room port range, bounded by its file descriptors (nofile, the master's
// RLIMIT_NOFILE), its memory (memTotal bytes) and its kernel's task ids
// (pidMax); a bound that is unknown (0) does not apply. It is at least 1.
func defaultMaxRooms(ports int, nofile uint64, memTotal int64, pidMax int) int {
	n := ports
	if nofile > 0 {
		n = min(n, int((int64(nofile)-masterFDs)/roomFDs))
	}
	if memTotal > 0 {
		n = min(n, int(memTotal/2/roomMemory))
	}
	if pidMax > 0 {
		n = min(n, pidMax/2/roomTasks)
	}
	return max(n, 1)
}

// hostLimits returns this process's RLIMIT_NOFILE (the Go runtime raised
// its soft limit to the hard one at start), MemTotal and pid_max, each 0
// if unknown.
func hostLimits() (nofile uint64, memTotal int64, pidMax int) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		nofile = rl.Cur
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					memTotal = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		pidMax, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return nofile, memTotal, pidMax
}
