package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/internal/netguard"
)

// newHTTPClient returns the client for calls to the load balancers: short
// connect and header timeouts, and idle connections kept for up to 16
// concurrent requests (a Lambda container serves one request at a time and
// uses one or two; the local stack serves many at once, and a connection
// dropped for want of an idle slot costs the next call a new one).
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   3 * time.Second,
			ResponseHeaderTimeout: hostCreateTimeout,
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       60 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		// Never follow a redirect with our key to somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errHostNotAllowed is the error of a call to a host whose address is
// outside the fleet's allowed networks (FLEET_HOSTS_ALLOW).
var errHostNotAllowed = errors.New("address is not in the fleet's allowed networks (FLEET_HOSTS_ALLOW)")

// newHostHTTPClient returns the client for calls to hosts, which carry the
// fleet keys: like newHTTPClient, but it connects only to addresses in
// allow, checked on the address each connection is about to use (after DNS,
// so a registered name that resolves elsewhere fails too), and never
// through a proxy (the proxy's address would be the one checked).
func newHostHTTPClient(allow []netip.Prefix) *http.Client {
	c := newHTTPClient()
	t := c.Transport.(*http.Transport)
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second, Control: allowedControl(allow)}).DialContext
	return c
}

// allowedControl returns a net.Dialer Control hook refusing addresses
// outside allow.
func allowedControl(allow []netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial %s %s: %w", network, address, err)
		}
		if !netguard.Contains(allow, ap.Addr()) {
			return fmt.Errorf("dial %s: %w", ap.Addr(), errHostNotAllowed)
		}
		return nil
	}
}

// checkHostURL refuses, before any dial, a host URL whose host is an IP
// literal outside allow; a name is checked at dial time.
func checkHostURL(allow []netip.Prefix, base string) error {
	u, err := netguard.HTTPURL(base, 0)
	if err != nil {
		return errors.New("not an http(s) URL")
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !netguard.Contains(allow, a) {
		return fmt.Errorf("%s: %w", a, errHostNotAllowed)
	}
	return nil
}

// hostClient calls the chatserver APIs of fleet hosts (package hostapi):
// the API port with the fleet key (create and close rooms), the admin port
// with the fleet admin key. It adds to hostapi.Client what the control API
// needs: the allowed networks, a timeout per call, and errors that name the
// host and say whether another host may be tried.
type hostClient struct {
	client   *http.Client // a newHostHTTPClient of allow
	allow    []netip.Prefix
	key      string
	adminKey string
}

// hostError is an error answer of a host: its status and its envelope.
type hostError struct {
	host   string
	status int
	err    *chatfleet.Error
}

func (e *hostError) Error() string {
	return fmt.Sprintf("host %s: status %d: %s: %s", e.host, e.status, e.err.Code, e.err.Message)
}

// refused reports whether err says the host cannot serve the request now
// (draining, full, down, unreachable), so another host may be tried.
func refused(err error) bool {
	var he *hostError
	if errors.As(err, &he) {
		return he.status == http.StatusServiceUnavailable || he.status >= 500
	}
	return chatfleet.ErrorCode(err) == chatfleet.EUNAVAILABLE
}

// call runs fn with h's hostapi client, within timeout, after checking the
// address of the port it calls (base: h.APIURL or h.AdminURL). An error
// answer is a *hostError; a host that cannot be reached or does not answer
// in time is EUNAVAILABLE.
func (c *hostClient) call(ctx context.Context, h chatfleet.Host, base string, timeout time.Duration, fn func(context.Context, *hostapi.Client) error) error {
	if base == "" {
		return chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %s reports no address for this call", h.ID)
	}
	if err := checkHostURL(c.allow, base); err != nil {
		return notAllowed(h, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := fn(ctx, &hostapi.Client{API: h.APIURL, Key: c.key, Admin: h.AdminURL, AdminKey: c.adminKey, HTTP: c.client})
	var he *hostapi.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errHostNotAllowed):
		return notAllowed(h, err)
	case errors.As(err, &he):
		return &hostError{host: h.ID, status: he.Status, err: he.Err}
	case errors.Is(err, hostapi.ErrNoAnswer):
		return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %s did not answer", h.ID), err)
	}
	return fmt.Errorf("host %s: %w", h.ID, err)
}

// notAllowed is the error of a host the control API will not call: EUNAVAILABLE
// (another host may be tried), saying why.
func notAllowed(h chatfleet.Host, err error) error {
	return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE,
		"host %s is not called: its address is outside the fleet's allowed networks (FLEET_HOSTS_ALLOW)", h.ID), err)
}

