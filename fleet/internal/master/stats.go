package master

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/fleet/internal/ipc"
	"github.com/chatfleet/chatfleet/fleet/internal/procstat"
	"github.com/chatfleet/chatfleet/hostapi"
)

// HostStats is the host's load as the admin API reports it.
type HostStats = hostapi.HostStats

func (m *Master) hostStats() HostStats {
	m.mu.Lock()
	rooms := m.roomList()
	state := chatfleet.HostAccepting
	if m.draining {
		state = chatfleet.HostDraining
	}
	m.mu.Unlock()
	s := HostStats{HostID: m.cfg.HostID, State: string(state), Rooms: len(rooms), Version: chatfleet.Version,
		UptimeSec: m.cfg.Now().Sub(m.started).Seconds()}
	for _, r := range rooms {
		r.mu.Lock()
		s.Conns += r.stats.Conns
		s.Viewers += r.stats.Viewers
		s.MsgsPerSec += r.stats.MsgsPerSec
		s.MemBytes += r.stats.RSSBytes
		s.SlowDrops += r.stats.SlowDrops
		s.CPU += r.cpuRate
		r.mu.Unlock()
	}
	s.CPU += m.selfCPU()
	s.MemBytes += procstat.RSS()
	return s
}

// selfCPU returns the cores the master used since the previous call.
func (m *Master) selfCPU() float64 {
	cpu := procstat.CPU()
	now := time.Now()
	m.cpuMu.Lock()
	defer m.cpuMu.Unlock()
	var rate float64
	if !m.cpuAt.IsZero() {
		if dt := now.Sub(m.cpuAt); dt > 100*time.Millisecond {
			rate = (cpu - m.cpuPrev).Seconds() / dt.Seconds()
		} else {
			return m.cpuRate
		}
	}
	m.cpuPrev, m.cpuAt, m.cpuRate = cpu, now, rate
	return rate
}

