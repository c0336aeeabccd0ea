// Package lbclient talks to the load-balancer service (fleet/internal/lb):
// a Registrar keeps a chatserver registered with every load balancer, a Picker
// asks them which host should run a new room. See docs/loadbalancer.md.
//
// It imports only the domain, httpx and the standard library, so the fleet and
// the control API can both use it.
package lbclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/netguard"
)

// maxResponse bounds what is read of a load balancer's answer.
const maxResponse = 8 << 20

// lbError is an error answer of a load balancer.
type lbError struct {
	status int
	err    *chatfleet.Error
}

func (e *lbError) Error() string {
	return fmt.Sprintf("status %d: %s: %s", e.status, e.err.Code, e.err.Message)
}

// parseURLs checks and normalises load-balancer base URLs.
func parseURLs(urls []string) ([]string, error) {
	if len(urls) == 0 {
		return nil, errors.New("lbclient: no load-balancer URL")
	}
	out := make([]string, 0, len(urls))
	for _, s := range urls {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		if _, err := netguard.HTTPURL(s, 0); err != nil {
			return nil, fmt.Errorf("lbclient: load-balancer URL %q: want http(s)://host:port", redact(s))
		}
		out = append(out, s)
	}
	return out, nil
}

// redact returns s with any password replaced, for messages and logs.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// httpClient returns client, or a new one when nil, trusting caFile's
// certificates in addition to the system's when caFile is set.
func httpClient(caFile string, client *http.Client) (*http.Client, error) {
	if caFile == "" {
		if client != nil {
			return client, nil
		}
		return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("lbclient: read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("lbclient: CA file %s holds no PEM certificate", caFile)
	}
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	var t *http.Transport
	switch base := c.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = base.Clone()
	default:
		return nil, fmt.Errorf("lbclient: a CA file needs the HTTP client's Transport to be nil or an *http.Transport, not %T", base)
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = pool
	c.Transport = t
	return c, nil
}

// call sends method base+path with key and body (as JSON, if not nil) and
// decodes the data envelope of a 2xx answer into out (if not nil). An error
// answer is an *lbError; anything else is a transport or decoding error.
func call(ctx context.Context, client *http.Client, method, base, path, key string, body, out any) (status int, err error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err // *url.Error: names method and redacted URL, never the key
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, redact(base+path), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var env httpx.Envelope
		if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Code == "" {
			env.Error = &chatfleet.Error{Code: httpx.Code(resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
		}
		return resp.StatusCode, &lbError{status: resp.StatusCode, err: env.Error}
	}
	if out != nil {
		// Lenient on purpose: a newer load balancer may add fields.
		if err := json.Unmarshal(b, &struct {
			Data any `json:"data"`
		}{out}); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, redact(base+path), err)
		}
	}
	return resp.StatusCode, nil
}
