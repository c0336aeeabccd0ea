// Command natsd runs package devnats's embedded NATS server (JetStream on
// disk) as a process of its own, for the benchmark's scale-out scenario, so
// that its CPU is measured apart from the rooms'. Development only.
//
//	natsd -dir DIR -port PORT
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatfleet/chatfleet/devnats"
)

func main() {
	dir := flag.String("dir", devnats.DefaultDir, "JetStream's data directory")
	port := flag.Int("port", 4222, "client port on 127.0.0.1")
	flag.Parse()
	s, err := devnats.Start(devnats.Config{Dir: *dir, Port: *port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
	fmt.Println(s.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Stop()
}
