package room

import (
	"slices"
	"testing"
)

// TestHistoryKeepsChatsAcrossPresence: presence events do not push the chat
// a reconnecting client missed out of the ring, and a fresh join gets the
// last chats (the history size) and what followed them.
func TestHistoryKeepsChatsAcrossPresence(t *testing.T) {
	var h history
	h.resize(3)
	seq := int64(0)
	add := func(chat bool) int64 {
		seq++
		h.add(&frame{seq: seq}, chat)
		return seq
	}
	var chats []int64
	for range 5 {
		chats = append(chats, add(true))
		for range 4 { // joins and leaves between chats
			add(false)
		}
	}
	// A client that saw the second chat recovers everything after it.
	out, missed := h.since(seq, chats[1], true)
	if missed || len(out) != int(seq-chats[1]) || out[0].seq != chats[1]+1 {
		t.Fatalf("recovery: missed=%v, %d frames from %d", missed, len(out), out[0].seq)
	}
	// A fresh join gets the last 3 chats, and only them.
	out, missed = h.since(seq, 0, false)
	var got []int64
	for _, f := range out {
		got = append(got, f.seq)
	}
	if missed || !slices.Equal(got, chats[2:]) {
		t.Fatalf("join: missed=%v, frames %v, want %v", missed, got, chats[2:])
	}
}
