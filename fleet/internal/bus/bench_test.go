package bus

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublishConsume: 200-byte events from a Publisher through the
// embedded server's stream to a Consume, end to end; events/s is the rate.
func BenchmarkPublishConsume(b *testing.B) {
	s := startNATS(b)
	origin := connect(b, s.URL(), "origin")
	edge := connect(b, s.URL(), "edge")
	data := make([]byte, 200)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	var got atomic.Int64
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go edge.Consume(ctx, "bench", func(int64, []byte) {
		if got.Add(1) == int64(b.N) {
			close(done)
		}
	})
	p := origin.NewPublisher("bench", "inst", 10_000)
	defer p.Close()
	b.ResetTimer()
	for seq := int64(1); seq <= int64(b.N); seq++ {
		for !p.Publish(seq, data) { // the queue is full: wait for the acks
			time.Sleep(100 * time.Microsecond)
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
