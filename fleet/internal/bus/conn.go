package bus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Connection settings: a partition is noticed after PingInterval *
// MaxPingsOut without an answer (4-6 s), then the client reconnects every
// reconnectWait forever, holding at most reconnectBuf bytes of publishes.
const (
	pingInterval  = 2 * time.Second
	maxPingsOut   = 2
	reconnectWait = 250 * time.Millisecond
	reconnectBuf  = 8 << 20
	dupWindow     = 2 * time.Minute
)

// Conn is one process's connection to NATS and JetStream. It is safe for
// concurrent use; its publishers, consumers and subscriptions share it.
type Conn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger
}

// Connect dials NATS with cfg (its URL list, its credentials file, its TLS
// roots) under the connection name name. The first dial must succeed; after
// it the connection reconnects forever, and logs each disconnection at Warn
// and each reconnection at Info.
func Connect(cfg Config, name string, log *slog.Logger) (*Conn, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("bus: no NATS URL")
	}
	if cfg.StreamMaxAge <= 0 {
		cfg.StreamMaxAge = DefaultStreamMaxAge
	}
	if cfg.StreamMaxPerRoom <= 0 {
		cfg.StreamMaxPerRoom = DefaultStreamMaxPerRoom
	}
	log = log.With("nats", name)
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.ReconnectBufSize(reconnectBuf),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats error", "subject", subj, "err", err)
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	return &Conn{nc: nc, js: js, cfg: cfg, log: log}, nil
}

// Close closes the connection; its publishers, consumers and subscriptions
// stop.
func (c *Conn) Close() { c.nc.Close() }

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// EnsureStream creates StreamName, or updates it to cfg's bounds. It is
// idempotent: every origin and edge calls it at start.
func (c *Conn) EnsureStream(ctx context.Context) error {
	_, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamName,
		Subjects:          []string{StreamSubject},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: int64(c.cfg.StreamMaxPerRoom),
		MaxAge:            c.cfg.StreamMaxAge,
		Discard:           jetstream.DiscardOld,
		Duplicates:        dupWindow,
	})
	if err != nil {
		return fmt.Errorf("bus: ensure stream %s: %w", StreamName, err)
	}
	return nil
}

// PurgeRoom removes room's events from the stream: a new life of a room name
// (its origin starts with no history to resume) must not hand its edges the
// events of an earlier room of that name.
func (c *Conn) PurgeRoom(ctx context.Context, room string) error {
	st, err := c.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("bus: purge %s: %w", room, err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(EventsSubject(room))); err != nil {
		return fmt.Errorf("bus: purge %s: %w", room, err)
	}
	return nil
}
