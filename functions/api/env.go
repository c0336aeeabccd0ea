package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/lbclient"
	"github.com/chatfleet/chatfleet/mongo"
	"github.com/chatfleet/chatfleet/token"
)

// storePool is the most connections a container opens to the store: a
// Lambda container serves one request at a time.
const storePool = 4

// ConfigFromEnv builds a Config and its clients from the environment, as a
// Lambda function's main does once per container, outside the handler:
//
//	MONGODB_URI, MONGODB_DATABASE         the store (required; database "chatfleet" by default)
//	LOADBALANCERS, LOADBALANCER_KEY       load-balancer base URLs, comma-separated, and their key (required)
//	LOADBALANCER_CA_FILE                  extra PEM root CA for https load balancers
//	TOKEN_SECRET                          join-token secret (the room API needs it)
//	API_KEY, ADMIN_API_KEY                the keys callers of the room and admin APIs present
//	FLEET_KEY, FLEET_ADMIN_KEY            the hosts' KEY and ADMIN_KEY
//	REQUEST_TIMEOUT                       deadline of one request, e.g. 8s (the default)
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
func ConfigFromEnv(ctx context.Context) (Config, func(), error) {
	get := os.Getenv
	level := get("LOG_LEVEL")
	if level == "" {
		level = get("AWS_LAMBDA_LOG_LEVEL")
	}
	var cfg Config
	var err error
	if cfg.Log, err = newLogger(level); err != nil {
		return Config{}, nil, err
	}
	uri := get("MONGODB_URI")
	if uri == "" {
		return Config{}, nil, errors.New("MONGODB_URI is required")
	}
	lbClient := newHTTPClient()
	lbs := splitList(get("LOADBALANCERS"))
	if len(lbs) == 0 {
		return Config{}, nil, errors.New("LOADBALANCERS is required: comma-separated load-balancer URLs")
	}
	picker, err := lbclient.NewPicker(lbs, get("LOADBALANCER_KEY"), get("LOADBALANCER_CA_FILE"), lbClient)
	if err != nil {
		return Config{}, nil, fmt.Errorf("LOADBALANCERS: %w", err)
	}
	cfg.Picker = picker
	if secret := get("TOKEN_SECRET"); secret != "" {
		if cfg.Tokens, err = token.NewIssuer(secret); err != nil {
			return Config{}, nil, err
		}
	}
	cfg.APIKey, cfg.AdminAPIKey = get("API_KEY"), get("ADMIN_API_KEY")
	cfg.FleetKey, cfg.FleetAdminKey = get("FLEET_KEY"), get("FLEET_ADMIN_KEY")
	if s := get("REQUEST_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return Config{}, nil, fmt.Errorf("REQUEST_TIMEOUT=%q: want a duration such as 8s", s)
		}
		cfg.RequestTimeout = d
	}
	if err := trustSettings(get, &cfg); err != nil {
		return Config{}, nil, err
	}
	if cfg.CORSAllowedOrigins, err = ParseOrigins(get("CORS_ALLOWED_ORIGINS")); err != nil {
		return Config{}, nil, fmt.Errorf("CORS_ALLOWED_ORIGINS: %w", err)
	}

	st := &lazyStore{cfg: mongo.Config{URI: uri, Database: get("MONGODB_DATABASE"), Timeout: storeCallTimeout, MaxPool: storePool}}
	if _, err := st.open(ctx); err != nil {
		if chatfleet.ErrorCode(err) == chatfleet.EINVALID {
			return Config{}, nil, err // a malformed URI will not get better
		}
		cfg.Log.Warn("store not reachable at start; requests will try again", "err", err)
	}
	cfg.Store = st
	client := lbClient
	closeAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st.Close(ctx)
		client.CloseIdleConnections()
	}
	return cfg, closeAll, nil
}

// trustSettings reads FLEET_HOSTS_ALLOW, WEBHOOK_ALLOW_PRIVATE and MAX_FLEET_BANS into cfg.
func trustSettings(get func(string) string, cfg *Config) error {
	allow := get("FLEET_HOSTS_ALLOW")
	if allow == "" {
		allow = netguard.Private
	}
	ps, err := netguard.ParsePrefixes(allow)
	if err != nil {
		return fmt.Errorf("FLEET_HOSTS_ALLOW: %w", err)
	}
	if len(ps) == 0 {
		return errors.New("FLEET_HOSTS_ALLOW: want comma-separated CIDR prefixes, e.g. 10.0.0.0/16")
	}
	cfg.HostsAllow = ps
	switch v := get("WEBHOOK_ALLOW_PRIVATE"); v {
	case "", "0":
	case "1":
		cfg.WebhookAllowPrivate = true
	default:
		return fmt.Errorf("WEBHOOK_ALLOW_PRIVATE=%q: want 1 or 0", v)
	}
	if s := get("MAX_FLEET_BANS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("MAX_FLEET_BANS=%q: want a whole number of at least 1", s)
		}
		cfg.MaxFleetBans = n
	}
	return nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if level != "" {
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", level)
		}
	}
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: l})), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// lazyStore is a chatfleet.Store on MongoDB that connects on first use and
// again after a failed connect, so that a function whose store is down at
// cold start answers 503 until it is back instead of failing to start.
// It is safe for concurrent use.
type lazyStore struct {
	cfg mongo.Config

	mu sync.Mutex
	st *mongo.Store
}

