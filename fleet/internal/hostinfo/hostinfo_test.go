package hostinfo

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIMDS serves the IMDSv2 subset Discover reads: a session token from
// PUT /latest/api/token, then GET /latest/meta-data/<path> with that token.
// Paths missing from meta answer 404, as on an instance without them.
type fakeIMDS struct {
	meta       map[string]string
	noToken    bool         // answer the token request 403 (an IMDSv1-only endpoint)
	tokenCalls atomic.Int32 // token requests seen
}

const testToken = "AQAEAtest-token=="

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		f.tokenCalls.Add(1)
		if r.Method != http.MethodPut || r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" || f.noToken {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		w.Write([]byte(testToken))
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") != testToken {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/latest/meta-data/")
	v, found := f.meta[path]
	if r.Method != http.MethodGet || !ok || !found {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(v))
}

func startIMDS(t *testing.T, f *fakeIMDS) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

func ec2Meta() map[string]string {
	return map[string]string{
		"instance-id":                 "i-0abc123def4567890",
		"placement/availability-zone": "eu-west-1b",
		"placement/region":            "eu-west-1",
		"public-hostname":             "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com",
		"public-ipv4":                 "203.0.113.7",
		"local-ipv4":                  "10.0.0.7",
	}
}

func TestDiscover(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	without := func(keys ...string) map[string]string {
		m := ec2Meta()
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	tests := []struct {
		name string
		meta map[string]string // nil: no IMDS
		cfg  Config            // IMDSEndpoint filled in when meta is set
		want Info
	}{
		{"env defaults to the host name", nil, Config{},
			Info{ID: hostname, PublicHost: hostname, Source: "env"}},
		{"env", nil, Config{HostID: "h1", PublicHost: "h1.example.com", Region: "local", Zone: "local-a"},
			Info{ID: "h1", PublicHost: "h1.example.com", Region: "local", Zone: "local-a", Source: "env"}},
		{"imds", ec2Meta(), Config{},
			Info{ID: "i-0abc123def4567890", PublicHost: "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com", Region: "eu-west-1", Zone: "eu-west-1b", Source: "imds"}},
		{"imds without public host name uses the public ip", without("public-hostname"), Config{},
			Info{ID: "i-0abc123def4567890", PublicHost: "203.0.113.7", Region: "eu-west-1", Zone: "eu-west-1b", Source: "imds"}},
		{"imds without public address uses the private ip", without("public-hostname", "public-ipv4"), Config{},
			Info{ID: "i-0abc123def4567890", PublicHost: "10.0.0.7", Region: "eu-west-1", Zone: "eu-west-1b", Source: "imds"}},
		{"imds without placement/region takes it from the zone", without("placement/region"), Config{},
			Info{ID: "i-0abc123def4567890", PublicHost: "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com", Region: "eu-west-1", Zone: "eu-west-1b", Source: "imds"}},
		{"env wins over imds", ec2Meta(), Config{PublicHost: "chat.example.com", Region: "eu"},
			Info{ID: "i-0abc123def4567890", PublicHost: "chat.example.com", Region: "eu", Zone: "eu-west-1b", Source: "imds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			var f *fakeIMDS
			if tt.meta != nil {
				f = &fakeIMDS{meta: tt.meta}
				cfg.IMDSEndpoint = startIMDS(t, f)
			}
			got, err := Discover(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if got != tt.want {
				t.Errorf("Discover = %+v, want %+v", got, tt.want)
			}
			if f != nil && f.tokenCalls.Load() != 1 {
				t.Errorf("token requests = %d, want 1 (one token for every read)", f.tokenCalls.Load())
			}
		})
	}
}

func TestDiscoverFails(t *testing.T) {
	t.Run("no IMDSv1 fallback", func(t *testing.T) {
		url := startIMDS(t, &fakeIMDS{meta: ec2Meta(), noToken: true})
		if info, err := Discover(context.Background(), Config{IMDSEndpoint: url}); err == nil {
			t.Fatalf("Discover = %+v, want an error without a token", info)
		}
	})
	t.Run("no instance id", func(t *testing.T) {
		m := ec2Meta()
		delete(m, "instance-id")
		url := startIMDS(t, &fakeIMDS{meta: m})
		_, err := Discover(context.Background(), Config{IMDSEndpoint: url})
		if err == nil || !strings.Contains(err.Error(), "instance-id") {
			t.Fatalf("Discover err = %v, want one naming instance-id", err)
		}
	})
	t.Run("unreachable within the timeout", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // nothing listens there now
		_, err := Discover(context.Background(), Config{IMDSEndpoint: url, Timeout: 500 * time.Millisecond})
		if err == nil {
			t.Fatal("Discover succeeded without IMDS")
		}
	})
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"IMDS": "1", "IMDS_ENDPOINT": "http://127.0.0.1:1", "HOST_ID": "h", "PUBLIC_HOST": "p", "REGION": "r", "ZONE": "z"}
	got, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{IMDS: true, IMDSEndpoint: "http://127.0.0.1:1", HostID: "h", PublicHost: "p", Region: "r", Zone: "z"}
	if got != want {
		t.Errorf("ConfigFromEnv = %+v, want %+v", got, want)
	}
	env["IMDS"] = "yes please"
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("ConfigFromEnv accepted IMDS=yes please")
	}
}
