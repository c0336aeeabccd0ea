// Package entitle asks an external entitlement hook (ENTITLEMENT_URL) whether
// viewers may watch a paid room, and applies the failure policy: fail open for
// a grace period after the hook's last good answer, then fail closed.
//
// A room process builds a Policy around a Client and gives it to its room
// (room.Config.Entitle); the room calls Check at a viewer's handshake and
// every interval for all its viewers in one batch. docs/events.md describes
// the hook's request and answer. Requests are signed with ENTITLEMENT_SECRET,
// a key of their own, in a form that is not a webhook's (package webhook,
// SignEntitlement): a room owner who holds a webhook secret cannot forge an
// entitlement request, nor the hook's holder a webhook.
package entitle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/internal/envconf"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/webhook"
)

// Decisions of the hook.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Check asks whether one user may be in a room with a role.
type Check struct {
	UserID string         `json:"userId"`
	Room   string         `json:"room"`
	Role   chatfleet.Role `json:"role"`
}

// Result is the hook's answer for one user.
type Result struct {
	UserID   string `json:"userId"`
	Decision string `json:"decision"`         // Allow or Deny
	Reason   string `json:"reason,omitempty"` // shown to a denied viewer
	// Until, for an allow, is when it expires: the room does not ask again
	// about the user before then. Zero: ask again at the next interval.
	Until time.Time `json:"until,omitzero"`
	// FailOpen is set on allows the Policy made up while the hook fails.
	FailOpen bool `json:"-"`
}

// ErrUnavailable is returned by Policy.Check once the hook has failed for
// longer than the fail-open grace: the caller fails closed.
var ErrUnavailable = errors.New("entitlement service unavailable")

// Config is the entitlement configuration of a room process.
type Config struct {
	URL      string        // ENTITLEMENT_URL; empty: no checks
	Interval time.Duration // ENTITLEMENT_INTERVAL: re-check of connected viewers; default 60s
	FailOpen time.Duration // ENTITLEMENT_FAIL_OPEN: grace after the last good answer; default 30s
	Timeout  time.Duration // ENTITLEMENT_TIMEOUT: per hook call; default 2s
	Secret   string        // ENTITLEMENT_SECRET: signs every request; required with URL, at least 16 bytes
}

// MinSecretLen is the shortest ENTITLEMENT_SECRET accepted.
const MinSecretLen = 16

// ConfigFromEnv reads the configuration through getenv (os.Getenv); errors
// name the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	c := Config{URL: r.Str("ENTITLEMENT_URL", ""), Secret: r.Str("ENTITLEMENT_SECRET", "")}
	if c.URL != "" {
		if _, err := netguard.HTTPURL(c.URL, 0); err != nil {
			return c, fmt.Errorf("ENTITLEMENT_URL: want an http or https URL")
		}
		// Requests used to be signed with WEBHOOK_SECRET when it was set:
		// a host upgraded without the new key stops here, rather than
		// sending requests its hook can no longer verify.
		if c.Secret == "" {
			return c, fmt.Errorf("ENTITLEMENT_SECRET is required with ENTITLEMENT_URL: entitlement requests are signed with it (header %s, docs/events.md), no longer with WEBHOOK_SECRET", webhook.HeaderEntitlementSignature)
		}
	}
	if c.Secret != "" && len(c.Secret) < MinSecretLen {
		return c, fmt.Errorf("ENTITLEMENT_SECRET must be at least %d bytes", MinSecretLen)
	}
	c.Interval = r.PositiveDur("ENTITLEMENT_INTERVAL", 60*time.Second)
	// The grace may be 0 (fail closed at once), never negative.
	if c.FailOpen = r.Dur("ENTITLEMENT_FAIL_OPEN", 30*time.Second); c.FailOpen < 0 {
		r.Fail("ENTITLEMENT_FAIL_OPEN=%v: want 0 or a positive duration such as 30s", c.FailOpen)
	}
	c.Timeout = r.PositiveDur("ENTITLEMENT_TIMEOUT", 2*time.Second)
	return c, r.Err()
}