// syncLoop keeps the store's rooms collection true for this host: every
// SyncEvery it writes what the host runs, so a store that was down catches
// up as soon as it returns.
func (m *Master) syncLoop(ctx context.Context) {
	if m.cfg.Store == nil {
		return
	}
	m.awaitAdopted(ctx, min(m.cfg.SyncEvery, 3*time.Second))
	t := time.NewTicker(m.cfg.SyncEvery)
	defer t.Stop()
	for {
		m.syncOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// awaitAdopted waits up to limit for the rooms this master took over to
// answer (their ready carries their stats), so that the first sync writes
// them as they are, not offline and empty.
func (m *Master) awaitAdopted(ctx context.Context, limit time.Duration) {
	m.mu.Lock()
	rs := m.roomList()
	m.mu.Unlock()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for _, r := range rs {
		select {
		case <-r.ready:
		case <-r.done:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (m *Master) syncOnce(ctx context.Context) {
	if m.cfg.Store == nil {
		return
	}
	m.mu.Lock()
	rs := m.roomList()
	m.mu.Unlock()
	now := m.cfg.Now()
	rooms := make([]*chatfleet.Room, 0, len(rs))
	for _, r := range rs {
		// An edge is not the room: its origin's record is (and the origin's
		// host keeps it).
		if !r.opts.edge() {
			rooms = append(rooms, r.domain(now))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	if err := m.cfg.Store.SyncHost(ctx, m.cfg.HostID, rooms, now.Add(-m.refreshAge())); err != nil {
		m.metrics.storeErrors.Inc()
		m.log.Warn("sync rooms to store", "err", err)
		return
	}
	// Every live host also reaps the rooms of hosts that stopped reporting:
	// stale after StaleAfter, closed after CloseStaleAfter. Idempotent, so
	// many hosts doing it at once is harmless.
	stale, closed, err := m.cfg.Store.ReapStale(ctx, now.Add(-m.cfg.StaleAfter), now.Add(-m.cfg.CloseStaleAfter))
	if err != nil {
		m.metrics.storeErrors.Inc()
		m.log.Warn("reap stale rooms", "err", err)
	} else if stale+closed > 0 {
		m.log.Info("reaped rooms of silent hosts", "stale", stale, "closed", closed)
	}
}

// refreshAge is how old a room's record may get before a sync rewrites it
// though nothing changed: half of StaleAfter less a sync interval, so that
// a room is never older than half of StaleAfter at a host that syncs (10 s
// at the defaults: every third sync). 0 (every sync) if the intervals leave
// no room for more.
func (m *Master) refreshAge() time.Duration {
	return max(m.cfg.StaleAfter/2-m.cfg.SyncEvery, 0)
}

// metrics are the master's Prometheus metrics, on the admin port's /metrics.
type metrics struct {
	reg           *prometheus.Registry
	roomsCreated  prometheus.Counter
	roomCrashes   prometheus.Counter
	sparesStarted prometheus.Counter
	roomFailures  prometheus.Counter
	storeErrors   prometheus.Counter
	eventsDropped prometheus.Counter

	banFrames    prometheus.Counter
	banBytes     prometheus.Counter
	banLists     prometheus.Counter
	bansRefused  *prometheus.CounterVec
	fleetEncodes prometheus.Counter

	hookDeliveries prometheus.Counter
	hookFailures   prometheus.Counter
	hookDropped    prometheus.Counter
	hookRefused    prometheus.Counter
}

func newMetrics(m *Master) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: "build_info",
		Help:        "Always 1; its labels say which release and master–room protocol this master runs.",
		ConstLabels: prometheus.Labels{"version": chatfleet.Version, "protocol": strconv.Itoa(ipc.Version)}}, func() float64 { return 1 }))
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "chatserver", Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string, f func(HostStats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: name, Help: help},
			func() float64 { return f(m.hostStats()) }))
	}
	gauge("rooms", "Rooms running on this host.", func(s HostStats) float64 { return float64(s.Rooms) })
	gauge("connections", "Client connections across all rooms.", func(s HostStats) float64 { return float64(s.Conns) })
	gauge("viewers", "Distinct viewers across all rooms.", func(s HostStats) float64 { return float64(s.Viewers) })
	gauge("messages_per_second", "Chat messages accepted per second across all rooms.", func(s HostStats) float64 { return s.MsgsPerSec })
	gauge("slow_consumer_drops", "Clients dropped for not keeping up, summed over running rooms.", func(s HostStats) float64 { return float64(s.SlowDrops) })
	gauge("draining", "1 while the host does not accept new rooms.", func(s HostStats) float64 {
		if s.State == string(chatfleet.HostDraining) {
			return 1
		}
		return 0
	})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: "room_spares",
		Help: "Spare room processes ready to become a room (ROOM_SPARES)."},
		func() float64 { m.mu.Lock(); defer m.mu.Unlock(); return float64(len(m.spares)) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: "webhook_queued",
		Help: "Webhook events waiting for delivery, over every room and URL."},
		func() float64 { return float64(m.hooks.Queued()) }))
	bans := func(name, help string, f func(fleet, rooms int) int) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: name, Help: help},
			func() float64 { return float64(f(m.bans.counts())) }))
	}
	bans("fleet_bans", "Fleet bans held and applied to every room (MAX_FLEET_BANS).", func(f, _ int) int { return f })
	bans("room_bans", "Rooms' own bans held, summed over the rooms of this host (MAX_ROOM_BANS each).", func(_, r int) int { return r })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: "bans_unstored",
		Help: "Bans issued in rooms waiting to be written to the store (MAX_PENDING_BANS)."},
		func() float64 { return float64(m.bans.unstored()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "chatserver", Name: "blocked_words_left_out",
		Help: "Blocked words of the store not pushed to rooms: beyond 5000 words or longer than 100 bytes."},
		func() float64 { return float64(m.cache.cutWords()) }))
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "chatserver", Name: "bans_refused_total",
		Help: "Bans refused, by reason: scope (a room's fleet ban or another room's), invalid, cap (MAX_*_BANS), queue (MAX_PENDING_BANS)."},
		[]string{"reason"})
	reg.MustRegister(refused)
	return &metrics{
		banFrames:    counter("ban_frames_sent_total", "Bans frames written to rooms' control connections."),
		banBytes:     counter("ban_bytes_sent_total", "Bytes of bans frames written to rooms' control connections."),
		banLists:     counter("ban_lists_sent_total", "Whole ban lists (Reset to Done) sent to rooms: one per room session."),
		bansRefused:  refused,
		fleetEncodes: counter("fleet_ban_encodes_total", "Times the fleet's whole ban list was encoded (once per version, shared by every room)."),

		reg:           reg,
		roomsCreated:  counter("rooms_created_total", "Rooms created on this host."),
		roomCrashes:   counter("room_crashes_total", "Room processes that exited unexpectedly."),
		sparesStarted: counter("room_spares_started_total", "Spare room processes started and ready."),
		roomFailures:  counter("room_failures_total", "Rooms marked failed after too many crashes."),
		storeErrors:   counter("store_errors_total", "Store calls that failed."),
		eventsDropped: counter("events_dropped_total", "Room events dropped from the store write queue after a long store outage."),

		hookDeliveries: counter("webhook_deliveries_total", "Webhook batches a receiver took (2xx)."),
		hookFailures:   counter("webhook_failures_total", "Webhook delivery attempts that failed (timeout, error, non-2xx); each batch is retried."),
		hookDropped:    counter("webhook_dropped_total", "Webhook events dropped: a room's queue was full, a batch was given up after WebhookMaxAge, its destination was not a public address, or the host daemon exited."),
		hookRefused:    counter("webhook_refused_total", "Webhook events dropped because a room's webhook URL resolved to an address that is not public (loopback, private, link-local...); also counted in webhook_dropped_total."),
	}
}
