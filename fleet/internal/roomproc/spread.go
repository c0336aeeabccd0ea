package roomproc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/bus"
	"github.com/chatfleet/chatfleet/fleet/internal/room"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/protocol"
)

// publishQueue bounds the events an origin holds for NATS (at 1,000 events a
// second, 100 s of an outage); the master's log keeps them all regardless.
const publishQueue = 100_000

// staleAfter is how long an edge serves without word from its origin (its
// count, every bus.AudienceEvery) or with NATS down before it sends its
// clients elsewhere.
const staleAfter = 5 * time.Second

// spread is a room process's part of a room spread over hosts: an origin's
// publisher and relay server, or an edge's consumer and relay client. A
// plain room has none (nil).
type spread struct {
	role string
	name string
	id   string // an edge's id in its reports: "<host name>/<port>"
	log  *slog.Logger
	conn *bus.Conn
	pub  *bus.Publisher // origin
	aud  *bus.Audience  // origin: the edges' reports
	stop []func()

	lastCount atomic.Int64 // edge: Unix ns of the origin's last count
}

// connectSpread connects a room of role origin or edge to NATS (the
// NATS_* variables its master passed on) and makes sure the stream exists.
func connectSpread(role, name string, port int, log *slog.Logger) (*spread, error) {
	cfg, err := bus.ConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, fmt.Errorf("a room of role %s needs NATS_URL", role)
	}
	host, _ := os.Hostname()
	id := host + "/" + strconv.Itoa(port)
	conn, err := bus.Connect(cfg, "chatfleet "+role+" "+name+" "+id, log)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.EnsureStream(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("NATS stream: %w", err)
	}
	return &spread{role: role, name: name, id: id, log: log, conn: conn}, nil
}

// configure sets what an edge room needs in its Config.
func (s *spread) configure(cfg *room.Config) {
	if s == nil || s.role != hostapi.RoleEdge {
		return
	}
	cfg.LogEvents = false // an edge sequences nothing: the origin's master logs the room
	cfg.Resume, cfg.StartSeq = nil, 0
	cfg.Edge = &room.Edge{Relay: func(ctx context.Context, who protocol.User, msg protocol.ClientMsg) (json.RawMessage, error) {
		return s.conn.Relay(ctx, s.name, bus.Relay{Edge: s.id, Who: who, Msg: msg})
	}}
}

// start runs the spread's side of the room once rm exists. resume and
// startSeq are what an origin resumed from: its history is published again
// (the stream stores each event once) so that edges miss nothing the
// previous process logged but did not publish; with neither, the room is
// new, and the stream's events of its name are purged.
func (s *spread) start(ctx context.Context, rm *room.Room, instance string, resume []chatfleet.Event, startSeq int64) error {
	if s == nil {
		return nil
	}
	switch s.role {
	case hostapi.RoleOrigin:
		if len(resume) == 0 && startSeq == 0 {
			// A new room: whatever the stream holds under its name is an
			// earlier room's.
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := s.conn.PurgeRoom(pctx, s.name)
			cancel()
			if err != nil {
				return err
			}
		}
		s.pub = s.conn.NewPublisher(s.name, instance, publishQueue)
		for _, e := range resume {
			s.pub.Publish(e.Seq, e.Data)
		}
		stop, err := s.conn.ServeRelay(s.name, func(ctx context.Context, r bus.Relay) json.RawMessage {
			return rm.Remote(ctx, r.Who, r.Msg)
		})
		if err != nil {
			return err
		}
		s.stop = append(s.stop, stop)
		s.aud = bus.NewAudience()
		if stop, err = s.conn.SubscribeAudience(s.name, s.aud); err != nil {
			return err
		}
		s.stop = append(s.stop, stop)
		go s.originLoop(ctx, rm)
	case hostapi.RoleEdge:
		s.lastCount.Store(time.Now().UnixNano())
		stop, err := s.conn.SubscribeCount(s.name, func(c bus.Count) {
			s.lastCount.Store(time.Now().UnixNano())
			rm.SetCount(c.Viewers)
		})
		if err != nil {
			return err
		}
		s.stop = append(s.stop, stop)
		go func() {
			if err := s.conn.Consume(ctx, s.name, rm.Deliver); err != nil && ctx.Err() == nil {
				s.log.Error("edge: the room's stream failed", "err", err)
				rm.Close("this server lost the room: reconnect")
			}
		}()
		go s.edgeLoop(ctx, rm)
	}
	return nil
}

// published hands an origin's sequenced events to NATS; it never waits.
func (s *spread) published(evs []chatfleet.Event) {
	if s == nil || s.pub == nil {
		return
	}
	for _, e := range evs {
		if !s.pub.Publish(e.Seq, e.Data) {
			// Logged at the first drop and every 1,000th: an outage at a
			// high rate must not flood the log.
			if d := s.pub.Dropped(); d == 1 || d%1000 == 0 {
				s.log.Warn("origin: NATS queue full; events left to the master's log", "seq", e.Seq, "dropped", d)
			}
		}
	}
}

// originLoop adds the edges' audience to the room and tells the edges the
// room's count every bus.AudienceEvery (also the origin's heartbeat).
func (s *spread) originLoop(ctx context.Context, rm *room.Room) {
	t := time.NewTicker(bus.AudienceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		viewers, edges := s.aud.Total(time.Now())
		rm.SetRemoteAudience(viewers)
		st := rm.Stats()
		if err := s.conn.PublishCount(s.name, bus.Count{Viewers: st.Viewers, Seq: st.Seq, Edges: edges}); err != nil && s.conn.Connected() {
			s.log.Warn("origin: count not sent", "err", err)
		}
	}
}

// edgeLoop reports the edge's audience to the origin and keeps the edge
// serving only while it is current: NATS connected and the origin heard
// within staleAfter.
func (s *spread) edgeLoop(ctx context.Context, rm *room.Room) {
	t := time.NewTicker(bus.AudienceEvery / 2)
	defer t.Stop()
	current := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := rm.Stats()
		if s.conn.Connected() {
			s.conn.ReportAudience(s.name, bus.EdgeReport{Edge: s.id, Viewers: st.Viewers, Conns: st.Conns})
		}
		heard := time.Since(time.Unix(0, s.lastCount.Load()))
		ok := s.conn.Connected() && heard < staleAfter
		if ok == current {
			continue
		}
		current = ok
		if ok {
			s.log.Info("edge: current again")
			rm.SetCurrent(true, "")
			continue
		}
		why := "lost NATS"
		if s.conn.Connected() {
			why = fmt.Sprintf("no word from the origin for %s", heard.Round(time.Second))
		}
		s.log.Warn("edge: stale; sending clients elsewhere", "why", why)
		rm.SetCurrent(false, "this server lost the room: reconnect")
	}
}

// close stops the spread's subscriptions and flushes the publisher.
func (s *spread) close() {
	if s == nil {
		return
	}
	for _, stop := range s.stop {
		stop()
	}
	if s.pub != nil {
		s.pub.Close()
	}
	s.conn.Close()
}
