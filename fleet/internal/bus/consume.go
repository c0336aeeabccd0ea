package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Consume settings: a seq beyond the next one waits for the missing ones at
// most holdFor, and at most holdMax events wait at once; a consumer that
// failed is created again after consumeRetry.
const (
	holdFor      = 2 * time.Second
	holdMax      = 10_000
	consumeRetry = time.Second
)

// Consume delivers room's events, from the first one the stream holds and
// then live, to deliver, called from one goroutine in room-seq order (the
// HeaderSeq of each message). The first event received sets where the order
// starts. An event whose seq was delivered already is dropped; one beyond the
// next seq waits (at most holdFor, at most holdMax events) for the missing
// ones, then is delivered anyway: the gap is what the origin lost.
//
// Consume survives reconnections and server restarts: its ordered consumer
// is created again from the last message received. It returns nil when ctx
// ends, or an error when the stream is missing or the connection closed.
func (c *Conn) Consume(ctx context.Context, room string, deliver func(seq int64, data []byte)) error {
	o := newOrderer(deliver)
	var streamSeq uint64 // the stream seq of the last message received
	for {
		err := c.consumeFrom(ctx, room, o, &streamSeq)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("bus: consume %s: %w", room, err)
		}
		c.log.Warn("consume events: starting again", "room", room, "err", err)
		t := time.NewTimer(consumeRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// consumeFrom runs one ordered consumer from the message after *streamSeq
// until ctx ends or the consumer fails, feeding o.
func (c *Conn) consumeFrom(ctx context.Context, room string, o *orderer, streamSeq *uint64) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{EventsSubject(room)}}
	if *streamSeq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = *streamSeq + 1
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := c.js.OrderedConsumer(cctx, StreamName, cfg)
	cancel()
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	// The iterator's Next blocks (for seconds while the consumer is created
	// again), so a reader goroutine feeds this one, which alone delivers
	// and keeps the hold's timer. Stop may wait for a reset in progress:
	// it runs on its own.
	msgs := make(chan jetstream.Msg, 256)
	errc := make(chan error, 1)
	quit := make(chan struct{})
	defer func() {
		close(quit)
		go it.Stop()
	}()
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-quit:
				return
			}
		}
	}()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	take := func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil {
			*streamSeq = md.Sequence.Stream
		}
		seq, err := strconv.ParseInt(m.Headers().Get(HeaderSeq), 10, 64)
		if err != nil || seq <= 0 {
			c.log.Warn("consume events: message without a seq", "room", room)
			return
		}
		o.add(seq, m.Data(), time.Now())
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-msgs:
			take(m)
		case err := <-errc:
			// The reader sent every message before its error.
			for len(msgs) > 0 {
				take(<-msgs)
			}
			return err
		case now := <-hold.C:
			o.expire(now)
		}
		if until := o.deadline(); !until.IsZero() {
			hold.Reset(time.Until(until))
		} else {
			hold.Stop()
		}
	}
}

// orderer puts events in seq order for deliver. It belongs to one goroutine.
type orderer struct {
	deliver   func(seq int64, data []byte)
	started   bool
	last      int64 // the last seq delivered
	held      map[int64][]byte
	heldSince time.Time // when the next gap began to be waited for
}

func newOrderer(deliver func(int64, []byte)) *orderer {
	return &orderer{deliver: deliver, held: make(map[int64][]byte)}
}

// add takes the event seq received at now.
func (o *orderer) add(seq int64, data []byte, now time.Time) {
	if !o.started {
		o.started, o.last = true, seq-1
	}
	if seq <= o.last {
		return
	}
	if seq == o.last+1 {
		o.deliver(seq, data)
		o.last = seq
		o.flush(now)
		return
	}
	if _, dup := o.held[seq]; dup {
		return
	}
	for len(o.held) >= holdMax {
		o.skip(now)
		if seq <= o.last {
			return
		}
	}
	if seq == o.last+1 { // the skip reached it
		o.deliver(seq, data)
		o.last = seq
		o.flush(now)
		return
	}
	if len(o.held) == 0 {
		o.heldSince = now
	}
	o.held[seq] = data
}

// flush delivers the held events that follow the last one delivered.
func (o *orderer) flush(now time.Time) {
	progress := false
	for {
		d, ok := o.held[o.last+1]
		if !ok {
			break
		}
		delete(o.held, o.last+1)
		o.last++
		o.deliver(o.last, d)
		progress = true
	}
	if progress {
		o.heldSince = now // a further gap gets its own wait
	}
}

// skip gives up on the current gap: it delivers the lowest held event and
// those that follow it.
func (o *orderer) skip(now time.Time) {
	lowest := int64(0)
	for s := range o.held {
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	if lowest == 0 {
		return
	}
	o.last = lowest - 1
	o.flush(now)
}

// deadline is when the current gap stops being waited for; zero when
// nothing is held.
func (o *orderer) deadline() time.Time {
	if len(o.held) == 0 {
		return time.Time{}
	}
	return o.heldSince.Add(holdFor)
}

// expire skips the current gap if it has been waited for long enough.
func (o *orderer) expire(now time.Time) {
	if d := o.deadline(); !d.IsZero() && !now.Before(d) {
		o.skip(now)
	}
}
