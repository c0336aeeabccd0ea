package main

import (
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Profiles of the room process: the chatserver runs with ROOM_PPROF_DIR set
// (see package roomproc); SIGUSR1 starts a CPU profile of a room process and
// the next SIGUSR1 stops it, writing room-<name>-<pid>-<n>.cpu.prof and a
// heap profile (.heap.prof) there.

func (b *bench) profileStart(pid int) {
	if b.profDir != "" {
		syscall.Kill(pid, syscall.SIGUSR1)
		time.Sleep(50 * time.Millisecond) // the room's signal handler starts the profile
	}
}

// profileStop stops the room's profile and moves it to the -pprof directory
// as <name>.cpu.prof and <name>.heap.prof; it returns the CPU profile's path,
// "" if none came in 10 s.
func (b *bench) profileStop(pid int, name string) string {
	if b.profDir == "" {
		return ""
	}
	syscall.Kill(pid, syscall.SIGUSR1)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cpu, _ := filepath.Glob(filepath.Join(b.profDir, "room-*.cpu.prof"))
		if len(cpu) > 0 {
			heap := cpu[0][:len(cpu[0])-len(".cpu.prof")] + ".heap.prof"
			dst := filepath.Join(b.pprofDir, name)
			os.Rename(heap, dst+".heap.prof")
			if os.Rename(cpu[0], dst+".cpu.prof") == nil {
				return dst + ".cpu.prof"
			}
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.logf("no profile from room process %d", pid)
	return ""
}
