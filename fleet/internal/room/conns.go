package room

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
)

// connLimits counts the room's open connections (WebSocket and SSE streams)
// in total and per client address, so that one address (guests get a fresh
// id per connection, so no per-user limit binds them) or a crowd cannot hold
// more than the room allows. Its map holds only addresses with a connection
// open, so it is bounded by MaxRoomConns.
type connLimits struct {
	perIP   int // 0: no per-address cap
	total   int
	proxies []netip.Prefix

	mu   sync.Mutex
	n    int
	byIP map[netip.Addr]int
}

func newConnLimits(cfg Config) *connLimits {
	return &connLimits{perIP: max(cfg.MaxConnsPerIP, 0), total: cfg.MaxRoomConns, proxies: cfg.TrustedProxies, byIP: map[netip.Addr]int{}}
}

// acquire takes a slot for a connection from addr: ERATELIMIT (429) when the
// address has MaxConnsPerIP open, EUNAVAILABLE (503) when the room has
// MaxRoomConns.
func (l *connLimits) acquire(addr netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.total {
		return chatfleet.Errorf(chatfleet.EUNAVAILABLE, "the room is full: %d connections", l.total)
	}
	if l.perIP > 0 && l.byIP[addr] >= l.perIP {
		return chatfleet.Errorf(chatfleet.ERATELIMIT, "too many connections from your address: at most %d", l.perIP)
	}
	l.n++
	l.byIP[addr]++
	return nil
}

func (l *connLimits) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.byIP[addr]--; l.byIP[addr] <= 0 {
		delete(l.byIP, addr)
	}
}

// clientAddr is the address a request came from: the TCP peer, or, when the
// peer is a trusted proxy, the right-most address of X-Forwarded-For that is
// not a trusted proxy (the left part of the header is the client's to write).
func (l *connLimits) clientAddr(req *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if len(l.proxies) == 0 || !netguard.Contains(l.proxies, peer) {
		return peer
	}
	hops := strings.Split(strings.Join(req.Header.Values("X-Forwarded-For"), ","), ",")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage: the proxy's peer is the last address we trust
		}
		addr = a.Unmap()
		if !netguard.Contains(l.proxies, addr) {
			break
		}
	}
	return addr
}
