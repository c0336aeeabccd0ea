package lb

import (
	"math"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet"
)

func TestValidateHost(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *chatfleet.Host)
		field  string // "" if valid
	}{
		{"valid", func(h *chatfleet.Host) {}, ""},
		{"valid ec2 id, https api, ip room host, room url, no region", func(h *chatfleet.Host) {
			h.ID, h.APIURL, h.RoomHost, h.RoomURL, h.Region, h.Zone = "i-0abc123def4567890", "https://10.0.0.5", "203.0.113.7", "wss://h.example.com/rooms/{port}", "", ""
		}, ""},
		{"valid draining, one port", func(h *chatfleet.Host) { h.State, h.PortMin, h.PortMax = chatfleet.HostDraining, 34000, 34000 }, ""},
		{"valid ipv6 room host", func(h *chatfleet.Host) { h.RoomHost = "2001:db8::1" }, ""},
		{"valid over capacity", func(h *chatfleet.Host) { h.Load.Rooms = 200 }, ""},

		{"empty id", func(h *chatfleet.Host) { h.ID = "" }, "id"},
		{"id with slash", func(h *chatfleet.Host) { h.ID = "a/b" }, "id"},
		{"id too long", func(h *chatfleet.Host) { h.ID = strings.Repeat("a", 129) }, "id"},
		{"no api url", func(h *chatfleet.Host) { h.APIURL = "" }, "apiUrl"},
		{"relative api url", func(h *chatfleet.Host) { h.APIURL = "10.0.0.5:8080" }, "apiUrl"},
		{"ftp api url", func(h *chatfleet.Host) { h.APIURL = "ftp://10.0.0.5" }, "apiUrl"},
		{"api url without host", func(h *chatfleet.Host) { h.APIURL = "http://:8080" }, "apiUrl"},
		{"api url with credentials", func(h *chatfleet.Host) { h.APIURL = "http://u:p@10.0.0.5" }, "apiUrl"},
		{"api url with query", func(h *chatfleet.Host) { h.APIURL = "http://10.0.0.5/?k=1" }, "apiUrl"},
		{"api url unparsable", func(h *chatfleet.Host) { h.APIURL = "http://[::1" }, "apiUrl"},
		{"no room host", func(h *chatfleet.Host) { h.RoomHost = "" }, "roomHost"},
		{"room host with scheme", func(h *chatfleet.Host) { h.RoomHost = "http://h.example.com" }, "roomHost"},
		{"room host with port", func(h *chatfleet.Host) { h.RoomHost = "h.example.com:80" }, "roomHost"},
		{"room url scheme", func(h *chatfleet.Host) { h.RoomURL = "tcp://h.example.com" }, "roomUrl"},
		{"port min zero", func(h *chatfleet.Host) { h.PortMin = 0 }, "portMin"},
		{"port max too big", func(h *chatfleet.Host) { h.PortMax = 65536 }, "portMax"},
		{"port min above max", func(h *chatfleet.Host) { h.PortMin, h.PortMax = 35000, 34000 }, "portMax"},
		{"region upper case", func(h *chatfleet.Host) { h.Region = "EU-WEST-1" }, "region"},
		{"zone with space", func(h *chatfleet.Host) { h.Zone = "eu west" }, "zone"},
		{"no version", func(h *chatfleet.Host) { h.Version = "" }, "version"},
		{"zero max rooms", func(h *chatfleet.Host) { h.Capacity.MaxRooms = 0 }, "capacity.maxRooms"},
		{"zero max conns", func(h *chatfleet.Host) { h.Capacity.MaxConns = 0 }, "capacity.maxConns"},
		{"negative rooms", func(h *chatfleet.Host) { h.Load.Rooms = -1 }, "load.rooms"},
		{"negative conns", func(h *chatfleet.Host) { h.Load.Conns = -1 }, "load.conns"},
		{"negative msgs", func(h *chatfleet.Host) { h.Load.MsgsPerSec = -0.5 }, "load.msgsPerSec"},
		{"NaN cpu", func(h *chatfleet.Host) { h.Load.CPU = math.NaN() }, "load.cpu"},
		{"negative mem", func(h *chatfleet.Host) { h.Load.MemBytes = -1 }, "load.memBytes"},
		{"no state", func(h *chatfleet.Host) { h.State = "" }, "state"},
		{"state down", func(h *chatfleet.Host) { h.State = chatfleet.HostDown }, "state"},
		{"unknown state", func(h *chatfleet.Host) { h.State = "sleeping" }, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost("h1")
			tt.change(&h)
			err := ValidateHost(h)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ValidateHost: %v", err)
				}
				return
			}
			if chatfleet.ErrorCode(err) != chatfleet.EINVALID {
				t.Fatalf("ValidateHost = %v, want code invalid", err)
			}
			if want := `field "` + tt.field + `"`; !strings.HasPrefix(chatfleet.ErrorMessage(err), want) {
				t.Errorf("message %q, want it to start with %s", chatfleet.ErrorMessage(err), want)
			}
		})
	}
}

func TestValidatePick(t *testing.T) {
	if err := validatePick(chatfleet.PickRequest{Region: "eu-west-1", Exclude: []string{"a"}}); err != nil {
		t.Errorf("valid request: %v", err)
	}
	if err := validatePick(chatfleet.PickRequest{Region: "EU"}); !strings.Contains(chatfleet.ErrorMessage(err), `field "region"`) {
		t.Errorf("bad region: %v", err)
	}
	if err := validatePick(chatfleet.PickRequest{Exclude: make([]string, maxExclude+1)}); !strings.Contains(chatfleet.ErrorMessage(err), `field "exclude"`) {
		t.Errorf("long exclude: %v", err)
	}
}
