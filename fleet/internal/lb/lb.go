// Package lb is the load-balancer service: chatservers register and heartbeat
// with it, and the control API asks it which host should run a new room.
//
// Its state is soft: it is built from heartbeats alone and nothing is
// persisted, so any number of instances run side by side, each told the same
// thing by every host, and a restarted one knows the fleet again after one
// heartbeat interval. See docs/loadbalancer.md.
package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
)

// Config configures a Server. Zero fields take their defaults.
type Config struct {
	Addr        string           // listen address; ":2000" if empty
	Key         string           // LOADBALANCER_KEY, required in X-API-Key on /api/v1
	DownAfter   time.Duration    // a host without heartbeat this long is down; 15s if zero
	ForgetAfter time.Duration    // a host down this long is dropped from the list; 10m if zero
	Now         func() time.Time // time.Now if nil
	TLSCertFile string           // PEM certificate (chain); HTTPS when set with TLSKeyFile
	TLSKeyFile  string           // PEM private key
	Log         *slog.Logger     // discards if nil
}

// Server is one load-balancer instance. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *registry
	tls     *tls.Config // nil: plain HTTP
	handler http.Handler
	ready   atomic.Bool

	heartbeats *prometheus.CounterVec
	picks      *prometheus.CounterVec
}

// New returns a Server for cfg. It returns an error if the key is missing, if
// only one of the TLS files is given, or if they cannot be loaded.
func New(cfg Config) (*Server, error) {
	if cfg.Key == "" {
		return nil, errors.New("lb: a key is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = ":2000"
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = 15 * time.Second
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Log}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("lb: TLS needs both a certificate and a key file")
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("lb: load TLS certificate: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.reg = &registry{
		downAfter:   cfg.DownAfter,
		forgetAfter: cfg.ForgetAfter,
		now:         cfg.Now,
		intn:        rand.IntN,
		log:         cfg.Log,
		hosts:       map[string]*entry{},
	}
	s.ready.Store(true)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler of every endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on the configured address and serves until ctx ends; see Serve.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("lb: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln, over TLS when configured, until ctx ends; then /readyz
// turns 503, in-flight requests get up to 5 seconds to finish, and it returns
// nil. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := httpx.NewServer(s.handler)
	srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug) // TLS handshake noise
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			srv.TLSConfig = s.tls
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	s.log.Info("load balancer listening", "addr", ln.Addr().String(), "tls", s.tls != nil, "downAfter", s.cfg.DownAfter.String())
	select {
	case err := <-errc:
		return fmt.Errorf("lb: serve: %w", err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests take milliseconds: what is left is connections that
		// never sent one.
		s.log.Warn("connections still open after 5s, closing them", "err", err)
		srv.Close()
	}
	s.log.Info("load balancer stopped")
	return nil
}

// routes builds the handler. /healthz, /readyz and /metrics need no key: they
// say nothing about single hosts (the metrics are counts by state).
func (s *Server) routes() http.Handler {
	metrics := prometheus.NewRegistry()
	s.heartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chatfleet_lb_heartbeats_total",
		Help: "Heartbeats received, by result (ok, invalid).",
	}, []string{"result"})
	s.picks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chatfleet_lb_picks_total",
		Help: "Pick requests answered, by result (ok, unavailable).",
	}, []string{"result"})
	metrics.MustRegister(s.heartbeats, s.picks, stateCollector{s.reg},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	key := func(h http.HandlerFunc) http.Handler { return httpx.RequireKey(s.cfg.Key, h) }
	mux := httpx.NewMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.Handle("GET /api/v1/hosts", key(s.listHosts))
	mux.Handle("GET /api/v1/hosts/{id}", key(s.getHost))
	mux.Handle("PUT /api/v1/hosts/{id}", key(s.putHost))
	mux.Handle("DELETE /api/v1/hosts/{id}", key(s.deleteHost))
	mux.Handle("POST /api/v1/pick", key(s.pick))
	return httpx.Recover(s.log, mux)
}

