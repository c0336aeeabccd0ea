package storetest_test

import (
	"context"
	"testing"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/mongo"
)

func TestEachTestHasItsOwnDatabase(t *testing.T) {
	ctx := context.Background()
	var cfgs []mongo.Config
	for _, name := range []string{"A", "B"} {
		t.Run(name, func(t *testing.T) {
			cfg := storetest.Config(t)
			cfgs = append(cfgs, cfg)
			s := storetest.Open(t, cfg)
			if _, err := s.Room(ctx, "lobby"); chatfleet.ErrorCode(err) != chatfleet.ENOTFOUND {
				t.Fatalf("a new database has a room: %v", err)
			}
			if err := s.CreateRoom(ctx, &chatfleet.Room{Name: "lobby"}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if cfgs[0].Database == cfgs[1].Database || cfgs[0].URI != cfgs[1].URI {
		t.Fatalf("configs %+v and %+v: want one server, two databases", cfgs[0], cfgs[1])
	}
	// The database was dropped when its test ended.
	s := storetest.Open(t, cfgs[0])
	if _, err := s.Room(ctx, "lobby"); chatfleet.ErrorCode(err) != chatfleet.ENOTFOUND {
		t.Fatalf("the database of a finished test still has its room: %v", err)
	}
}

func TestNewStore(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}
