package lbclient

// These tests pin the client's side of the protocol against scripted load
// balancers: failover, error mapping, backoff, deregistration. The real
// service is exercised with these clients in fleet/cmd/loadbalancer's tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/chatfleet/chatfleet/internal/testutil"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
)

const testKey = "lb-test-key-do-not-log"

// scriptedLB answers every request with its handler and counts requests.
type scriptedLB struct {
	*httptest.Server
	calls atomic.Int32
}

func newScriptedLB(t *testing.T, h http.HandlerFunc) *scriptedLB {
	t.Helper()
	lb := &scriptedLB{}
	lb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lb.calls.Add(1)
		if r.Header.Get("X-API-Key") != testKey {
			httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "invalid API key"))
			return
		}
		h(w, r)
	}))
	t.Cleanup(lb.Close)
	return lb
}

func answerHost(id string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteData(w, http.StatusOK, map[string]any{"host": chatfleet.Host{ID: id}, "hosts": []chatfleet.Host{{ID: id}}})
	}
}

func answerError(code, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, nil, chatfleet.Errorf(code, "%s", msg))
	}
}

// deadURL is a URL nothing listens at.
func deadURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func TestPicker(t *testing.T) {
	ctx := context.Background()

	t.Run("fails over from a dead load balancer", func(t *testing.T) {
		good := newScriptedLB(t, answerHost("h1"))
		p, err := NewPicker([]string{deadURL(t), good.URL + "/"}, testKey, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 { // both start orders
			h, err := p.Pick(ctx, chatfleet.PickRequest{})
			if err != nil || h.ID != "h1" {
				t.Fatalf("Pick = %v, %v; want h1", h.ID, err)
			}
		}
		hosts, err := p.Hosts(ctx)
		if err != nil || len(hosts) != 1 {
			t.Fatalf("Hosts = %v, %v", hosts, err)
		}
	})

	t.Run("no host on one tries the next", func(t *testing.T) {
		empty := newScriptedLB(t, answerError(chatfleet.EUNAVAILABLE, "no host can take a room"))
		good := newScriptedLB(t, answerHost("h1"))
		p, _ := NewPicker([]string{empty.URL, good.URL}, testKey, "", nil)
		for range 10 {
			if h, err := p.Pick(ctx, chatfleet.PickRequest{}); err != nil || h.ID != "h1" {
				t.Fatalf("Pick = %v, %v; want h1", h.ID, err)
			}
		}
	})

	t.Run("no host on any is unavailable with the load balancer's message", func(t *testing.T) {
		a := newScriptedLB(t, answerError(chatfleet.EUNAVAILABLE, "no host can take a room (2 known)"))
		b := newScriptedLB(t, answerError(chatfleet.EUNAVAILABLE, "no host can take a room (2 known)"))
		p, _ := NewPicker([]string{a.URL, b.URL}, testKey, "", nil)
		_, err := p.Pick(ctx, chatfleet.PickRequest{})
		if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE || chatfleet.ErrorMessage(err) != "no host can take a room (2 known)" {
			t.Fatalf("Pick err = %v", err)
		}
	})

	t.Run("all down is unavailable without addresses in the message", func(t *testing.T) {
		p, _ := NewPicker([]string{deadURL(t), deadURL(t)}, testKey, "", nil)
		_, err := p.Pick(ctx, chatfleet.PickRequest{})
		if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Fatalf("Pick err = %v, want unavailable", err)
		}
		if msg := chatfleet.ErrorMessage(err); msg != "no load balancer answered (2 tried)" {
			t.Errorf("message %q", msg)
		}
		if !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("err %q does not say which load balancers failed (for the log)", err)
		}
		if _, err := p.Hosts(ctx); chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
			t.Fatalf("Hosts err = %v, want unavailable", err)
		}
	})

	t.Run("invalid request is final", func(t *testing.T) {
		a := newScriptedLB(t, answerError(chatfleet.EINVALID, `field "region": bad`))
		b := newScriptedLB(t, answerError(chatfleet.EINVALID, `field "region": bad`))
		p, _ := NewPicker([]string{a.URL, b.URL}, testKey, "", nil)
		_, err := p.Pick(ctx, chatfleet.PickRequest{Region: "X"})
		if chatfleet.ErrorCode(err) != chatfleet.EINVALID || !strings.Contains(chatfleet.ErrorMessage(err), `field "region"`) {
			t.Fatalf("Pick err = %v", err)
		}
		if n := a.calls.Load() + b.calls.Load(); n != 1 {
			t.Errorf("%d load balancers asked, want 1", n)
		}
	})

	t.Run("wrong key is the operator's error", func(t *testing.T) {
		a := newScriptedLB(t, answerHost("h1"))
		p, _ := NewPicker([]string{a.URL}, "wrong", "", nil)
		_, err := p.Pick(ctx, chatfleet.PickRequest{})
		if chatfleet.ErrorCode(err) != chatfleet.EINTERNAL || !strings.Contains(err.Error(), "forbidden") {
			t.Fatalf("Pick err = %v, want an internal error saying forbidden", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("err %q holds the key", err)
		}
	})

	t.Run("sends the request", func(t *testing.T) {
		var got chatfleet.PickRequest
		a := newScriptedLB(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/api/v1/pick" {
				t.Errorf("%s %s", r.Method, r.URL.Path)
			}
			if err := httpx.DecodeJSON(w, r, 0, &got); err != nil {
				t.Error(err)
			}
			answerHost("h1")(w, r)
		})
		p, _ := NewPicker([]string{a.URL}, testKey, "", nil)
		want := chatfleet.PickRequest{Region: "eu-west-1", Exclude: []string{"h2"}}
		if _, err := p.Pick(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got.Region != want.Region || len(got.Exclude) != 1 || got.Exclude[0] != "h2" {
			t.Errorf("load balancer got %+v, want %+v", got, want)
		}
	})
}

