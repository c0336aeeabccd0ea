package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestHandlerPages(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype, cache, contains string
	}{
		{"/", "text/html; charset=utf-8", "no-cache", "Live rooms"},
		{"/index.html", "text/html; charset=utf-8", "no-cache", "Live rooms"},
		{"/live.html", "text/html; charset=utf-8", "no-cache", "Go live"},
		{"/watch.html", "text/html; charset=utf-8", "no-cache", `role="log"`},
		{"/admin.html", "text/html; charset=utf-8", "no-cache", "Operator console"},
		{"/js/admin.js", "text/javascript; charset=utf-8", "no-cache", "sessionStorage"},
		{"/config.js", "text/javascript; charset=utf-8", "no-cache", "CHATFLEET_CONFIG"},
		{"/js/room.js", "text/javascript; charset=utf-8", "no-cache", "class RoomConnection"},
		{"/css/app.css", "text/css; charset=utf-8", "no-cache", ":root"},
		{"/favicon.svg", "image/svg+xml", "no-cache", "<svg"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			w := get(t, h, "GET", tc.path)
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			if got := w.Header().Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if got := w.Header().Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q, want %q", got, tc.cache)
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if !strings.Contains(w.Body.String(), tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			isHTML := strings.HasPrefix(tc.ctype, "text/html")
			if got := w.Header().Get("Content-Security-Policy"); (got != "") != isHTML {
				t.Errorf("Content-Security-Policy %q on %s", got, tc.ctype)
			}
			etag := w.Header().Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			if w := get(t, h, "GET", tc.path, "If-None-Match", etag); w.Code != http.StatusNotModified {
				t.Errorf("If-None-Match: status %d, want 304", w.Code)
			}
		})
	}
}

func TestHandlerRefusals(t *testing.T) {
	h := Handler()
	t.Run("not found", func(t *testing.T) {
		for _, p := range []string{"/nope.html", "/vendor/.gitkeep", "/static/index.html", "/js/"} {
			if w := get(t, h, "GET", p); w.Code != 404 {
				t.Errorf("%s: status %d, want 404", p, w.Code)
			}
		}
	})
	t.Run("method", func(t *testing.T) {
		w := get(t, h, "POST", "/")
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("POST: status %d, Allow %q", w.Code, w.Header().Get("Allow"))
		}
	})
	t.Run("head", func(t *testing.T) {
		w := get(t, h, "HEAD", "/live.html")
		if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
			t.Errorf("HEAD: status %d, %d body bytes, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
		}
	})
}

