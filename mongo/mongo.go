// Package mongo is the store adapter on MongoDB: it implements
// chatfleet.Store on mongo-driver v2 and is the only package of the project
// that imports the driver.
//
// It keeps to what MongoDB and FerretDB v1 (the embedded server of the local
// stack and the tests, package devstore) both do: plain finds with sorts and
// limits, $in/$or/$lt/$gt filters, $set updates, upserts, unique indexes; no
// aggregation, transactions, change streams or TTL indexes. See docs/store.md.
package mongo

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Config says which server and database a Store uses. The zero value of every
// field but URI means its default.
type Config struct {
	// URI is the connection string, from the MONGODB_URI environment variable.
	URI string
	// Database is the database name; "chatfleet" if empty.
	Database string
	// Timeout bounds every call of the Store, within the caller's deadline;
	// 5s if zero. Finding a reachable server takes at most min(Timeout, 2s),
	// so that calls fail fast while the server is down.
	Timeout time.Duration
	// MaxPool is the most connections the Store opens to each server; the
	// driver's default (100) if zero.
	MaxPool uint64
	// Now is the clock that stamps CreatedAt, UpdatedAt and the like;
	// time.Now if nil.
	Now func() time.Time
}

// Collection names.
const (
	roomsColl    = "rooms"
	bansColl     = "bans"     // the fleet's bans, one document each
	roomBansColl = "roombans" // each room's bans, one document per room
	settingsColl = "settings"
	auditColl    = "audit"
	eventsColl   = "events"
)

// maxSelectWait caps how long a call waits for a reachable server.
const maxSelectWait = 2 * time.Second

// Store is the chatfleet.Store on MongoDB. It is safe for use by many
// goroutines at once. Every method bounds its work by Config.Timeout (and the
// caller's deadline) and returns errors as described at storeError.
type Store struct {
	client       *mongodrv.Client
	db           *mongodrv.Database
	rooms        *mongodrv.Collection
	bans         *mongodrv.Collection
	roomBansColl *mongodrv.Collection
	settings     *mongodrv.Collection
	audit        *mongodrv.Collection
	events       *mongodrv.Collection
	timeout      time.Duration
	now          func() time.Time
	creates      nameLocks // CreateRoom's, one name at a time
}

var _ chatfleet.Store = (*Store)(nil)

// Open connects to the server of cfg.URI, checks it answers, and creates the
// indexes the Store needs (a no-op when they exist). Each of these steps
// gives up after cfg.Timeout, within ctx's deadline; an unreachable server
// fails it in min(cfg.Timeout, 2s). Its error is one line naming MONGODB_URI,
// never the URI itself (it may hold a password): EINVALID for a URI that
// does not parse, EUNAVAILABLE for a host name that does not resolve, a
// server that cannot be reached or one that refuses the credentials.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URI == "" {
		return nil, chatfleet.Errorf(chatfleet.EINVALID, "MONGODB_URI is empty")
	}
	if cfg.Database == "" {
		cfg.Database = "chatfleet"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opts := options.Client().
		ApplyURI(cfg.URI).
		SetAppName("chatfleet").
		SetConnectTimeout(cfg.Timeout).
		SetServerSelectionTimeout(min(cfg.Timeout, maxSelectWait))
	if cfg.MaxPool > 0 {
		opts.SetMaxPoolSize(cfg.MaxPool)
	}
	client, err := mongodrv.Connect(opts)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) { // a mongodb+srv:// URI is resolved here
		return nil, &storeError{op: "open", brief: true, cause: err, err: chatfleet.Errorf(chatfleet.EUNAVAILABLE,
			"MONGODB_URI: cannot look up %s: %s", dnsErr.Name, oneLine(dnsErr.Err))}
	} else if err != nil {
		return nil, &storeError{op: "open", brief: true, cause: err, err: chatfleet.Errorf(chatfleet.EINVALID,
			"MONGODB_URI is not a valid MongoDB URI: %s", redact(oneLine(err.Error()), cfg.URI))}
	}
	s := &Store{
		client:  client,
		db:      client.Database(cfg.Database),
		timeout: cfg.Timeout,
		now:     cfg.Now,
	}
	s.rooms = s.db.Collection(roomsColl)
	s.bans = s.db.Collection(bansColl)
	s.roomBansColl = s.db.Collection(roomBansColl)
	s.settings = s.db.Collection(settingsColl)
	s.audit = s.db.Collection(auditColl)
	s.events = s.db.Collection(eventsColl)

	pingCtx, cancel := s.ctx(ctx)
	defer cancel()
	if err := client.Ping(pingCtx, nil); err != nil {
		s.disconnect()
		return nil, openError(err, cfg.URI, opts.Hosts, min(cfg.Timeout, maxSelectWait))
	}
	if err := s.createIndexes(ctx); err != nil {
		s.disconnect()
		return nil, err
	}
	if err := s.migrateRoomBans(ctx); err != nil {
		s.disconnect()
		return nil, err
	}
	return s, nil
}

