package room

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/token"
)

// BenchmarkBroadcast measures the hub's side of one chat broadcast to n
// clients: sequence, encode once, keep in the history, queue on every client.
// The clients are SSE-like (no writer goroutine), so only the hub is measured.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := benchHub(b, n, nil)
			from := protocol.User{UserID: "prod", Name: "Producer", Role: chatfleet.RoleProducer}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h.broadcast(&protocol.ServerMsg{Type: protocol.TypeChat, From: &from, Text: "hello everyone, how is the stream today?", SendTS: 1764495600123})
				if i++; i%128 == 0 { // the writers' part: empty the queues
					for _, c := range h.clients {
						c.take(false)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*n), "ns/delivery")
		})
	}
}

// benchHub returns the hub of a room (an edge if edge is set) with n
// registered SSE-like viewers: no writer goroutine, so only the hub is
// measured.
func benchHub(b *testing.B, n int, edge *Edge) *hub {
	b.Helper()
	iss, _ := token.NewIssuer(testSecret)
	r, err := New(Config{Name: testRoom, Tokens: iss, SendQueueBytes: 1 << 30, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Edge: edge})
	if err != nil {
		b.Fatal(err)
	}
	h := r.h
	for i := range n {
		c := r.newClient(protocol.User{UserID: fmt.Sprint("u", i), Name: "V", Role: chatfleet.RoleViewer}, false, 0, false)
		c.notify = make(chan struct{}, 1)
		c.idx = len(h.clients)
		h.clients = append(h.clients, c)
	}
	return h
}
