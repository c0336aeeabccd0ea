package webhook_test

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"sync"

	"github.com/chatfleet/chatfleet/webhook"
)

// A receiver checks the signature before it trusts anything in the body,
// then handles each event once, by id: delivery is at least once.
func Example() {
	secret := os.Getenv("WEBHOOK_SECRET")
	var mu sync.Mutex
	seen := map[string]bool{} // a real receiver keeps ids in its database, for a few days
	http.HandleFunc("POST /hooks/chat", func(w http.ResponseWriter, r *http.Request) {
		body, err := webhook.VerifyRequest(r, secret, webhook.DefaultMaxSkew)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var batch webhook.Batch
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		for _, ev := range batch.Events {
			mu.Lock()
			dup := seen[ev.ID]
			seen[ev.ID] = true
			mu.Unlock()
			if dup {
				continue
			}
			switch ev.Type {
			case webhook.TypeRoomOpened:
				log.Printf("room %s opened on %s:%d", ev.Room, ev.Host, ev.Port)
			case webhook.TypeRoomViewers:
				log.Printf("room %s has %d viewers", ev.Room, *ev.Viewers)
			case webhook.TypeRoomClosed:
				log.Printf("room %s %s: %s", ev.Room, ev.Status, ev.Reason)
			default: // the room's own messages: ev.Data as its clients got it
				log.Printf("room %s #%d %s: %s", ev.Room, ev.Seq, ev.Type, ev.Data)
			}
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx: delivered; anything else is retried
	})
}
