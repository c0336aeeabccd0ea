package devnats_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/devnats"
)

// TestRestartKeepsStreams: JetStream's data outlives a restart on the same
// port and directory, as the fault tests need.
func TestRestartKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	s, err := devnats.Start(devnats.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	port := s.Port()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("one")); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s, err = devnats.Start(devnats.Config{Dir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "t.a")
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if string(m.Data) != "one" {
		t.Errorf("got %q, want one", m.Data)
	}
}
