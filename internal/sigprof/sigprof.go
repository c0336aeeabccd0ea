// Package sigprof lets SIGUSR1 toggle a CPU profile of the process, for
// benchmarks (chatbench -pprof): the first signal starts one, the next stops
// it. Room processes (ROOM_PPROF_DIR) and the local stack (PPROF_DIR) use it.
package sigprof

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// OnSignal, when dir is set, makes SIGUSR1 start a CPU profile and the next
// SIGUSR1 stop it, written to dir/<prefix>-<pid>-<n>.cpu.prof (renamed into
// place when complete). After each profile, after (if set) is called with
// the files' common base, dir/<prefix>-<pid>-<n>, to write more beside it.
// A profile that cannot start is reported to fail. Nothing happens if dir
// is empty.
func OnSignal(dir, prefix string, after func(base string), fail func(error)) {
	if dir == "" {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		var f *os.File
		var base string
		for n := 1; ; {
			<-sig
			if f == nil {
				base = filepath.Join(dir, fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), n))
				var err error
				if f, err = os.Create(base + ".cpu.prof.tmp"); err == nil {
					if err = pprof.StartCPUProfile(f); err != nil {
						f.Close()
					}
				}
				if err != nil {
					fail(fmt.Errorf("cpu profile: %w", err))
					f = nil
				}
				continue
			}
			pprof.StopCPUProfile()
			f.Close()
			f, n = nil, n+1
			os.Rename(base+".cpu.prof.tmp", base+".cpu.prof")
			if after != nil {
				after(base)
			}
		}
	}()
}
