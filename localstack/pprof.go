package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// profileOnSignal lets SIGUSR1 start a CPU profile of this process (the
// control API and the embedded store) and the next SIGUSR1 stop it, written
// to dir as localstack-<pid>-<n>.cpu.prof, with the stacks of every
// goroutine at that moment (.goroutines.txt: what a stalled store waits on);
// for benchmarks (PPROF_DIR, chatbench -pprof). Nothing happens if dir is
// empty.
func profileOnSignal(dir string, log io.Writer) {
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
				base = filepath.Join(dir, fmt.Sprintf("localstack-%d-%d", os.Getpid(), n))
				var err error
				if f, err = os.Create(base + ".cpu.prof.tmp"); err == nil {
					if err = pprof.StartCPUProfile(f); err != nil {
						f.Close()
					}
				}
				if err != nil {
					fmt.Fprintln(log, "chatfleet: cpu profile:", err)
					f = nil
				}
				continue
			}
			if g, err := os.Create(base + ".goroutines.txt"); err == nil {
				pprof.Lookup("goroutine").WriteTo(g, 2)
				g.Close()
			}
			pprof.StopCPUProfile()
			f.Close()
			f, n = nil, n+1
			os.Rename(base+".cpu.prof.tmp", base+".cpu.prof")
		}
	}()
}
