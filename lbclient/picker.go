package lbclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/chatfleet/chatfleet"
)

// tryTimeout bounds one attempt at one load balancer, so that a hung one
// leaves time to ask the next.
const tryTimeout = 3 * time.Second

// Picker asks the load balancers for hosts, failing over between them. It is
// safe for concurrent use.
type Picker struct {
	urls   []string
	key    string
	client *http.Client
}

// NewPicker returns a Picker for the load balancers at urls, authenticating
// with key and trusting caFile's certificates (if set) in addition to the
// system's. client is used if not nil. It returns an error if there is no URL
// or key, a URL is not http(s), or the CA file cannot be used.
func NewPicker(urls []string, key string, caFile string, client *http.Client) (*Picker, error) {
	us, err := parseURLs(urls)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, errors.New("lbclient: a load-balancer key is required")
	}
	c, err := httpClient(caFile, client)
	if err != nil {
		return nil, err
	}
	return &Picker{urls: us, key: key, client: c}, nil
}

// Pick returns the host that should run a new room. It asks the load
// balancers in turn, starting with a random one, until one picks a host.
//
// It returns EUNAVAILABLE when the load balancers that answered have no host
// that can take a room, or when none answered; EINVALID if they refuse req.
// Other errors (a wrong key, say) carry no code: they are the operator's to
// fix, not the caller's.
func (p *Picker) Pick(ctx context.Context, req chatfleet.PickRequest) (chatfleet.Host, error) {
	var out struct {
		Host chatfleet.Host `json:"host"`
	}
	if err := p.each(ctx, http.MethodPost, "/api/v1/pick", req, &out); err != nil {
		return chatfleet.Host{}, fmt.Errorf("pick host: %w", err)
	}
	return out.Host, nil
}

// Hosts returns every host one load balancer knows, with its state (accepting,
// draining or down), load and last heartbeat, ordered by id. It fails over
// like Pick and returns EUNAVAILABLE when no load balancer answered.
func (p *Picker) Hosts(ctx context.Context) ([]chatfleet.Host, error) {
	var out struct {
		Hosts []chatfleet.Host `json:"hosts"`
	}
	if err := p.each(ctx, http.MethodGet, "/api/v1/hosts", nil, &out); err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return out.Hosts, nil
}

// each asks the load balancers in turn, from a random one, until one answers
// 2xx. A load balancer that has no host (503 "unavailable") is not final:
// another one may have heard from more hosts, e.g. if the first just restarted.
// An invalid request (400, 413) is final: every load balancer would refuse it.
func (p *Picker) each(ctx context.Context, method, path string, body, out any) error {
	start := rand.IntN(len(p.urls))
	var noHost *chatfleet.Error
	var errs []error
	unreachable := 0
	for i := range p.urls {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		base := p.urls[(start+i)%len(p.urls)]
		tctx, cancel := context.WithTimeout(ctx, tryTimeout)
		_, err := call(tctx, p.client, method, base, path, p.key, body, out)
		cancel()
		if err == nil {
			return nil
		}
		var le *lbError
		switch {
		case !errors.As(err, &le):
			unreachable++
		case le.err.Code == chatfleet.EUNAVAILABLE && le.status == http.StatusServiceUnavailable:
			noHost = le.err
			continue
		case le.err.Code == chatfleet.EINVALID || le.err.Code == chatfleet.ETOOLARGE:
			return &chatfleet.Error{Code: le.err.Code, Message: "load balancer: " + le.err.Message}
		case le.status >= 500:
			unreachable++
		}
		errs = append(errs, fmt.Errorf("%s: %w", redact(base), err))
	}
	switch {
	case noHost != nil:
		return &chatfleet.Error{Code: chatfleet.EUNAVAILABLE, Message: noHost.Message}
	case unreachable == len(errs):
		// The details (addresses, dial errors) are for the log, not the caller.
		return fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE, "no load balancer answered (%d tried)", len(p.urls)), errors.Join(errs...))
	}
	return fmt.Errorf("no load balancer answered: %w", errors.Join(errs...))
}
