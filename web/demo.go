package web

import (
	"net/http"
	"path"
	"strings"
)

// DemoHandler serves an HLS stream from dir, the folder scripts/demo-hls.sh
// writes (.data/demo-hls): mount it with http.StripPrefix("/demo", ...) so
// that the go-live page finds /demo/index.m3u8 and offers "Use demo stream".
// Playlists and segments get their HLS content types; nothing is cached, so
// a stream made again is picked up. A missing folder answers 404, which
// hides the button. Dotfiles and directory listings are refused.
func DemoHandler(dir string) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch path.Ext(p) {
		case ".m3u8":
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		case ".ts":
			w.Header().Set("Content-Type", "video/mp2t")
		case ".m4s", ".mp4":
			w.Header().Set("Content-Type", "video/mp4")
		default:
			http.NotFound(w, r)
			return
		}
		if strings.Contains(p, "/.") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r2 := r.Clone(r.Context())
		r2.URL.Path = p
		files.ServeHTTP(w, r2)
	})
}
