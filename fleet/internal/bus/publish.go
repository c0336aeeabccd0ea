package bus

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher settings: at most pubWindow publishes wait for their
// acknowledgement at once; one not acknowledged within pubAckTimeout is
// published again (as is one that failed), after pubRetryWait.
const (
	pubWindow     = 256
	pubAckTimeout = 2 * time.Second
	pubRetryWait  = 100 * time.Millisecond
	pubCloseFlush = time.Second
)

// Publisher publishes one room's sequenced events to its EventsSubject, in
// seq order, each until JetStream has stored it. Publish may be called from
// any goroutine (the room's hub); it never blocks.
type Publisher struct {
	c        *Conn
	js       jetstream.JetStream
	subject  string
	instance string
	max      int

	mu     sync.Mutex
	queue  []pubEvent // not yet acknowledged, in the order given; queue[i] for i < sent were published
	closed bool

	dropped atomic.Int64
	wake    chan struct{} // a new event or Close; capacity 1
	done    chan struct{} // closed when run returns
}

type pubEvent struct {
	seq  int64
	data []byte
}

// NewPublisher starts the publisher of room's events under the origin's
// instance id (HeaderMsgID is "<instance>:<seq>"), queueing at most
// maxQueue events not yet stored (at least 1). JetStream deduplicates ids
// across the whole stream, so instance must be unique in the fleet (the
// room's life, hostapi.RoomOptions.Instance): two rooms publishing under one
// instance would lose each other's events.
func (c *Conn) NewPublisher(room, instance string, maxQueue int) *Publisher {
	if maxQueue < 1 {
		maxQueue = 1
	}
	if instance == "" {
		// The stream deduplicates by id across every room: a room without
		// an instance stands for itself by its name.
		instance = "room-" + room
	}
	// A JetStream context of its own: its async window and timeout are this
	// publisher's.
	js, err := jetstream.New(c.nc,
		jetstream.WithPublishAsyncMaxPending(2*pubWindow),
		jetstream.WithPublishAsyncTimeout(pubAckTimeout))
	if err != nil { // only for invalid options, which these are not
		c.log.Error("publisher: jetstream context", "err", err)
		js = c.js
	}
	p := &Publisher{c: c, js: js, subject: EventsSubject(room), instance: instance, max: maxQueue,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p
}

// Publish queues the event seq with data (copied), the frame the origin's
// clients get. It returns false, and counts a drop, when maxQueue events
// wait already; false too after Close.
func (p *Publisher) Publish(seq int64, data []byte) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	if len(p.queue) >= p.max {
		p.mu.Unlock()
		p.dropped.Add(1)
		return false
	}
	p.queue = append(p.queue, pubEvent{seq: seq, data: append([]byte(nil), data...)})
	p.mu.Unlock()
	p.signal()
	return true
}

// Dropped is how many events Publish refused because the queue was full.
func (p *Publisher) Dropped() int64 { return p.dropped.Load() }

// Close stops taking events, tries for at most one second to have the queued
// ones stored, then stops the publisher. Events still queued are lost here
// (the origin's master keeps them in its log).
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
	<-p.done
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the one goroutine that publishes: it keeps up to pubWindow
// publishes in flight, pops the oldest once it is acknowledged, and on any
// failure publishes again from the oldest one not acknowledged (JetStream
// drops the copies of those already stored by their message id).
func (p *Publisher) run() {
	defer close(p.done)
	var (
		inflight []jetstream.PubAckFuture // the futures of queue[:len(inflight)]
		deadline <-chan time.Time         // set once closed
		failing  bool                     // the last attempt failed: log once per outage
	)
	retry := time.NewTimer(0)
	<-retry.C
	waitRetry := func() bool { // false: the close deadline passed
		retry.Reset(pubRetryWait)
		select {
		case <-retry.C:
			return true
		case <-deadline:
			return false
		}
	}
	fail := func(err error) {
		if !failing {
			p.c.log.Warn("publish events: retrying", "subject", p.subject, "err", err)
			failing = true
		}
		inflight = inflight[:0]
	}
	for {
		p.mu.Lock()
		n, closed := len(p.queue), p.closed
		var next pubEvent
		if len(inflight) < n {
			next = p.queue[len(inflight)]
		}
		p.mu.Unlock()
		if closed {
			if n == 0 {
				return
			}
			if deadline == nil {
				deadline = time.After(pubCloseFlush)
			}
		}
		if len(inflight) < n && len(inflight) < pubWindow {
			if !p.c.nc.IsConnected() {
				// Nothing goes out while NATS is away: the queue holds the
				// events, they are published after the reconnect.
				if len(inflight) > 0 {
					fail(nats.ErrDisconnected)
				}
				if !waitRetry() {
					return
				}
				continue
			}
			f, err := p.js.PublishMsgAsync(p.msg(next))
			if err != nil {
				fail(err)
				if !waitRetry() {
					return
				}
				continue
			}
			inflight = append(inflight, f)
			continue
		}
		var okc <-chan *jetstream.PubAck
		var errc <-chan error
		if len(inflight) > 0 {
			okc, errc = inflight[0].Ok(), inflight[0].Err()
		}
		select {
		case <-okc:
			if failing {
				p.c.log.Info("publish events: stored again", "subject", p.subject)
				failing = false
			}
			inflight = inflight[1:]
			p.mu.Lock()
			p.queue[0] = pubEvent{}
			p.queue = p.queue[1:]
			p.mu.Unlock()
		case err := <-errc:
			fail(err)
			if !waitRetry() {
				return
			}
		case <-p.wake:
		case <-deadline:
			return
		}
	}
}

// msg is the events message of e.
func (p *Publisher) msg(e pubEvent) *nats.Msg {
	seq := strconv.FormatInt(e.seq, 10)
	return &nats.Msg{
		Subject: p.subject,
		Data:    e.data,
		Header: nats.Header{
			HeaderSeq:   []string{seq},
			HeaderMsgID: []string{p.instance + ":" + seq},
		},
	}
}
