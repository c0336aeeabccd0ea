package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatfleet/chatfleet/devnats"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// natsServer is an embedded NATS server that a test may restart on the same
// directory and port.
type natsServer struct {
	t   testing.TB
	dir string
	mu  sync.Mutex
	s   *devnats.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir()}
	s, err := devnats.Start(devnats.Config{Dir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	n.s = s
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.s != nil {
			n.s.Stop()
		}
	})
	return n
}

func (n *natsServer) URL() string { return n.s.URL() }

// restart stops the server, calls during (while it is down), and starts it
// again on the same directory and port.
func (n *natsServer) restart(during func()) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	port := n.s.Port()
	n.s.Stop()
	n.s = nil
	during()
	s, err := devnats.Start(devnats.Config{Dir: n.dir, Port: port})
	if err != nil {
		n.t.Fatalf("restart: %v", err)
	}
	n.s = s
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// connect connects to url and ensures the stream.
func connect(t testing.TB, url, name string) *Conn {
	t.Helper()
	c, err := Connect(Config{URL: url}, name, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.EnsureStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// collector records what Consume delivers.
type collector struct {
	mu   sync.Mutex
	seqs []int64
	data [][]byte
}

func (c *collector) deliver(seq int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seqs = append(c.seqs, seq)
	c.data = append(c.data, data)
}

func (c *collector) got() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seqs)
}

// consume runs Consume on room until the test ends.
func consume(t testing.TB, c *Conn, room string) *collector {
	t.Helper()
	col := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Consume(ctx, room, col.deliver) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
	return col
}

// waitSeqs waits until col has received exactly want, in order.
func waitSeqs(t testing.TB, col *collector, want []int64, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		got := col.got()
		if len(got) < len(want) {
			return fmt.Errorf("received %d of %d", len(got), len(want))
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("received %s, want %s", short(got), short(want))
		}
		return nil
	})
}

// short shows a list of seqs as ranges.
func short(s []int64) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.FormatInt(s[i], 10))
		if j > i {
			b.WriteString("-" + strconv.FormatInt(s[j], 10))
		}
		i = j + 1
	}
	return "[" + b.String() + "]"
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func event(seq int64) []byte {
	b, _ := json.Marshal(map[string]any{"type": "chat", "seq": seq, "text": "hello"})
	return b
}

// publishDirect publishes an events message straight to JetStream, as a
// publisher would.
func publishDirect(t testing.TB, c *Conn, room, instance string, seq int64) {
	t.Helper()
	s := strconv.FormatInt(seq, 10)
	m := &nats.Msg{Subject: EventsSubject(room), Data: event(seq),
		Header: nats.Header{HeaderSeq: {s}, HeaderMsgID: {instance + ":" + s}}}
	if _, err := c.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}
