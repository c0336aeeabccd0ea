package room

import (
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// paceGrain is how finely the pacer groups wake-ups: writers due within the
// same millisecond wake together, on one timer.
const paceGrain = time.Millisecond

// pacer wakes writers that wait for their connection's next write (WriteDelay
// after the last one). The writers of one fan-out are due at nearly the same
// time: they share a wake-up, one runtime timer for the room instead of one
// per connection (a timer per writer and write was a tenth of the room's CPU
// at N=1,000), and they write together, so they can share one framed message
// (shared).
type pacer struct {
	mu      sync.Mutex
	epoch   time.Time
	due     []wakeup // ascending by tick
	timer   *time.Timer
	armedAt int64 // tick the timer is set for; 0: not armed
}

type wakeup struct {
	tick int64
	ch   chan struct{}
}

func newPacer() *pacer {
	p := &pacer{epoch: time.Now()}
	p.timer = time.AfterFunc(time.Hour, p.fire)
	p.timer.Stop()
	return p
}

// wait returns a channel closed at t, or within paceGrain after it.
func (p *pacer) wait(t time.Time) <-chan struct{} {
	tick := int64(t.Sub(p.epoch)/paceGrain) + 1
	p.mu.Lock()
	defer p.mu.Unlock()
	i, found := slices.BinarySearchFunc(p.due, tick, func(w wakeup, t int64) int { return int(w.tick - t) })
	if found {
		return p.due[i].ch
	}
	ch := make(chan struct{})
	p.due = slices.Insert(p.due, i, wakeup{tick, ch})
	if p.armedAt == 0 || tick < p.armedAt {
		p.armedAt = tick
		p.timer.Reset(time.Until(p.epoch.Add(time.Duration(tick) * paceGrain)))
	}
	return ch
}

// fire wakes every writer that is due and arms the timer for the next ones.
func (p *pacer) fire() {
	now := int64(time.Since(p.epoch) / paceGrain)
	p.mu.Lock()
	n := 0
	for n < len(p.due) && p.due[n].tick <= now {
		close(p.due[n].ch)
		n++
	}
	p.due = slices.Delete(p.due, 0, n)
	p.armedAt = 0
	if len(p.due) > 0 {
		p.armedAt = p.due[0].tick
		p.timer.Reset(time.Until(p.epoch.Add(time.Duration(p.armedAt) * paceGrain)))
	}
	p.mu.Unlock()
}

// shared is the last batch written that more than one connection may write
// as it is: every viewer of a fan-out usually has the same frames queued at
// its write. The second writer of a batch frames it once as a prepared
// message (one encoding, no copy per connection), and the rest write those
// bytes.
type shared struct {
	mu     sync.Mutex
	frames []*frame
	pm     *websocket.PreparedMessage
}

// maxSharedFrames bounds the batches compared for sharing: a longer one is a
// connection catching up alone.
const maxSharedFrames = 64

// prepared returns the framed message for batch, or nil when batch is not
// the last batch seen or is too big for one message. It holds the frames it
// compares with, so a frame's address is not reused while it is kept.
func (s *shared) prepared(batch []*frame) *websocket.PreparedMessage {
	if len(batch) > maxSharedFrames {
		return nil
	}
	n := len(batch) - 1
	for _, f := range batch {
		n += len(f.data)
	}
	if n > maxFrameBytes {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.frames, batch) {
		s.frames = append(s.frames[:0], batch...)
		s.pm = nil
		return nil
	}
	if s.pm == nil {
		data := batch[0].data
		if len(batch) > 1 {
			data = make([]byte, 0, n)
			for i, f := range batch {
				if i > 0 {
					data = append(data, '\n')
				}
				data = append(data, f.data...)
			}
		}
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, data)
		if err != nil {
			return nil
		}
		s.pm = pm
	}
	return s.pm
}
