package lb

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
)

// FuzzHeartbeat sends the heartbeat route, PUT /api/v1/hosts/{id}, any id
// and body, and checks the answer against what decoding and ValidateHost
// say of them: never a 5xx (a panic is one); a refusal in the error
// envelope, 400 or 413; an acceptance (201, then 200) only for a body that
// decodes to a host passing ValidateHost, stored with the path's id and a
// LastSeen set by the load balancer. An accepted host is deregistered at
// once, so the registry stays small.
func FuzzHeartbeat(f *testing.F) {
	valid := `{"id":"h1","apiUrl":"http://10.0.0.5:8080","adminUrl":"http://10.0.0.5:8090","roomHost":"10.0.0.5",` +
		`"portMin":34000,"portMax":34999,"region":"eu-west-1","zone":"eu-west-1a","version":"1.0.0",` +
		`"capacity":{"maxRooms":1000,"maxConns":20000},"load":{"rooms":3,"conns":120,"msgsPerSec":4.5,"cpu":0.3,"memBytes":1048576},` +
		`"state":"accepting"}`
	f.Add("h1", []byte(valid))
	f.Add("h1", []byte(`{"capacity":{"maxRooms":"many"}}`))
	f.Add("i-0abc", []byte(`{}`))
	srv, err := New(Config{Key: "k"})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	serve := func(method, path string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("X-API-Key", "k")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		path := "/api/v1/hosts/" + url.PathEscape(id)
		rec := serve(http.MethodPut, path, body)
		status := rec.Code
		if status >= 500 {
			t.Fatalf("PUT %s %q: %d %s", path, body, status, rec.Body)
		}
		if !utf8.Valid(rec.Body.Bytes()) {
			t.Fatalf("PUT %s %q: answer not UTF-8: %q", path, body, rec.Body)
		}

		// What the answer must be, from decoding and validation alone.
		var host chatfleet.Host
		var want error
		switch {
		case ValidateHostID(id) != nil:
			// Also ids the router never passes on ("", ".", ".."): any
			// refusal or redirect.
			if status < 300 {
				t.Fatalf("PUT %s with invalid id %q: %d", path, id, status)
			}
			return
		case len(body) > httpx.MaxBody:
			want = chatfleet.Errorf(chatfleet.ETOOLARGE, "too large")
		case len(body) > 0 && httpx.Unmarshal(body, &host) != nil:
			want = chatfleet.Errorf(chatfleet.EINVALID, "bad JSON")
		case host == (chatfleet.Host{}):
			want = chatfleet.Errorf(chatfleet.EINVALID, "empty")
		case host.ID != "" && host.ID != id:
			want = chatfleet.Errorf(chatfleet.EINVALID, "id mismatch")
		default:
			if host.ID == "" {
				host.ID = id
			}
			want = ValidateHost(host)
		}
		if want != nil {
			wantStatus := httpx.Status(chatfleet.ErrorCode(want))
			var env struct{ Error *chatfleet.Error }
			if status != wantStatus || json.Unmarshal(rec.Body.Bytes(), &env) != nil || env.Error == nil ||
				env.Error.Code != chatfleet.ErrorCode(want) || env.Error.Message == "" {
				t.Fatalf("PUT %s %q: %d %s, want %d %s (%v)", path, body, status, rec.Body, wantStatus, chatfleet.ErrorCode(want), want)
			}
			return
		}
		if status != http.StatusCreated {
			t.Fatalf("PUT %s %q: %d %s, want 201", path, body, status, rec.Body)
		}
		var resp struct{ Data struct{ Host chatfleet.Host } }
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("PUT %s: answer %s: %v", path, rec.Body, err)
		}
		got := resp.Data.Host
		if got.ID != id || got.LastSeen.IsZero() || ValidateHost(got) != nil {
			t.Fatalf("PUT %s %q stored %+v", path, body, got)
		}
		// The same heartbeat again: 200.
		if rec := serve(http.MethodPut, path, body); rec.Code != http.StatusOK {
			t.Fatalf("second PUT %s: %d %s", path, rec.Code, rec.Body)
		}
		if rec := serve(http.MethodDelete, path, nil); rec.Code != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d %s", path, rec.Code, rec.Body)
		}
	})
}
