package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/mongo"
)

// lazyStore is a chatfleet.Store on MongoDB that connects on first use and
// again after a failed connect, so that a function whose store is down at
// cold start answers 503 until it is back instead of failing to start. Once
// connected it is the mongo.Store, which rides out later outages itself.
// It is safe for concurrent use.
//
// It lives here, not in package mongo: only a Lambda function, which cannot
// wait at start, wants it; a host refuses to start without its store.
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

// do calls f with the connected store, for the methods that return an error
// only.
func (l *lazyStore) do(ctx context.Context, f func(*mongo.Store) error) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return f(st)
}

// call calls f with the connected store, for the methods that return a
// value and an error (a method cannot have type parameters); the two that
// return two values call get themselves.
func call[T any](ctx context.Context, l *lazyStore, f func(*mongo.Store) (T, error)) (T, error) {
	st, err := l.get(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return f(st)
}

func (l *lazyStore) CreateRoom(ctx context.Context, r *chatfleet.Room) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.CreateRoom(ctx, r) })
}

func (l *lazyStore) Room(ctx context.Context, name string) (*chatfleet.Room, error) {
	return call(ctx, l, func(st *mongo.Store) (*chatfleet.Room, error) { return st.Room(ctx, name) })
}

func (l *lazyStore) RoomByKey(ctx context.Context, name string) (*chatfleet.Room, error) {
	return call(ctx, l, func(st *mongo.Store) (*chatfleet.Room, error) { return st.RoomByKey(ctx, name) })
}

func (l *lazyStore) UpdateRoom(ctx context.Context, name string, upd chatfleet.RoomUpdate) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.UpdateRoom(ctx, name, upd) })
}

func (l *lazyStore) ListRooms(ctx context.Context, f chatfleet.RoomFilter) ([]*chatfleet.Room, string, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, "", err
	}
	return st.ListRooms(ctx, f)
}

func (l *lazyStore) SyncHost(ctx context.Context, hostID string, rooms []*chatfleet.Room, refreshBefore time.Time) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.SyncHost(ctx, hostID, rooms, refreshBefore) })
}

func (l *lazyStore) ReapStale(ctx context.Context, staleBefore, closeBefore time.Time) (int, int, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, 0, err
	}
	return st.ReapStale(ctx, staleBefore, closeBefore)
}

func (l *lazyStore) AddBan(ctx context.Context, b *chatfleet.Ban) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.AddBan(ctx, b) })
}

func (l *lazyStore) AddBans(ctx context.Context, bans []chatfleet.Ban) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.AddBans(ctx, bans) })
}

func (l *lazyStore) RemoveBan(ctx context.Context, id string) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.RemoveBan(ctx, id) })
}

func (l *lazyStore) Bans(ctx context.Context, f chatfleet.BanFilter) ([]chatfleet.Ban, error) {
	return call(ctx, l, func(st *mongo.Store) ([]chatfleet.Ban, error) { return st.Bans(ctx, f) })
}

func (l *lazyStore) RemoveUserBans(ctx context.Context, room, userID string) ([]chatfleet.Ban, error) {
	return call(ctx, l, func(st *mongo.Store) ([]chatfleet.Ban, error) { return st.RemoveUserBans(ctx, room, userID) })
}

func (l *lazyStore) CountBans(ctx context.Context, room string, now time.Time) (int, error) {
	return call(ctx, l, func(st *mongo.Store) (int, error) { return st.CountBans(ctx, room, now) })
}

func (l *lazyStore) BlockedWords(ctx context.Context) ([]string, error) {
	return call(ctx, l, func(st *mongo.Store) ([]string, error) { return st.BlockedWords(ctx) })
}

func (l *lazyStore) SetBlockedWords(ctx context.Context, words []string) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.SetBlockedWords(ctx, words) })
}

func (l *lazyStore) RoomDefaults(ctx context.Context) (chatfleet.RoomSettings, error) {
	return call(ctx, l, func(st *mongo.Store) (chatfleet.RoomSettings, error) { return st.RoomDefaults(ctx) })
}

func (l *lazyStore) SetRoomDefaults(ctx context.Context, s chatfleet.RoomSettings) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.SetRoomDefaults(ctx, s) })
}

func (l *lazyStore) Audit(ctx context.Context, e *chatfleet.AuditEntry) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.Audit(ctx, e) })
}

func (l *lazyStore) AuditLog(ctx context.Context, f chatfleet.AuditFilter) ([]chatfleet.AuditEntry, error) {
	return call(ctx, l, func(st *mongo.Store) ([]chatfleet.AuditEntry, error) { return st.AuditLog(ctx, f) })
}

func (l *lazyStore) AppendEvents(ctx context.Context, evs []chatfleet.Event) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.AppendEvents(ctx, evs) })
}

func (l *lazyStore) Events(ctx context.Context, room string, afterSeq int64, limit int) ([]chatfleet.Event, error) {
	return call(ctx, l, func(st *mongo.Store) ([]chatfleet.Event, error) { return st.Events(ctx, room, afterSeq, limit) })
}

func (l *lazyStore) LastEvents(ctx context.Context, room string, n int) ([]chatfleet.Event, error) {
	return call(ctx, l, func(st *mongo.Store) ([]chatfleet.Event, error) { return st.LastEvents(ctx, room, n) })
}

func (l *lazyStore) TrimEvents(ctx context.Context, olderThan time.Time) (int, error) {
	return call(ctx, l, func(st *mongo.Store) (int, error) { return st.TrimEvents(ctx, olderThan) })
}

func (l *lazyStore) Ping(ctx context.Context) error {
	return l.do(ctx, func(st *mongo.Store) error { return st.Ping(ctx) })
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
