package roomproc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/chatfleet/chatfleet/fleet/internal/procstat"
	"github.com/chatfleet/chatfleet/fleet/internal/room"
	"github.com/chatfleet/chatfleet/token"
)

// BenchmarkIdleRoomsOneProcess weighs what an idle room costs inside a
// process that runs many (goroutine stacks and heap in use, per room), to
// set against a room process's PSS (docs/performance.md, "Host density").
//
//	go test -run - -bench IdleRoomsOneProcess -benchtime 1x ./fleet/internal/roomproc/
func BenchmarkIdleRoomsOneProcess(b *testing.B) {
	const n = 1000
	iss, _ := token.NewIssuer("test-secret-0123456789")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	inUse := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	for b.Loop() {
		before, rss0 := inUse(), procstat.RSS()
		ctx, cancel := context.WithCancel(context.Background())
		rooms := make([]*room.Room, n)
		for i := range rooms {
			name := fmt.Sprintf("room-%04d", i)
			rm, err := room.New(room.Config{Name: name, Tokens: iss, Log: log, Bans: room.NewBanList(name)})
			if err != nil {
				b.Fatal(err)
			}
			rooms[i] = rm
			go rm.Run(ctx)
		}
		b.ReportMetric(float64(inUse()-before)/n/1024, "KiB-in-use/room")
		b.ReportMetric(float64(procstat.RSS()-rss0)/n/1024, "KiB-RSS/room")
		cancel()
		runtime.KeepAlive(rooms)
	}
}
