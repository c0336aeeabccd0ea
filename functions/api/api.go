// Package api is the control API of chatfleet as plain net/http handlers: the
// room API (create, list, get, join tokens, close) and the admin API (global
// messages, hosts, audit). It imports nothing of AWS, so the same handlers
// serve the Lambda functions (functions/rooms and functions/admin, through
// the API Gateway proxy adapter) and the local stack.
//
// Every answer is JSON in the fleet's envelopes: {"data": ...} or
// {"error": {"code", "message"}}, with the status of the code (package httpx).
// Every request runs under a deadline (Config.RequestTimeout) so that an
// outage of the store, a load balancer or a host answers 503 well within
// API Gateway's 29 seconds.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/token"
)

// HostPicker asks the load balancers for hosts; *lbclient.Picker is one.
type HostPicker interface {
	// Pick returns a host for a new room; EUNAVAILABLE if none can take one.
	Pick(ctx context.Context, req chatfleet.PickRequest) (chatfleet.Host, error)
	// Hosts returns every host the load balancers know, with its state.
	Hosts(ctx context.Context) ([]chatfleet.Host, error)
}

var _ HostPicker = (*lbclient.Picker)(nil)

// Config holds what the handlers need. Zero durations and limits, a nil
// HostsAllow, Log or Now take their defaults.
type Config struct {
	Store  chatfleet.Store
	Picker HostPicker
	Tokens *token.Issuer // join tokens; the room API needs it

	APIKey        string // the room API's key (API_KEY), checked on every room API request
	AdminAPIKey   string // the admin API's key (ADMIN_API_KEY)
	FleetKey      string // the hosts' API key (the chatserver's KEY), for creating and closing rooms
	FleetAdminKey string // the hosts' admin key (the chatserver's ADMIN_KEY), for the admin API

	// HostsAllow are the networks the hosts' API and admin addresses must
	// be in (FLEET_HOSTS_ALLOW): the control API calls no other address
	// with the fleet keys, checked on the address it dials. netguard.Private
	// (loopback and the private ranges) if nil.
	HostsAllow []netip.Prefix
	// WebhookAllowPrivate lets a room's webhookUrls name loopback, private
	// and other non-public address literals (WEBHOOK_ALLOW_PRIVATE=1; for
	// development).
	WebhookAllowPrivate bool
	// MaxFleetBans is the most fleet bans the admin API stores
	// (MAX_FLEET_BANS); 100,000 if zero.
	MaxFleetBans int
	// CORSAllowedOrigins are the exact origins (scheme://host[:port]) whose
	// browsers may call the room API (CORS_ALLOWED_ORIGINS); none if empty.
	// The admin API never answers CORS headers.
	CORSAllowedOrigins []string

	Log *slog.Logger     // discards if nil
	Now func() time.Time // stamps audit entries and times requests; time.Now if nil
	// RequestTimeout bounds the whole of one request; 8s if zero.
	RequestTimeout time.Duration
	// ReadCacheTTL is how long the room API keeps the listing, room records
	// for tokens and the hosts (READ_CACHE_TTL, cache.go); 1s if zero,
	// none if negative.
	ReadCacheTTL time.Duration
}

// Defaults of Config and limits of the handlers.
const (
	defaultRequestTimeout = 8 * time.Second
	defaultReadCacheTTL   = time.Second
	maxCachedRooms        = 2048            // room records kept per container (~1 KB each)
	maxCachedPages        = 64              // listing pages kept per container
	storeCallTimeout      = 2 * time.Second // one store call
	hostCallTimeout       = 4 * time.Second // one call to a host's API or admin port
	hostCreateTimeout     = 6 * time.Second // a host answers a create once the room process is ready
	hostCloseTimeout      = 6 * time.Second // and a close once the room process is gone (clients get 2s to see it)
	maxCreateAttempts     = 3               // hosts tried for one create
	hostsLookupTimeout    = time.Second     // the host list for room URLs, which can do without it

	// DefaultMaxFleetBans is the default of Config.MaxFleetBans.
	DefaultMaxFleetBans = 100_000
)

