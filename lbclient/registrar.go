package lbclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatfleet/chatfleet"
)

// RegistrarConfig configures a Registrar. Zero fields take their defaults.
type RegistrarConfig struct {
	URLs       []string              // load-balancer base URLs (LOADBALANCERS), e.g. https://lb1:2000
	Key        string                // LOADBALANCER_KEY, sent in X-API-Key
	CAFile     string                // extra PEM root CA to trust, for a self-signed load-balancer certificate
	Every      time.Duration         // heartbeat interval; 5s if zero
	Report     func() chatfleet.Host // the host as it is now; called for every heartbeat
	Log        *slog.Logger          // discards if nil
	HTTPClient *http.Client          // a client with its own transport if nil
}

// Registrar keeps one chatserver registered with every load balancer: it
// heartbeats to each of them independently, retries a load balancer that is
// down with exponential backoff and jitter, registers again when it returns,
// and deregisters on shutdown.
//
// Report is called from one goroutine per load balancer, concurrently, and must
// be safe for that. Nudge may be called from any goroutine.
type Registrar struct {
	cfg        RegistrarConfig
	client     *http.Client
	ownsClient bool // client was built here: Run closes its idle connections
	log        *slog.Logger
	timeout    time.Duration // of one heartbeat request
	lbs        []*lbConn
	running    atomic.Bool
}

// lbConn is the Registrar's view of one load balancer.
type lbConn struct {
	base  string        // base URL
	name  string        // base URL with any password redacted, for logs
	nudge chan struct{} // a heartbeat is wanted now; buffered 1
}

// deregisterTimeout bounds the best-effort DELETE on shutdown.
const deregisterTimeout = 2 * time.Second

// NewRegistrar returns a Registrar for cfg. It returns an error if there is no
// URL or key, a URL is not http(s), Report is nil, or the CA file cannot be used.
func NewRegistrar(cfg RegistrarConfig) (*Registrar, error) {
	urls, err := parseURLs(cfg.URLs)
	if err != nil {
		return nil, err
	}
	if cfg.Key == "" {
		return nil, errors.New("lbclient: a load-balancer key is required")
	}
	if cfg.Report == nil {
		return nil, errors.New("lbclient: Report is required")
	}
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	client, err := httpClient(cfg.CAFile, cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	r := &Registrar{
		cfg:        cfg,
		client:     client,
		ownsClient: client != cfg.HTTPClient,
		log:        cfg.Log,
		timeout:    min(max(cfg.Every, 2*time.Second), 5*time.Second),
	}
	for _, u := range urls {
		r.lbs = append(r.lbs, &lbConn{base: u, name: redact(u), nudge: make(chan struct{}, 1)})
	}
	return r, nil
}

// Run heartbeats to every load balancer until ctx ends, then deregisters from
// each (best effort, 2 seconds at most) and returns nil. It blocks: run it in
// its own goroutine. Nothing it does waits on the caller, and a load balancer
// that is down or slow never delays the others. It returns an error at once if
// called a second time.
//
// A heartbeat in flight when ctx ends is let finish (it is bounded by the
// request timeout, 2 to 5 seconds) so that it cannot reach a load balancer
// after the deregistration.
func (r *Registrar) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("lbclient: Registrar.Run called twice")
	}
	var wg sync.WaitGroup
	for _, l := range r.lbs {
		wg.Go(func() { r.loop(ctx, l) })
	}
	wg.Wait()
	if r.ownsClient {
		// Let the load balancers' graceful shutdown see no idle HTTP/2
		// connection of ours waiting for its GOAWAY.
		r.client.CloseIdleConnections()
	}
	return nil
}

// Nudge asks for a heartbeat to every load balancer now, e.g. right after the
// host started or stopped draining. It never blocks; nudges that come while
// one is pending merge into it.
func (r *Registrar) Nudge() {
	for _, l := range r.lbs {
		select {
		case l.nudge <- struct{}{}:
		default:
		}
	}
}

// loop heartbeats to one load balancer until ctx ends.
func (r *Registrar) loop(ctx context.Context, l *lbConn) {
	log := r.log.With("lb", l.name)
	failures := 0
	for ctx.Err() == nil {
		var wait time.Duration
		created, err := r.heartbeat(ctx, l)
		switch {
		case err != nil:
			failures++
			// Rate-limited: the 1st, 2nd, 4th, 8th... failure in a row.
			if failures&(failures-1) == 0 {
				log.Warn("heartbeat to load balancer failed", "failures", failures, "err", err)
			}
			wait = backoff(failures, r.cfg.Every)
		case created:
			log.Info("registered with load balancer", "after_failures", failures)
			failures = 0
			wait = jitter(r.cfg.Every)
		default:
			if failures > 0 {
				log.Info("heartbeat to load balancer restored", "after_failures", failures)
			}
			failures = 0
			wait = jitter(r.cfg.Every)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-l.nudge:
		case <-t.C:
		}
		t.Stop()
	}
	r.deregister(l, log)
}

// heartbeat sends one heartbeat; created reports that it registered the host.
func (r *Registrar) heartbeat(ctx context.Context, l *lbConn) (created bool, err error) {
	h := r.cfg.Report()
	if h.ID == "" {
		return false, errors.New("Report returned a host without an id")
	}
	h.LastSeen = time.Time{} // the load balancer's to set
	if h.ReportedAt.IsZero() {
		h.ReportedAt = time.Now()
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	status, err := call(hctx, r.client, http.MethodPut, l.base, "/api/v1/hosts/"+url.PathEscape(h.ID), r.cfg.Key, h, nil)
	return status == http.StatusCreated, err
}

// deregister tells one load balancer that the host is gone. A host it does not
// know (404) is fine; other failures are logged and otherwise ignored: the
// load balancer marks the host down when its heartbeats stop.
func (r *Registrar) deregister(l *lbConn, log *slog.Logger) {
	id := r.cfg.Report().ID
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deregisterTimeout)
	defer cancel()
	_, err := call(ctx, r.client, http.MethodDelete, l.base, "/api/v1/hosts/"+url.PathEscape(id), r.cfg.Key, nil, nil)
	var le *lbError
	switch {
	case err == nil:
		log.Info("deregistered from load balancer")
	case errors.As(err, &le) && le.status == http.StatusNotFound:
	default:
		log.Warn("deregister from load balancer failed", "err", fmt.Errorf("delete host: %w", err))
	}
}

// backoff is the wait before retry n (1, 2, ...) of a failing load balancer:
// a quarter of the heartbeat interval, doubling per failure up to six
// intervals (30s by default), with equal jitter (half fixed, half random) so
// that a fleet does not retry in step.
func backoff(n int, every time.Duration) time.Duration {
	ceiling := 6 * every
	d := every / 4
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}

// jitter returns every ±10%, so that hosts started together spread out.
func jitter(every time.Duration) time.Duration {
	return every - every/10 + rand.N(every/5+1)
}