// createRoom asks h to run room name and returns its port. A host that has
// the room already answers ECONFLICT with where it is; see refused for the
// answers after which another host may be tried.
func (c *hostClient) createRoom(ctx context.Context, h chatfleet.Host, name string, opts hostapi.RoomOptions) (int, error) {
	var out hostapi.Created
	err := c.call(ctx, h, h.APIURL, hostCreateTimeout, func(ctx context.Context, hc *hostapi.Client) (err error) {
		out, err = hc.CreateRoom(ctx, name, opts)
		return err
	})
	var he *hostError
	if errors.As(err, &he) && he.status == http.StatusConflict {
		return 0, &chatfleet.Error{Code: chatfleet.ECONFLICT, Message: fmt.Sprintf("room %q exists", name),
			Host: h.RoomHost, Port: he.err.Port}
	}
	return out.Port, err
}

// closeRoom closes room name on h, through the admin port if admin is set,
// else through the API port. A room the host does not run counts as closed.
func (c *hostClient) closeRoom(ctx context.Context, h chatfleet.Host, name, reason string, admin bool) error {
	base, closeRoom := h.APIURL, (*hostapi.Client).CloseRoom
	if admin {
		base, closeRoom = h.AdminURL, (*hostapi.Client).AdminCloseRoom
	}
	err := c.call(ctx, h, base, hostCloseTimeout, func(ctx context.Context, hc *hostapi.Client) error {
		return closeRoom(hc, ctx, name, reason)
	})
	var he *hostError
	if errors.As(err, &he) && he.status == http.StatusNotFound {
		return nil
	}
	return err
}

// admin runs fn, a call to h's admin port, within hostCallTimeout.
func (c *hostClient) admin(ctx context.Context, h chatfleet.Host, fn func(context.Context, *hostapi.Client) error) error {
	return c.call(ctx, h, h.AdminURL, hostCallTimeout, fn)
}

// hostFailure maps an error of a call to a host to what the caller of the
// control API sees: outages stay EUNAVAILABLE; the host's own refusals keep
// their code where the caller can act on them (invalid, not found, conflict,
// unavailable); anything else, a wrong fleet key say, is internal.
func hostFailure(err error) error {
	var he *hostError
	if !errors.As(err, &he) {
		return err
	}
	switch he.err.Code {
	case chatfleet.EINVALID, chatfleet.ENOTFOUND, chatfleet.ECONFLICT, chatfleet.EUNAVAILABLE, chatfleet.ETOOLARGE:
		return fmt.Errorf("%w: %w", &chatfleet.Error{Code: he.err.Code, Message: "host " + he.host + ": " + he.err.Message}, err)
	}
	return err
}

// roomURLs returns the WebSocket and SSE URLs of a room on port of a host.
// A host behind a proxy reports RoomURL, e.g. wss://h.example.com/rooms/{port};
// otherwise rooms are reached at addr (the host's RoomHost) on their port.
// Clients add ?token=<join token> to either.
func roomURLs(roomURL, addr string, port int) (ws, sse string) {
	p := strconv.Itoa(port)
	if roomURL != "" {
		base := strings.TrimRight(strings.ReplaceAll(roomURL, "{port}", p), "/")
		scheme, rest, ok := strings.Cut(base, "://")
		if ok {
			wsScheme, httpScheme := "ws", "http"
			if scheme == "wss" || scheme == "https" {
				wsScheme, httpScheme = "wss", "https"
			}
			return wsScheme + "://" + rest + "/ws", httpScheme + "://" + rest + "/events"
		}
	}
	if addr == "" {
		return "", ""
	}
	hp := net.JoinHostPort(addr, p)
	return "ws://" + hp + "/ws", "http://" + hp + "/events"
}