// openError describes why the first ping failed, in one line.
func openError(err error, uri string, hosts []string, wait time.Duration) error {
	e := &storeError{op: "open", brief: true, cause: err}
	var ae *auth.Error
	var sse topology.ServerSelectionError
	switch {
	case errors.As(err, &ae):
		e.err = chatfleet.Errorf(chatfleet.EUNAVAILABLE, "MONGODB_URI: authentication failed on %s: %s",
			strings.Join(hosts, ","), redact(oneLine(ae.Error()), uri))
	case errors.As(err, &sse):
		reason := "no answer"
		for _, srv := range sse.Desc.Servers {
			if srv.LastError != nil {
				reason = oneLine(srv.LastError.Error())
			}
		}
		e.err = chatfleet.Errorf(chatfleet.EUNAVAILABLE, "MONGODB_URI: cannot reach %s within %s: %s",
			strings.Join(hosts, ","), wait, reason)
	default:
		e.err = chatfleet.Errorf(chatfleet.EUNAVAILABLE, "MONGODB_URI: %s does not answer: %s",
			strings.Join(hosts, ","), redact(oneLine(err.Error()), uri))
	}
	return e
}

func (s *Store) disconnect() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.client.Disconnect(ctx)
}

// index is one index of a collection.
type index struct {
	coll   *mongodrv.Collection
	name   string
	keys   bson.D
	unique bool
}

// indexes lists every index the Store uses, by collection.
func (s *Store) indexes() []index {
	return []index{
		{s.rooms, "name_unique", bson.D{{Key: "name", Value: 1}}, true},
		{s.rooms, "status_viewers", bson.D{{Key: "status", Value: 1}, {Key: "viewers", Value: -1}, {Key: "name", Value: 1}}, false},
		{s.rooms, "status_createdAt", bson.D{{Key: "status", Value: 1}, {Key: "createdAt", Value: -1}, {Key: "name", Value: 1}}, false},
		{s.rooms, "hostId", bson.D{{Key: "hostId", Value: 1}}, false},
		{s.bans, "userId", bson.D{{Key: "userId", Value: 1}}, false},
		{s.audit, "at", bson.D{{Key: "at", Value: -1}}, false},
		{s.audit, "target_at", bson.D{{Key: "target", Value: 1}, {Key: "at", Value: -1}}, false},
		{s.events, "room_seq_unique", bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}}, true},
		{s.events, "at", bson.D{{Key: "at", Value: 1}}, false},
	}
}

// createIndexes creates the indexes that do not exist yet, by name; an index
// of the same name is left as it is. It lists before it creates, and creates
// one index per command: FerretDB v1.24 fails (panics) on a createIndexes
// command that names two or more existing indexes.
func (s *Store) createIndexes(ctx context.Context) error {
	existing := map[string]map[string]bool{}
	for _, ix := range s.indexes() {
		coll := ix.coll.Name()
		if existing[coll] == nil {
			lctx, cancel := s.ctx(ctx)
			specs, err := ix.coll.Indexes().ListSpecifications(lctx)
			cancel()
			if err != nil {
				return fail("list indexes of "+coll, err)
			}
			existing[coll] = map[string]bool{}
			for _, spec := range specs {
				existing[coll][spec.Name] = true
			}
		}
		if existing[coll][ix.name] {
			continue
		}
		o := options.Index().SetName(ix.name)
		if ix.unique {
			o.SetUnique(true)
		}
		cctx, cancel := s.ctx(ctx)
		_, err := ix.coll.Indexes().CreateOne(cctx, mongodrv.IndexModel{Keys: ix.keys, Options: o})
		cancel()
		if err != nil {
			return fail("create index "+coll+"."+ix.name, err)
		}
	}
	return nil
}

// Ping checks the server answers within ctx's deadline and Config.Timeout;
// EUNAVAILABLE if not.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return fail("ping", s.client.Ping(ctx, nil))
}

// Close closes the Store's connections, waiting within ctx's deadline for
// calls under way. The Store cannot be used afterwards.
func (s *Store) Close(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return fail("close", s.client.Disconnect(ctx))
}

// DropDatabase deletes the Store's database with everything in it. It is for
// tests and for resetting the local stack; nothing in production calls it.
func (s *Store) DropDatabase(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return fail("drop database", s.db.Drop(ctx))
}

// ctx bounds one call by the Store's timeout.
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// stamp returns the Store's clock at the precision of BSON dates, so that a
// time written and read back compares equal.
func (s *Store) stamp() time.Time { return ms(s.now()) }

// ms rounds t down to the millisecond, in UTC, as BSON dates store it.
// The zero time stays zero.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// oneLine joins the lines of s.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// redact removes the password of uri from s.
func redact(s, uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		// The URI is not parseable enough to know its password: drop what
		// follows the scheme's "//" up to '@' wherever it appears.
		if i := strings.Index(uri, "@"); i > 0 {
			if j := strings.Index(uri, "//"); j >= 0 && j+2 < i {
				s = strings.ReplaceAll(s, uri[j+2:i], "xxxxx")
			}
		}
		return s
	}
	if p, ok := u.User.Password(); ok && p != "" {
		s = strings.ReplaceAll(s, p, "xxxxx")
		s = strings.ReplaceAll(s, url.QueryEscape(p), "xxxxx")
	}
	return s
}