// Client calls the hook: POST URL with {"checks":[…]}, answered by
// {"results":[…]}, one result per check. It is safe for concurrent use.
type Client struct {
	URL     string
	Timeout time.Duration // per call; default 2s
	Secret  string        // signs requests (HeaderEntitlementSignature); empty: unsigned
	HTTP    *http.Client  // default: one without redirects
	Now     func() time.Time
}

type request struct {
	Checks []Check `json:"checks"`
}

type response struct {
	Results []Result `json:"results"`
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Check asks the hook about checks and returns one result per check, in
// order. It fails on a timeout, a transport error, a status other than 2xx,
// or an answer that is not JSON, misses a user or has an unknown decision.
func (c *Client) Check(ctx context.Context, checks []Check) ([]Result, error) {
	if len(checks) == 0 {
		return nil, nil
	}
	body, err := json.Marshal(request{Checks: checks})
	if err != nil {
		return nil, fmt.Errorf("encode entitlement checks: %w", err)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("entitlement request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chatfleet-entitlement/"+chatfleet.Version)
	if c.Secret != "" {
		now := time.Now
		if c.Now != nil {
			now = c.Now
		}
		ts := strconv.FormatInt(now().Unix(), 10)
		req.Header.Set(webhook.HeaderTimestamp, ts)
		req.Header.Set(webhook.HeaderEntitlementSignature, webhook.SignEntitlement(c.Secret, ts, body))
	}
	hc := c.HTTP
	if hc == nil {
		hc = noRedirects
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a credential
		}
		return nil, fmt.Errorf("entitlement hook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("entitlement hook answered %d", resp.StatusCode)
	}
	var out response
	if err := json.NewDecoder(io.LimitReader(resp.Body, int64(64<<10+512*len(checks)))).Decode(&out); err != nil {
		return nil, fmt.Errorf("entitlement hook answer: %w", err)
	}
	byUser := make(map[string]Result, len(out.Results))
	for _, r := range out.Results {
		if r.Decision != Allow && r.Decision != Deny {
			return nil, fmt.Errorf("entitlement hook answer: decision %q for %q", r.Decision, r.UserID)
		}
		byUser[r.UserID] = r
	}
	results := make([]Result, len(checks))
	for i, ch := range checks {
		r, ok := byUser[ch.UserID]
		if !ok {
			return nil, fmt.Errorf("entitlement hook answer: no result for %q", ch.UserID)
		}
		results[i] = r
	}
	return results, nil
}

// Checker is what Policy wraps: Client, or anything that answers checks.
type Checker interface {
	Check(ctx context.Context, checks []Check) ([]Result, error)
}

// Policy applies the failure policy to a Checker. While the hook answers,
// its answers are returned. When it fails, and its last good answer (or the
// Policy's creation) is less than FailOpen ago, every check is allowed
// (FailOpen set); after that, Check returns an error wrapping ErrUnavailable
// until the hook answers again. It is safe for concurrent use.
type Policy struct {
	checker  Checker
	failOpen time.Duration
	now      func() time.Time

	mu     sync.Mutex
	lastOK time.Time
}

// NewPolicy returns a Policy over c; now defaults to time.Now.
func NewPolicy(c Checker, failOpen time.Duration, now func() time.Time) *Policy {
	if now == nil {
		now = time.Now
	}
	return &Policy{checker: c, failOpen: failOpen, now: now, lastOK: now()}
}

// New returns the Policy over a Client for cfg.
func New(cfg Config) *Policy {
	return NewPolicy(&Client{URL: cfg.URL, Timeout: cfg.Timeout, Secret: cfg.Secret}, cfg.FailOpen, nil)
}

// Check asks the hook and applies the policy; see Policy.
func (p *Policy) Check(ctx context.Context, checks []Check) ([]Result, error) {
	res, err := p.checker.Check(ctx, checks)
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		if now.After(p.lastOK) {
			p.lastOK = now
		}
		return res, nil
	}
	if since := now.Sub(p.lastOK); since < p.failOpen {
		res = make([]Result, len(checks))
		for i, c := range checks {
			res[i] = Result{UserID: c.UserID, Decision: Allow, FailOpen: true}
		}
		return res, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// LastOK returns when the hook last answered (or the Policy was made).
func (p *Policy) LastOK() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastOK
}