// readyz answers 200 while serving and 503 once shutdown has begun.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EUNAVAILABLE, "shutting down"))
		return
	}
	httpx.WriteData(w, http.StatusOK, map[string]string{"status": "ready"})
}

// putHost is a heartbeat: 201 when it registers the host, 200 after.
func (s *Server) putHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.decodeHost(w, r)
	if err != nil {
		s.heartbeats.WithLabelValues("invalid").Inc()
		s.log.Debug("heartbeat refused", "host", r.PathValue("id"), "err", err)
		httpx.WriteError(w, s.log, err)
		return
	}
	s.heartbeats.WithLabelValues("ok").Inc()
	stored, created := s.reg.heartbeat(h)
	s.log.Debug("heartbeat", "host", h.ID, "state", h.State, "rooms", h.Load.Rooms, "conns", h.Load.Conns)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	httpx.WriteData(w, status, map[string]chatfleet.Host{"host": stored})
}

// decodeHost reads and validates the heartbeat body of r.
func (s *Server) decodeHost(w http.ResponseWriter, r *http.Request) (chatfleet.Host, error) {
	id := r.PathValue("id")
	if err := ValidateHostID(id); err != nil {
		return chatfleet.Host{}, err
	}
	var h chatfleet.Host
	if err := httpx.DecodeJSON(w, r, 0, &h); err != nil {
		return h, err
	}
	if h == (chatfleet.Host{}) {
		return h, chatfleet.Errorf(chatfleet.EINVALID, "request body is empty: want the host as JSON")
	}
	if h.ID == "" {
		h.ID = id
	} else if h.ID != id {
		return h, chatfleet.Errorf(chatfleet.EINVALID, "field %q: %q does not match the id in the path", "id", h.ID)
	}
	return h, ValidateHost(h)
}

// deleteHost deregisters a host: 204, or 404 if it is not known.
func (s *Server) deleteHost(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.reg.remove(id) {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.ENOTFOUND, "host %q not found", id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h, ok := s.reg.host(id)
	if !ok {
		httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.ENOTFOUND, "host %q not found", id))
		return
	}
	httpx.WriteData(w, http.StatusOK, map[string]chatfleet.Host{"host": h})
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	httpx.WriteData(w, http.StatusOK, map[string][]chatfleet.Host{"hosts": s.reg.list()})
}

// pick answers the host for a new room, or 503 "unavailable" if none can take one.
func (s *Server) pick(w http.ResponseWriter, r *http.Request) {
	var req chatfleet.PickRequest
	if err := httpx.DecodeJSON(w, r, 0, &req); err != nil {
		httpx.WriteError(w, s.log, err)
		return
	}
	if err := validatePick(req); err != nil {
		httpx.WriteError(w, s.log, err)
		return
	}
	h, err := s.reg.pick(req)
	if err != nil {
		s.picks.WithLabelValues("unavailable").Inc()
		s.log.Debug("pick: no host", "region", req.Region, "err", err)
		httpx.WriteError(w, s.log, err)
		return
	}
	s.picks.WithLabelValues("ok").Inc()
	s.log.Debug("picked", "host", h.ID, "region", req.Region)
	httpx.WriteData(w, http.StatusOK, map[string]chatfleet.Host{"host": h})
}

// stateCollector exports the registry's hosts by state and its pending rooms
// at scrape time.
type stateCollector struct{ reg *registry }

var (
	hostsDesc   = prometheus.NewDesc("chatfleet_lb_hosts", "Known hosts, by state.", []string{"state"}, nil)
	pendingDesc = prometheus.NewDesc("chatfleet_lb_pending_rooms", "Rooms picked that no heartbeat has reported yet.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hostsDesc
	ch <- pendingDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	states, pending := c.reg.counts()
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(hostsDesc, prometheus.GaugeValue, float64(n), string(state))
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending))
}
