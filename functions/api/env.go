package api

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/envconf"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/token"
)

// storePool is the most connections a container opens to the store: a
// Lambda container serves one request at a time and needs few; the local
// stack serves several at once.
const storePool = 8

// ConfigFromEnv builds a Config and its clients from the environment read
// through getenv (os.Getenv in production), as a Lambda function's main does
// once per container, outside the handler:
//
//	MONGODB_URI, MONGODB_DATABASE         the store (required; database "chatfleet" by default)
//	LOADBALANCERS, LOADBALANCER_KEY       load-balancer base URLs, comma-separated, and their key (required)
//	LOADBALANCER_CA_FILE                  extra PEM root CA for https load balancers
//	TOKEN_SECRET                          join-token secret (the room API needs it)
//	API_KEY, ADMIN_API_KEY                the keys callers of the room and admin APIs present
//	FLEET_KEY, FLEET_ADMIN_KEY            the hosts' KEY and ADMIN_KEY
//	REQUEST_TIMEOUT                       deadline of one request, e.g. 8s (the default)
//	READ_CACHE_TTL                        how long the room API keeps the listing, rooms for tokens and the hosts; 1s by default, 0: not at all
//	FLEET_HOSTS_ALLOW                     CIDRs the hosts' API and admin addresses must be in; default loopback and the private ranges
//	WEBHOOK_ALLOW_PRIVATE                 1: a room's webhookUrls may name non-public address literals (development)
//	MAX_FLEET_BANS                        the most fleet bans the admin API stores; default 100000
//	CORS_ALLOWED_ORIGINS                  exact origins (scheme://host[:port], comma-separated) whose browsers may call the room API; default none
//	LOG_LEVEL or AWS_LAMBDA_LOG_LEVEL     debug, info (default), warn, error; JSON lines on stdout
//
// Which keys are required is up to NewRoomAPI and NewAdminAPI, so each
// function gets only its own secrets. The store is connected to at once but
// an unreachable store is not an error: each request tries again and answers
// 503 while it stays down. The returned func closes the clients.
func ConfigFromEnv(ctx context.Context, getenv func(string) string) (Config, func(), error) {
	r := envconf.New(getenv)
	logVar := "LOG_LEVEL" // Lambda's own setting counts when ours is unset
	if getenv(logVar) == "" {
		logVar = "AWS_LAMBDA_LOG_LEVEL"
	}
	cfg := Config{
		Log:                 slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: r.LogLevel(logVar, slog.LevelInfo)})),
		APIKey:              r.Str("API_KEY", ""),
		AdminAPIKey:         r.Str("ADMIN_API_KEY", ""),
		FleetKey:            r.Str("FLEET_KEY", ""),
		FleetAdminKey:       r.Str("FLEET_ADMIN_KEY", ""),
		RequestTimeout:      r.PositiveDur("REQUEST_TIMEOUT", 0),
		ReadCacheTTL:        r.DurIn("READ_CACHE_TTL", defaultReadCacheTTL, 0, time.Minute),
		WebhookAllowPrivate: r.Flag("WEBHOOK_ALLOW_PRIVATE"),
	}
	store := mongo.Config{URI: r.Str("MONGODB_URI", ""), Database: r.Str("MONGODB_DATABASE", ""), Timeout: storeCallTimeout, MaxPool: storePool}
	if store.URI == "" {
		r.Fail("MONGODB_URI is required")
	}
	lbs, lbKey, lbCA := r.List("LOADBALANCERS"), r.Str("LOADBALANCER_KEY", ""), r.Str("LOADBALANCER_CA_FILE", "")
	if len(lbs) == 0 {
		r.Fail("LOADBALANCERS is required: comma-separated load-balancer URLs")
	}
	var err error
	if cfg.HostsAllow, err = netguard.ParsePrefixes(r.Str("FLEET_HOSTS_ALLOW", netguard.Private)); err != nil {
		r.Fail("FLEET_HOSTS_ALLOW: %w", err)
	} else if len(cfg.HostsAllow) == 0 {
		r.Fail("FLEET_HOSTS_ALLOW: want comma-separated CIDR prefixes, e.g. 10.0.0.0/16")
	}
	if v := r.Str("MAX_FLEET_BANS", ""); v != "" {
		if cfg.MaxFleetBans, err = strconv.Atoi(v); err != nil || cfg.MaxFleetBans < 1 {
			r.Fail("MAX_FLEET_BANS=%q: want a whole number of at least 1", v)
		}
	}
	if cfg.CORSAllowedOrigins, err = ParseOrigins(r.Str("CORS_ALLOWED_ORIGINS", "")); err != nil {
		r.Fail("CORS_ALLOWED_ORIGINS: %w", err)
	}
	if secret := r.Str("TOKEN_SECRET", ""); secret != "" {
		if cfg.Tokens, err = token.NewIssuer(secret); err != nil {
			r.Fail("%w", err)
		}
	}
	if err := r.Err(); err != nil {
		return Config{}, nil, err
	}
	if cfg.ReadCacheTTL == 0 {
		cfg.ReadCacheTTL = -1 // set to 0: none (a zero Config means the default)
	}

	lbClient := newHTTPClient()
	if cfg.Picker, err = lbclient.NewPicker(lbs, lbKey, lbCA, lbClient); err != nil {
		return Config{}, nil, fmt.Errorf("LOADBALANCERS: %w", err)
	}
	st := &lazyStore{cfg: store}
	if _, err := st.open(ctx); err != nil {
		if chatfleet.ErrorCode(err) == chatfleet.EINVALID {
			return Config{}, nil, err // a malformed URI will not get better
		}
		cfg.Log.Warn("store not reachable at start; requests will try again", "err", err)
	}
	cfg.Store = st
	closeAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st.Close(ctx)
		lbClient.CloseIdleConnections()
	}
	return cfg, closeAll, nil
}
