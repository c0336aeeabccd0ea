package api_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/devstore/storetest"
	"github.com/chatfleet/chatfleet/functions/api"
)

// countingStore counts the reads the read cache is there to save.
type countingStore struct {
	chatfleet.Store
	roomReads, listReads atomic.Int64
}

func (s *countingStore) Room(ctx context.Context, name string) (*chatfleet.Room, error) {
	s.roomReads.Add(1)
	return s.Store.Room(ctx, name)
}

func (s *countingStore) ListRooms(ctx context.Context, f chatfleet.RoomFilter) ([]*chatfleet.Room, string, error) {
	s.listReads.Add(1)
	return s.Store.ListRooms(ctx, f)
}

// TestReadCacheCrowd: a crowd's tokens for one room and its lobby listings
// cost the store one read each while the cache keeps them; a close through
// the API is seen by its next token at once; READ_CACHE_TTL=0 reads every
// time.
func TestReadCacheCrowd(t *testing.T) {
	picker := newPicker(t, startLB(t))
	for _, tc := range []struct {
		ttl   time.Duration
		reads int64 // of the room and of the listing, for 40 calls each
	}{{time.Minute, 1}, {-1, 40}} {
		t.Run(fmt.Sprint("ttl ", tc.ttl), func(t *testing.T) {
			st := &countingStore{Store: storetest.NewStore(t)}
			a := newAPIs(t, st, picker, func(c *api.Config) { c.ReadCacheTTL = tc.ttl })
			room := &chatfleet.Room{Name: "crowd", HostID: "gone", HostAddr: "127.0.0.1", Port: 40001, Status: chatfleet.RoomLive}
			if err := st.CreateRoom(context.Background(), room); err != nil {
				t.Fatal(err)
			}
			crowd := func(method, path, body string, status int) {
				var wg sync.WaitGroup
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 5 {
							call(t, method, a.rooms+path, apiKey, body).want(t, status, "")
						}
					}()
				}
				wg.Wait()
			}
			crowd("POST", "/api/v1/rooms/crowd/tokens", `{"role":"viewer"}`, http.StatusCreated)
			crowd("GET", "/api/v1/rooms?limit=10", "", http.StatusOK)
			if n := st.roomReads.Load(); n != tc.reads {
				t.Errorf("40 tokens read the room %d times, want %d", n, tc.reads)
			}
			if n := st.listReads.Load(); n != tc.reads {
				t.Errorf("40 listings read the store %d times, want %d", n, tc.reads)
			}
			call(t, "DELETE", a.rooms+"/api/v1/rooms/crowd", apiKey, "").want(t, http.StatusOK, "")
			call(t, "POST", a.rooms+"/api/v1/rooms/crowd/tokens", apiKey, `{"role":"viewer"}`).want(t, http.StatusNotFound, string(chatfleet.ENOTFOUND))
		})
	}
}