var _ chatfleet.Store = (*lazyStore)(nil)

// open returns the connected store, connecting if needed; its error is
// mongo.Open's (one line, no password).
func (l *lazyStore) open(ctx context.Context) (*mongo.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	st, err := mongo.Open(ctx, l.cfg)
	if err != nil {
		return nil, err
	}
	l.st = st
	return st, nil
}

// get is open for the Store's methods: every failure is EUNAVAILABLE
// "store unavailable", the cause is for the log only.
func (l *lazyStore) get(ctx context.Context) (*mongo.Store, error) {
	st, err := l.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "store unavailable"), err)
	}
	return st, nil
}

func (l *lazyStore) CreateRoom(ctx context.Context, r *chatfleet.Room) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.CreateRoom(ctx, r)
}

func (l *lazyStore) Room(ctx context.Context, name string) (*chatfleet.Room, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Room(ctx, name)
}

func (l *lazyStore) UpdateRoom(ctx context.Context, name string, upd chatfleet.RoomUpdate) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.UpdateRoom(ctx, name, upd)
}

func (l *lazyStore) ListRooms(ctx context.Context, f chatfleet.RoomFilter) ([]*chatfleet.Room, string, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, "", err
	}
	return st.ListRooms(ctx, f)
}

func (l *lazyStore) SyncHost(ctx context.Context, hostID string, rooms []*chatfleet.Room) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.SyncHost(ctx, hostID, rooms)
}

func (l *lazyStore) ReapStale(ctx context.Context, staleBefore, closeBefore time.Time) (int, int, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, 0, err
	}
	return st.ReapStale(ctx, staleBefore, closeBefore)
}

func (l *lazyStore) AddBan(ctx context.Context, b *chatfleet.Ban) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.AddBan(ctx, b)
}

func (l *lazyStore) AddBans(ctx context.Context, bans []chatfleet.Ban) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.AddBans(ctx, bans)
}

func (l *lazyStore) RemoveBan(ctx context.Context, id string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.RemoveBan(ctx, id)
}

func (l *lazyStore) Bans(ctx context.Context, f chatfleet.BanFilter) ([]chatfleet.Ban, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Bans(ctx, f)
}

func (l *lazyStore) RemoveUserBans(ctx context.Context, room, userID string) ([]chatfleet.Ban, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.RemoveUserBans(ctx, room, userID)
}

func (l *lazyStore) CountBans(ctx context.Context, room string, now time.Time) (int, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return st.CountBans(ctx, room, now)
}

func (l *lazyStore) BlockedWords(ctx context.Context) ([]string, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.BlockedWords(ctx)
}

func (l *lazyStore) SetBlockedWords(ctx context.Context, words []string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.SetBlockedWords(ctx, words)
}

func (l *lazyStore) RoomDefaults(ctx context.Context) (chatfleet.RoomSettings, error) {
	st, err := l.get(ctx)
	if err != nil {
		return chatfleet.RoomSettings{}, err
	}
	return st.RoomDefaults(ctx)
}

func (l *lazyStore) SetRoomDefaults(ctx context.Context, s chatfleet.RoomSettings) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.SetRoomDefaults(ctx, s)
}

func (l *lazyStore) Audit(ctx context.Context, e *chatfleet.AuditEntry) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.Audit(ctx, e)
}

func (l *lazyStore) AuditLog(ctx context.Context, f chatfleet.AuditFilter) ([]chatfleet.AuditEntry, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.AuditLog(ctx, f)
}

func (l *lazyStore) AppendEvents(ctx context.Context, evs []chatfleet.Event) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.AppendEvents(ctx, evs)
}

func (l *lazyStore) Events(ctx context.Context, room string, afterSeq int64, limit int) ([]chatfleet.Event, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Events(ctx, room, afterSeq, limit)
}

func (l *lazyStore) LastEvents(ctx context.Context, room string, n int) ([]chatfleet.Event, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.LastEvents(ctx, room, n)
}

func (l *lazyStore) TrimEvents(ctx context.Context, olderThan time.Time) (int, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return st.TrimEvents(ctx, olderThan)
}

func (l *lazyStore) Ping(ctx context.Context) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.Ping(ctx)
}

// Close closes the connection, if there is one.
func (l *lazyStore) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		return nil
	}
	err := l.st.Close(ctx)
	l.st = nil
	return err
}
