package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/chatfleet/chatfleet/internal/sigprof"
)

// profileOnSignal lets SIGUSR1 start a CPU profile of this process (the
// control API and the embedded store) and the next SIGUSR1 stop it, written
// to dir as localstack-<pid>-<n>.cpu.prof, with the stacks of every
// goroutine at that moment (.goroutines.txt: what a stalled store waits on);
// for benchmarks (PPROF_DIR, chatbench -pprof). Nothing happens if dir is
// empty.
func profileOnSignal(dir string, log io.Writer) {
	sigprof.OnSignal(dir, "localstack", func(base string) {
		if g, err := os.Create(base + ".goroutines.txt"); err == nil {
			pprof.Lookup("goroutine").WriteTo(g, 2)
			g.Close()
		}
	}, func(err error) { fmt.Fprintln(log, "chatfleet:", err) })
}
