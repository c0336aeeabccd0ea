package api

import (
	"testing"

	"github.com/chatfleet/chatfleet"
)

// TestPickEdgeByLoad: viewers' tokens never point at an edge whose host is
// down, and lean to the edge whose host reported fewer connections (two
// random choices: the busier one wins only when drawn twice, 1 in 4).
func TestPickEdgeByLoad(t *testing.T) {
	edges := []chatfleet.RoomEdge{{HostID: "light", WSURL: "ws://l"}, {HostID: "busy", WSURL: "ws://b"}, {HostID: "gone", WSURL: "ws://g"}}
	hosts := map[string]chatfleet.Host{
		"light": {ID: "light", Load: chatfleet.Load{Conns: 10}},
		"busy":  {ID: "busy", Load: chatfleet.Load{Conns: 9000}},
		"gone":  {ID: "gone", State: chatfleet.HostDown},
	}
	n := map[string]int{}
	for range 1000 {
		e, ok := pickEdge(edges, hosts)
		if !ok {
			t.Fatal("no edge picked")
		}
		n[e.HostID]++
	}
	if n["gone"] > 0 || n["light"] < 650 || n["busy"] == 0 {
		t.Fatalf("picks %v: want none on the host down, most on the light one, some on the busy one", n)
	}
	if _, ok := pickEdge(edges[2:], hosts); ok {
		t.Fatal("an edge picked on a host that is down")
	}
}
