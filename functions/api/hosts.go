package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/netguard"
)

// maxHostAnswer bounds what is read of a host's answer.
const maxHostAnswer = 1 << 20

// newHTTPClient returns the client for calls to the load balancers: short
// connect and header timeouts, a small pool (a Lambda container serves one
// request at a time).
func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   3 * time.Second,
			ResponseHeaderTimeout: hostCreateTimeout,
			MaxIdleConns:          16,
			MaxIdleConnsPerHost:   2,
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
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("not an http(s) URL")
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !netguard.Contains(allow, a) {
		return fmt.Errorf("%s: %w", a, errHostNotAllowed)
	}
	return nil
}

// hostClient calls the chatserver APIs of fleet hosts: the API port with the
// fleet key (create and close rooms), the admin port with the fleet admin key.
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

// call sends method to base+path with key and body (JSON, if not nil), within
// timeout, and decodes the data envelope of a 2xx answer into out (if not
// nil). An error answer is a *hostError; a host that cannot be reached or
// does not answer in time is EUNAVAILABLE.
func (c *hostClient) call(ctx context.Context, h chatfleet.Host, base, method, path, key string, timeout time.Duration, body, out any) error {
	if base == "" {
		return chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %s reports no address for this call", h.ID)
	}
	if err := checkHostURL(c.allow, base); err != nil {
		return notAllowed(h, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request to host %s: %w", h.ID, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("request to host %s: %w", h.ID, err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if errors.Is(err, errHostNotAllowed) {
		return notAllowed(h, err)
	}
	if err != nil {
		// *url.Error names the method and URL, never the key.
		return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %s did not answer", h.ID), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHostAnswer))
	if err != nil {
		return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "host %s did not answer", h.ID), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var env httpx.Envelope
		if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Code == "" {
			env.Error = &chatfleet.Error{Code: httpx.Code(resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
		}
		return &hostError{host: h.ID, status: resp.StatusCode, err: env.Error}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, &struct {
			Data any `json:"data"`
		}{out}); err != nil {
			return fmt.Errorf("host %s: decode answer to %s %s: %w", h.ID, method, path, err)
		}
	}
	return nil
}

// notAllowed is the error of a host the control API will not call: EUNAVAILABLE
// (another host may be tried), saying why.
func notAllowed(h chatfleet.Host, err error) error {
	return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE,
		"host %s is not called: its address is outside the fleet's allowed networks (FLEET_HOSTS_ALLOW)", h.ID), err)
}

// roomOptions are the options of a room the host's create takes.
type roomOptions struct {
	AllowAnonymous bool     `json:"allowAnonymous,omitempty"`
	HistorySize    int      `json:"historySize,omitempty"`
	Paid           bool     `json:"paid,omitempty"`
	WebhookURLs    []string `json:"webhookUrls,omitempty"`
	// Instance is this life of the room's name: the room refuses join
	// tokens of another. OwnerID is the producer's user id.
	Instance string `json:"instance,omitempty"`
	OwnerID  string `json:"ownerId,omitempty"`
	// WebhookSecret signs the deliveries to WebhookURLs; the room's own,
	// returned once to the creator and never stored by the control API.
	WebhookSecret string `json:"webhookSecret,omitempty"`
	// HLSURL and Title are kept by the host, whose sync writes them to
	// the store (the hlsUrl until the producer announces its own).
	HLSURL string `json:"hlsUrl,omitempty"`
	Title  string `json:"title,omitempty"`
}

// createRoom asks h to run room name and returns its port. A host that has
// the room already answers ECONFLICT with where it is; see refused for the
// answers after which another host may be tried.
func (c *hostClient) createRoom(ctx context.Context, h chatfleet.Host, name string, opts roomOptions) (int, error) {
	var out struct {
		Port int `json:"port"`
	}
	err := c.call(ctx, h, h.APIURL, http.MethodPost, "/api/v1/room/"+url.PathEscape(name), c.key, hostCreateTimeout,
		map[string]roomOptions{"options": opts}, &out)
	var he *hostError
	switch {
	case errors.As(err, &he) && he.status == http.StatusConflict:
		return 0, &chatfleet.Error{Code: chatfleet.ECONFLICT, Message: fmt.Sprintf("room %q exists", name),
			Host: h.RoomHost, Port: he.err.Port}
	case err != nil:
		return 0, err
	case out.Port <= 0:
		return 0, fmt.Errorf("host %s answered a create without a port", h.ID)
	}
	return out.Port, nil
}

// closeRoom closes room name on h, through the admin port if admin is set,
// else through the API port. A room the host does not run counts as closed.
func (c *hostClient) closeRoom(ctx context.Context, h chatfleet.Host, name, reason string, admin bool) error {
	base, path, key := h.APIURL, "/api/v1/room/", c.key
	if admin {
		base, path, key = h.AdminURL, "/api/v1/rooms/", c.adminKey
	}
	err := c.call(ctx, h, base, http.MethodDelete, path+url.PathEscape(name), key, hostCloseTimeout,
		map[string]string{"reason": reason}, nil)
	var he *hostError
	if errors.As(err, &he) && he.status == http.StatusNotFound {
		return nil
	}
	return err
}

// admin posts body to path on h's admin port and decodes the answer's data into out.
func (c *hostClient) admin(ctx context.Context, h chatfleet.Host, path string, body, out any) error {
	return c.call(ctx, h, h.AdminURL, http.MethodPost, path, c.adminKey, hostCallTimeout, body, out)
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