// TestBuildVendor checks the vendor rules on a tree of its own, with and
// without the vendor file, whatever web/build.sh left in static/vendor/.
func TestBuildVendor(t *testing.T) {
	page := []byte(`<script src="/vendor/hls.min.js"></script>`)
	player := []byte(`const HLS_SRC = '/vendor/hls.min.js';`)

	t.Run("present", func(t *testing.T) {
		assets, err := build(fstest.MapFS{
			"static/index.html":         {Data: page},
			"static/js/player.js":       {Data: player},
			"static/vendor/hls.min.js":  {Data: []byte("var Hls;")},
			"static/vendor/LICENSE.txt": {Data: []byte("license")},
		})
		if err != nil {
			t.Fatal(err)
		}
		hashed := regexp.MustCompile(`/vendor/hls\.min\.[0-9a-f]{8}\.js`).FindString(string(assets["/js/player.js"].body))
		if hashed == "" {
			t.Fatalf("player.js not rewritten: %s", assets["/js/player.js"].body)
		}
		if !strings.Contains(string(assets["/"].body), hashed) {
			t.Errorf("index.html not rewritten: %s", assets["/"].body)
		}
		a := assets[hashed]
		if a == nil || a.cache != cacheImmutable || string(a.body) != "var Hls;" || a.ctype != "text/javascript; charset=utf-8" {
			t.Fatalf("hashed asset %+v", a)
		}
		if a := assets["/vendor/hls.min.js"]; a == nil || a.cache != cacheRevalidate {
			t.Errorf("plain vendor name %+v", a)
		}
		if a := assets["/vendor/LICENSE.txt"]; a == nil || assets["/vendor/LICENSE.txt"].ctype != "text/plain; charset=utf-8" {
			t.Errorf("LICENSE.txt %+v", a)
		}
	})
	t.Run("absent", func(t *testing.T) {
		assets, err := build(fstest.MapFS{
			"static/index.html":   {Data: page},
			"static/js/player.js": {Data: player},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(assets["/js/player.js"].body); got != string(player) {
			t.Errorf("player.js changed without a vendor file: %s", got)
		}
		if _, ok := assets["/vendor/hls.min.js"]; ok {
			t.Error("a vendor asset from nowhere")
		}
	})
}

// TestHandlerVendor checks the real tree: whether or not build.sh ran, the
// player points at a file the handler serves, or at the plain name that
// 404s and makes the page use native HLS.
func TestHandlerVendor(t *testing.T) {
	h := Handler()
	w := get(t, h, "GET", "/js/player.js")
	src := regexp.MustCompile(`/vendor/hls\.min(\.[0-9a-f]{8})?\.js`).FindStringSubmatch(w.Body.String())
	if src == nil {
		t.Fatalf("player.js names no hls.js: %s", w.Body.String())
	}
	v := get(t, h, "GET", src[0])
	if src[1] == "" {
		if v.Code != 404 {
			t.Errorf("%s: status %d, want 404 (no vendor file embedded)", src[0], v.Code)
		}
		t.Logf("hls.js not embedded (run web/build.sh): the pages use native HLS")
		return
	}
	if v.Code != 200 || v.Header().Get("Cache-Control") != cacheImmutable {
		t.Errorf("%s: status %d, Cache-Control %q", src[0], v.Code, v.Header().Get("Cache-Control"))
	}
}

func TestDemoHandler(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.m3u8"), []byte("#EXTM3U\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "seg000.ts"), []byte("ts"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("no"), 0o644)
	h := http.StripPrefix("/demo", DemoHandler(dir))
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/demo/index.m3u8", 200, "application/vnd.apple.mpegurl"},
		{"HEAD", "/demo/index.m3u8", 200, "application/vnd.apple.mpegurl"},
		{"GET", "/demo/seg000.ts", 200, "video/mp2t"},
		{"GET", "/demo/seg999.ts", 404, ""},
		{"GET", "/demo/notes.txt", 404, ""},
		{"GET", "/demo/", 404, ""},
		{"GET", "/demo/../web.go", 404, ""},
		{"POST", "/demo/index.m3u8", 405, ""},
	} {
		w := get(t, h, tc.method, tc.path)
		if w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, w.Code, tc.status)
			continue
		}
		if tc.ctype != "" && w.Header().Get("Content-Type") != tc.ctype {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, w.Header().Get("Content-Type"))
		}
	}
	if w := get(t, http.StripPrefix("/demo", DemoHandler(filepath.Join(dir, "none"))), "HEAD", "/demo/index.m3u8"); w.Code != 404 {
		t.Errorf("missing folder: status %d, want 404", w.Code)
	}
}

// TestClientJS runs the browser client's unit tests (web/jstest) with Node's
// test runner: the connection's reactions to each close code.
func TestClientJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the client's unit tests: apt-get install -y --no-install-recommends nodejs (.ci/run does it): ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--test", "jstest/").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test jstest/: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^# pass [1-9]`).Match(out) || !regexp.MustCompile(`(?m)^# fail 0$`).Match(out) {
		t.Fatalf("node --test ran no test or had failures:\n%s", out)
	}
}

// TestConsoleSource checks what the operator console must never do: keep
// the admin key anywhere but sessionStorage, or put data into the page as
// HTML; and that the lobby links it.
func TestConsoleSource(t *testing.T) {
	h := Handler()
	js := get(t, h, "GET", "/js/admin.js").Body.String()
	if !strings.Contains(js, "sessionStorage.setItem(KEY_STORAGE") {
		t.Error("admin.js does not keep the key in sessionStorage")
	}
	for _, bad := range []string{"localStorage", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "location.search", "location.hash"} {
		if strings.Contains(js, bad) {
			t.Errorf("admin.js uses %s", bad)
		}
	}
	html := get(t, h, "GET", "/admin.html").Body.String()
	for _, want := range []string{`<label for="admin-key"`, `id="key-forget"`, `type="password"`, `<script type="module" src="/js/admin.js">`} {
		if !strings.Contains(html, want) {
			t.Errorf("admin.html lacks %s", want)
		}
	}
	if lobby := get(t, h, "GET", "/").Body.String(); !strings.Contains(lobby, `href="/admin.html"`) {
		t.Error("the lobby does not link the operator console")
	}
}