func TestNewErrors(t *testing.T) {
	report := func() chatfleet.Host { return chatfleet.Host{ID: "h"} }
	tests := []struct {
		name string
		err  error
	}{
		{"picker without url", func() error { _, err := NewPicker(nil, testKey, "", nil); return err }()},
		{"picker with bad url", func() error { _, err := NewPicker([]string{"lb:2000"}, testKey, "", nil); return err }()},
		{"picker without key", func() error { _, err := NewPicker([]string{"http://lb:2000"}, "", "", nil); return err }()},
		{"picker with missing CA file", func() error {
			_, err := NewPicker([]string{"https://lb:2000"}, testKey, "/nonexistent/ca.pem", nil)
			return err
		}()},
		{"registrar without report", func() error {
			_, err := NewRegistrar(RegistrarConfig{URLs: []string{"http://lb:2000"}, Key: testKey})
			return err
		}()},
		{"registrar without key", func() error {
			_, err := NewRegistrar(RegistrarConfig{URLs: []string{"http://lb:2000"}, Report: report})
			return err
		}()},
		{"registrar with ftp url", func() error {
			_, err := NewRegistrar(RegistrarConfig{URLs: []string{"ftp://lb:2000"}, Key: testKey, Report: report})
			return err
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	every := 4 * time.Second
	tests := []struct {
		n        int
		min, max time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{3, 2 * time.Second, 4 * time.Second},
		{6, 12 * time.Second, 24 * time.Second}, // capped at 6 intervals
		{60, 12 * time.Second, 24 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			for range 100 {
				if d := backoff(tt.n, every); d < tt.min || d > tt.max {
					t.Fatalf("backoff(%d) = %v, want %v..%v", tt.n, d, tt.min, tt.max)
				}
			}
		})
	}
	for range 100 {
		if d := jitter(every); d < 3600*time.Millisecond || d > 4400*time.Millisecond {
			t.Fatalf("jitter = %v", d)
		}
	}
}

// recordingLB records heartbeats and deletes by host id.
type recordingLB struct {
	mu      sync.Mutex
	puts    []chatfleet.Host
	deletes []string
	fail    atomic.Bool // answer 500
}

func (l *recordingLB) handler(w http.ResponseWriter, r *http.Request) {
	if l.fail.Load() {
		httpx.WriteError(w, nil, errors.New("down"))
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/api/v1/hosts/")
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		var h chatfleet.Host
		if err := httpx.DecodeJSON(w, r, 0, &h); err != nil || h.ID != id {
			httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EINVALID, "bad heartbeat"))
			return
		}
		l.puts = append(l.puts, h)
		httpx.WriteData(w, http.StatusOK, map[string]any{"host": h})
	case http.MethodDelete:
		l.deletes = append(l.deletes, id)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (l *recordingLB) counts() (puts, deletes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.puts), len(l.deletes)
}

func TestRegistrar(t *testing.T) {
	a, b := &recordingLB{}, &recordingLB{}
	la, lb := newScriptedLB(t, a.handler), newScriptedLB(t, b.handler)
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))

	var state atomic.Value
	state.Store(chatfleet.HostAccepting)
	r, err := NewRegistrar(RegistrarConfig{
		URLs:  []string{la.URL, lb.URL},
		Key:   testKey,
		Every: time.Hour, // only the first heartbeat and nudges
		Report: func() chatfleet.Host {
			return chatfleet.Host{ID: "h1", State: state.Load().(chatfleet.HostState), LastSeen: time.Unix(1, 0)}
		},
		Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	testutil.Eventually(t, 5*time.Second, func() error {
		if pa, _ := a.counts(); pa < 1 {
			return errors.New("no heartbeat at a")
		}
		if pb, _ := b.counts(); pb < 1 {
			return errors.New("no heartbeat at b")
		}
		return nil
	})
	if err := r.Run(ctx); err == nil {
		t.Error("second Run: no error")
	}

	t.Run("the load balancer sets LastSeen", func(t *testing.T) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if h := a.puts[0]; !h.LastSeen.IsZero() || h.ReportedAt.IsZero() {
			t.Errorf("heartbeat LastSeen %v ReportedAt %v, want zero and set", h.LastSeen, h.ReportedAt)
		}
	})

	t.Run("nudge reports a state change at once", func(t *testing.T) {
		state.Store(chatfleet.HostDraining)
		r.Nudge()
		testutil.Eventually(t, 5*time.Second, func() error {
			for _, l := range []*recordingLB{a, b} {
				l.mu.Lock()
				last := l.puts[len(l.puts)-1].State
				l.mu.Unlock()
				if last != chatfleet.HostDraining {
					return fmt.Errorf("last state %q", last)
				}
			}
			return nil
		})
	})

	t.Run("one load balancer failing does not stop the other", func(t *testing.T) {
		a.fail.Store(true)
		pb, _ := b.counts()
		r.Nudge()
		testutil.Eventually(t, 5*time.Second, func() error {
			if n, _ := b.counts(); n <= pb {
				return errors.New("no heartbeat at b")
			}
			return nil
		})
		a.fail.Store(false)
		pa, _ := a.counts()
		r.Nudge() // also cuts a's backoff short
		testutil.Eventually(t, 5*time.Second, func() error {
			if n, _ := a.counts(); n <= pa {
				return errors.New("no heartbeat at a after it came back")
			}
			return nil
		})
	})

	t.Run("deregisters from every load balancer on shutdown", func(t *testing.T) {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		for name, l := range map[string]*recordingLB{"a": a, "b": b} {
			if _, d := l.counts(); d != 1 {
				t.Errorf("%s: %d deletes, want 1", name, d)
			}
		}
	})

	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(logs.String(), testKey) {
		t.Error("the key reached the log")
	}
	if !strings.Contains(logs.String(), "heartbeat to load balancer failed") {
		t.Errorf("the failure was not logged:\n%s", logs.String())
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.SplitN(logs.Bytes(), []byte("\n"), 2)[0], &line); err != nil {
		t.Errorf("log is not JSON lines: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
