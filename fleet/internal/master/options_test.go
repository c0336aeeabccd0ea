package master

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
)

// The options shown in listings are checked as the control API checks them.
func TestRoomOptionsValidateListingFields(t *testing.T) {
	cfg := &Config{}
	for _, o := range []RoomOptions{
		{HLSURL: "https://cdn.example.com/x.m3u8", Title: "Jazz — live", OwnerName: "Ann Lee"},
		{OwnerName: strings.Repeat("n", maxOwnerNameLen)},
		{HLSURL: "http://cdn/" + strings.Repeat("p", maxHLSURLLen-len("http://cdn/")), Title: strings.Repeat("t", maxTitleLen)},
	} {
		if err := o.validate(cfg); err != nil {
			t.Errorf("%.40q/%.20q: %v", o.HLSURL, o.Title, err)
		}
	}
	for _, o := range []RoomOptions{
		{HLSURL: "ftp://cdn.example.com/x.m3u8"},
		{HLSURL: "https://user:pass@cdn.example.com/x.m3u8"},
		{HLSURL: "https:///x.m3u8"},
		{HLSURL: "https://cdn/" + strings.Repeat("p", maxHLSURLLen)},
		{Title: strings.Repeat("t", maxTitleLen+1)},
		{Title: "bell\a"},
		{Title: "bad \xff utf-8"},
		{OwnerName: strings.Repeat("n", maxOwnerNameLen+1)},
		{OwnerName: "tab\tin name"},
	} {
		if err := o.validate(cfg); chatfleet.ErrorCode(err) != chatfleet.EINVALID {
			t.Errorf("%.40q/%.20q: %v, want EINVALID", o.HLSURL, o.Title, err)
		}
	}
}

// The store's record of a room keeps the create's title, and its hlsUrl
// while the producer announces none.
func TestDomainKeepsCreateOptions(t *testing.T) {
	m := &Master{cfg: Config{HostID: "h1", PublicHost: "127.0.0.1"}}
	m.log = slog.New(slog.DiscardHandler)
	r := m.newRoom("rec", 34000, RoomOptions{HLSURL: "https://cdn/a.m3u8", Title: "T", OwnerName: "Ann"}, time.Now())
	if d := r.domain(time.Now()); d.HLSURL != "https://cdn/a.m3u8" || d.Title != "T" || d.OwnerName != "Ann" || d.ProducerLive {
		t.Fatalf("before any stream: %+v", d)
	}
	r.stats = chatfleet.RoomStats{ProducerLive: true, HLSURL: "https://cdn/b.m3u8"}
	if d := r.domain(time.Now()); d.HLSURL != "https://cdn/b.m3u8" || d.Title != "T" || !d.ProducerLive {
		t.Fatalf("announced: %+v", d)
	}
}

// A spare is assigned the room's role as a started room gets it on its
// command line.
func TestAssignmentCarriesRole(t *testing.T) {
	o := RoomOptions{Instance: "I1", OwnerID: "o", Role: hostapi.RoleEdge}
	if a := o.assignment(); a.Role != hostapi.RoleEdge || a.Instance != "I1" || a.Owner != "o" {
		t.Fatalf("assignment %+v, want the edge role with the options", a)
	}
}
