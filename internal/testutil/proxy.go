package testutil

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Toxiproxy, embedded: one API server (it only holds the logger and the
// metrics the proxies report to) for the test binary.
var (
	toxOnce sync.Once
	toxSrv  *toxiproxy.ApiServer
)

// Proxy is one Toxiproxy proxy in front of an upstream address, for network
// faults between two real processes.
type Proxy struct {
	t    testing.TB
	P    *toxiproxy.Proxy
	Addr string // host:port clients connect to
}

// NewProxy starts a proxy on a free loopback port in front of upstream; it
// stops when the test ends.
func NewProxy(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	toxOnce.Do(func() {
		zerolog.SetGlobalLevel(zerolog.Disabled)
		toxSrv = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	})
	p := toxiproxy.NewProxy(toxSrv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start proxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{t: t, P: p, Addr: p.Listen}
}

// Add adds a toxic to the proxy's stream ("upstream": client to server,
// "downstream": server to client); it applies to open connections too.
func (p *Proxy) Add(name, typ, stream string, attrs map[string]any) {
	p.t.Helper()
	b, _ := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "attributes": attrs})
	if _, err := p.P.Toxics.AddToxicJson(strings.NewReader(string(b))); err != nil {
		p.t.Fatalf("add toxic %s: %v", name, err)
	}
}

// Remove takes a toxic away.
func (p *Proxy) Remove(name string) {
	p.t.Helper()
	if err := p.P.Toxics.RemoveToxic(context.Background(), name); err != nil {
		p.t.Fatalf("remove toxic %s: %v", name, err)
	}
}
