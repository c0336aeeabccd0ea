package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// raiseNoFile lifts RLIMIT_NOFILE's soft limit to the hard one and returns it.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return rl.Cur, nil
}

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT, Linux 4.2) defers the choice
// of the source port to connect, so that a port is unique per 4-tuple rather
// than per source address.
const ipBindAddressNoPort = 24

// sourceAddrs spreads client sockets over 127.0.0.2 … 127.0.0.(1+n): each
// source address has its own ephemeral port range, so tens of thousands of
// connections (and the TIME_WAITs of earlier scenarios) do not run out of ports.
type sourceAddrs struct {
	dialers []*net.Dialer
	next    atomic.Uint64
}

func newSourceAddrs(n int) *sourceAddrs {
	s := &sourceAddrs{}
	for i := range n {
		ip := net.IPv4(127, 0, 0, byte(2+i))
		s.dialers = append(s.dialers, &net.Dialer{
			Timeout:   10 * time.Second,
			LocalAddr: &net.TCPAddr{IP: ip},
			Control: func(_, _ string, c syscall.RawConn) error {
				c.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
				})
				return nil
			},
		})
	}
	return s
}

// dial connects to a loopback address only.
func (s *sourceAddrs) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("chatbench dials loopback only, not %s", addr)
	}
	d := s.dialers[s.next.Add(1)%uint64(len(s.dialers))]
	return d.DialContext(ctx, network, addr)
}

// A viewer shares the machine with the room it measures, so it reads
// cheaply: a 16 KiB read buffer takes a coalesced message (up to 32 KiB) in
// one or two reads (with 1 KiB, the frame headers cost a read of their own:
// N=1,000 at 1,500 msg/s, generator p99 104-107 ms against 74-91 ms). The
// write buffer is pooled: viewers only write pongs and close frames.
var clientWritePool = &sync.Pool{}

func (s *sourceAddrs) wsDialer() *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext:   s.dial,
		HandshakeTimeout: 15 * time.Second,
		ReadBufferSize:   16 << 10,
		WriteBufferSize:  512,
		WriteBufferPool:  clientWritePool,
	}
}

// wsURL returns the WebSocket URL of the room on port with a join token.
func wsURL(port int, token string) string {
	return fmt.Sprintf("ws://127.0.0.1:%d/ws?token=%s", port, url.QueryEscape(token))
}