func (c *Config) setDefaults() {
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.ReadCacheTTL == 0 {
		c.ReadCacheTTL = defaultReadCacheTTL
	}
	if c.HostsAllow == nil {
		c.HostsAllow, _ = netguard.ParsePrefixes(netguard.Private)
	}
	if c.MaxFleetBans <= 0 {
		c.MaxFleetBans = DefaultMaxFleetBans
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Route is one endpoint: an HTTP method and an API Gateway resource path,
// whose {name} segments are also net/http.ServeMux wildcards.
type Route struct {
	Method string
	Path   string
}

func (r Route) String() string { return r.Method + " " + r.Path }

// endpoint pairs a route with its handler, as a method expression, so that
// the exported route lists and the muxes come from one table.
type endpoint[T any] struct {
	Route
	handle func(T, http.ResponseWriter, *http.Request)
}

// roomEndpoints is the room API.
var roomEndpoints = []endpoint[*roomAPI]{
	{Route{http.MethodGet, "/api/v1/rooms"}, (*roomAPI).list},
	{Route{http.MethodPost, "/api/v1/rooms/{name}"}, (*roomAPI).create},
	{Route{http.MethodGet, "/api/v1/rooms/{name}"}, (*roomAPI).get},
	{Route{http.MethodDelete, "/api/v1/rooms/{name}"}, (*roomAPI).close},
	{Route{http.MethodPost, "/api/v1/rooms/{name}/tokens"}, (*roomAPI).issueToken},
}

// adminEndpoints is the admin API.
var adminEndpoints = []endpoint[*adminAPI]{
	{Route{http.MethodPost, "/admin/v1/messages"}, (*adminAPI).globalMessage},
	{Route{http.MethodGet, "/admin/v1/hosts"}, (*adminAPI).hosts},
	{Route{http.MethodPost, "/admin/v1/hosts/{id}/drain"}, hostAction(hostapi.Drain)},
	{Route{http.MethodPost, "/admin/v1/hosts/{id}/resume"}, hostAction(hostapi.Resume)},
	{Route{http.MethodPost, "/admin/v1/hosts/{id}/restart"}, hostAction(hostapi.Restart)},
	{Route{http.MethodPost, "/admin/v1/hosts/{id}/shutdown"}, hostAction(hostapi.Shutdown)},
	{Route{http.MethodGet, "/admin/v1/hosts/{id}/stats"}, (*adminAPI).hostStats},
	{Route{http.MethodGet, "/admin/v1/rooms/{name}"}, (*adminAPI).inspectRoom},
	{Route{http.MethodDelete, "/admin/v1/rooms/{name}"}, (*adminAPI).closeRoom},
	{Route{http.MethodGet, "/admin/v1/audit"}, (*adminAPI).audit},
	{Route{http.MethodPost, "/admin/v1/bans"}, (*adminAPI).addBan},
	{Route{http.MethodGet, "/admin/v1/bans"}, (*adminAPI).listBans},
	{Route{http.MethodDelete, "/admin/v1/bans/{userId}"}, (*adminAPI).removeFleetBans},
	{Route{http.MethodDelete, "/admin/v1/rooms/{name}/bans/{userId}"}, (*adminAPI).removeRoomBans},
	{Route{http.MethodGet, "/admin/v1/blocked-words"}, (*adminAPI).blockedWords},
	{Route{http.MethodPut, "/admin/v1/blocked-words"}, (*adminAPI).setBlockedWords},
	{Route{http.MethodGet, "/admin/v1/room-defaults"}, (*adminAPI).roomDefaults},
	{Route{http.MethodPut, "/admin/v1/room-defaults"}, (*adminAPI).setRoomDefaults},
}

// RoomRoutes are the routes NewRoomAPI serves; the SAM template must declare
// exactly these for the rooms function.
var RoomRoutes = routes(roomEndpoints)

// AdminRoutes are the routes NewAdminAPI serves; the SAM template must
// declare exactly these for the admin function.
var AdminRoutes = routes(adminEndpoints)

func routes[T any](eps []endpoint[T]) []Route {
	out := make([]Route, len(eps))
	for i, e := range eps {
		out[i] = e.Route
	}
	return out
}

// NewRoomAPI returns the room API's handler. It needs Store, Picker, Tokens,
// APIKey and FleetKey.
func NewRoomAPI(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	switch {
	case cfg.Store == nil:
		return nil, errors.New("api: a store is required")
	case cfg.Picker == nil:
		return nil, errors.New("api: a host picker is required")
	case cfg.Tokens == nil:
		return nil, errors.New("api: a token issuer is required (TOKEN_SECRET)")
	case cfg.APIKey == "":
		return nil, errors.New("api: the room API key is required (API_KEY)")
	case cfg.FleetKey == "":
		return nil, errors.New("api: the fleet key is required (FLEET_KEY)")
	case cfg.APIKey == cfg.AdminAPIKey:
		return nil, errors.New("api: API_KEY and ADMIN_API_KEY must differ")
	}
	for _, o := range cfg.CORSAllowedOrigins {
		if err := checkOrigin(o); err != nil {
			return nil, fmt.Errorf("api: CORS_ALLOWED_ORIGINS: %w", err)
		}
	}
	a := &roomAPI{base: newBase(cfg, "rooms"),
		rooms: newReadCache[*chatfleet.Room](cfg.ReadCacheTTL, maxCachedRooms, cfg.Now),
		pages: newReadCache[storedPage](cfg.ReadCacheTTL, maxCachedPages, cfg.Now),
	}
	a.hostCache = newReadCache[map[string]chatfleet.Host](cfg.ReadCacheTTL, 1, cfg.Now)
	a.cors = newCORS(cfg.CORSAllowedOrigins, RoomRoutes)
	return a.handler(cfg.APIKey, mux(a, roomEndpoints)), nil
}

// NewAdminAPI returns the admin API's handler. It needs Store, Picker,
// AdminAPIKey and FleetAdminKey.
func NewAdminAPI(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	switch {
	case cfg.Store == nil:
		return nil, errors.New("api: a store is required")
	case cfg.Picker == nil:
		return nil, errors.New("api: a host picker is required")
	case cfg.AdminAPIKey == "":
		return nil, errors.New("api: the admin API key is required (ADMIN_API_KEY)")
	case cfg.FleetAdminKey == "":
		return nil, errors.New("api: the fleet admin key is required (FLEET_ADMIN_KEY)")
	case cfg.APIKey == cfg.AdminAPIKey:
		return nil, errors.New("api: API_KEY and ADMIN_API_KEY must differ")
	}
	a := &adminAPI{base: newBase(cfg, "admin")}
	return a.handler(cfg.AdminAPIKey, mux(a, adminEndpoints)), nil
}

func mux[T any](a T, eps []endpoint[T]) *httpx.Mux {
	m := httpx.NewMux()
	for _, e := range eps {
		m.HandleFunc(e.String(), func(w http.ResponseWriter, r *http.Request) { e.handle(a, w, r) })
	}
	return m
}

// base is what both APIs share: configuration, clients and the request edge.
type base struct {
	cfg   Config
	log   *slog.Logger
	store chatfleet.Store
	fleet *hostClient
	cors  *cors // the room API's CORS policy; nil for the admin API
	// hostCache keeps the load balancers' hosts for a moment (the room
	// API's; nil for the admin API, which reads them every time).
	hostCache *readCache[map[string]chatfleet.Host]
}

func newBase(cfg Config, name string) base {
	return base{
		cfg:   cfg,
		log:   cfg.Log.With("api", name),
		store: cfg.Store,
		fleet: &hostClient{client: newHostHTTPClient(cfg.HostsAllow), allow: cfg.HostsAllow, key: cfg.FleetKey, adminKey: cfg.FleetAdminKey},
	}
}

// handler wraps next with the edge every request passes: panic recovery, one
// log line, the request deadline, CORS (the room API's) and the key check,
// in that order.
func (b *base) handler(key string, next http.Handler) http.Handler {
	keyed := httpx.RequireKey(key, next)
	if b.cors != nil {
		keyed = b.cors.wrap(keyed)
	}
	return httpx.Recover(b.log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := b.cfg.Now()
		ctx, cancel := context.WithTimeout(r.Context(), b.cfg.RequestTimeout)
		defer cancel()
		rec := &statusWriter{ResponseWriter: w}
		keyed.ServeHTTP(rec, r.WithContext(ctx))
		if rec.status == 0 {
			// Never leave the adapter without a status: it would answer 504.
			httpx.WriteError(rec, b.log, fmt.Errorf("handler for %s %s wrote no status", r.Method, r.URL.Path))
		}
		lvl := slog.LevelInfo
		if rec.status >= 500 {
			lvl = slog.LevelWarn
		}
		b.log.Log(ctx, lvl, "request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"ms", b.cfg.Now().Sub(start).Milliseconds())
	}))
}

// statusWriter records the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// fail answers err in the error envelope. Outages (EUNAVAILABLE) and internal
// errors are logged with their cause; the caller sees only the code and the
// domain message.
func (b *base) fail(w http.ResponseWriter, r *http.Request, err error) {
	if chatfleet.ErrorCode(err) == chatfleet.EUNAVAILABLE {
		b.log.Warn("unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	httpx.WriteError(w, b.log, err)
}

// storeCtx bounds one store call.
func storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeCallTimeout)
}

// timedOut turns a deadline that ran out into EUNAVAILABLE, so a slow
// dependency answers 503 rather than 500.
func timedOut(ctx context.Context, what string, err error) error {
	if err == nil || chatfleet.ErrorCode(err) != chatfleet.EINTERNAL {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "%s did not answer in time", what), err)
	}
	return err
}
