package mongo

import (
	"context"
	"slices"
	"time"

	"github.com/chatfleet/chatfleet"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxEvents is the most events one read returns.
const maxEvents = 1000

// AppendEvents stores evs, filling At (now) where it is zero; At is rounded
// to the millisecond as stored. It inserts them unordered and ignores the
// duplicate keys of the unique (room, seq) index, so appending an event whose
// (room, seq) is stored is a no-op and a retried batch never duplicates (the
// stored event is kept, even if the retried one differs). It returns EINVALID
// for an event with no room.
func (s *Store) AppendEvents(ctx context.Context, evs []chatfleet.Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := s.stamp()
	docs := make([]any, len(evs))
	for i, ev := range evs {
		if ev.Room == "" {
			return invalid("event %d has no room", i)
		}
		if ev.At.IsZero() {
			ev.At = now
		}
		ev.At = ms(ev.At)
		docs[i] = ev
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.events.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !onlyDuplicates(err) {
		return fail("append events", err)
	}
	return nil
}

// Events returns the events of room with Seq after afterSeq, oldest first:
// at most limit, and at most 1000 (also when limit is not positive).
func (s *Store) Events(ctx context.Context, room string, afterSeq int64, limit int) ([]chatfleet.Event, error) {
	if limit <= 0 || limit > maxEvents {
		limit = maxEvents
	}
	filter := bson.D{{Key: "room", Value: room}, {Key: "seq", Value: bson.D{{Key: "$gt", Value: afterSeq}}}}
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit))
	return s.findEvents(ctx, "events", filter, opts)
}

// LastEvents returns the last n events of room, at most 1000, oldest first;
// none if n is not positive.
func (s *Store) LastEvents(ctx context.Context, room string, n int) ([]chatfleet.Event, error) {
	if n <= 0 {
		return []chatfleet.Event{}, nil
	}
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}).SetLimit(int64(min(n, maxEvents)))
	evs, err := s.findEvents(ctx, "last events", bson.D{{Key: "room", Value: room}}, opts)
	slices.Reverse(evs)
	return evs, err
}

func (s *Store) findEvents(ctx context.Context, op string, filter bson.D, opts *options.FindOptionsBuilder) ([]chatfleet.Event, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cur, err := s.events.Find(ctx, filter, opts)
	if err != nil {
		return nil, fail(op, err)
	}
	evs := []chatfleet.Event{}
	if err := cur.All(ctx, &evs); err != nil {
		return nil, fail(op, err)
	}
	return evs, nil
}

// TrimEvents deletes the events whose At is before olderThan, of every room,
// and returns how many it deleted.
func (s *Store) TrimEvents(ctx context.Context, olderThan time.Time) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.events.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: olderThan}}}})
	if err != nil {
		return 0, fail("trim events", err)
	}
	return int(res.DeletedCount), nil
}
