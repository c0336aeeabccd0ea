// Package web is the browser client: plain HTML pages, small JavaScript
// modules and CSS, embedded in the binary and served by Handler. The pages
// talk to the control API (/api/v1/rooms) for rooms and join tokens and to a
// room process directly over WebSocket (or the SSE fallback) for chat; see
// docs/web.md.
//
// Third-party scripts (hls.js) are copied into static/vendor/ by build.sh
// and are not part of the repository: the package compiles, and the pages
// work with the browser's own HLS support, without them.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// static holds the client. The pattern names the directory, not its files,
// so that the build needs no vendor file; names starting with '.' or '_'
// (static/vendor/.gitkeep) are left out.
//
//go:embed static
var static embed.FS

// Cache-Control values.
const (
	cacheRevalidate = "no-cache"                            // HTML, app scripts: always ask, 304 when unchanged
	cacheImmutable  = "public, max-age=31536000, immutable" // vendor files under their content-hashed name
)

// csp lets the pages load their own scripts and styles only, while talking
// to room hosts (other ports, ws:) and playing HLS from any origin (hls.js
// fetches segments and feeds a blob: MediaSource; its worker is a blob:).
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' http: https: ws: wss:; media-src 'self' http: https: blob:; worker-src 'self' blob:; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// contentTypes are set explicitly, not left to the system's mime.types,
// so that the answer is the same on every machine.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".txt":         "text/plain; charset=utf-8",
	".webmanifest": "application/manifest+json",
}

// asset is one file as it is served.
type asset struct {
	body  []byte
	ctype string
	etag  string
	cache string
}

// Handler serves the embedded client: "/" is index.html, every other path
// is the file of that name under static/. Only GET and HEAD are allowed.
// Every answer has a strong ETag (conditional requests get 304) and a
// Cache-Control: vendor files are also served under a content-hashed name
// ("/vendor/hls.min.3f2a9c1b.js") that may be cached for a year, and the
// pages and scripts refer to them by that name; everything else is
// revalidated on every use. The handler is safe for concurrent use.
func Handler() http.Handler {
	return handler{assets: loadAssets()}
}

var loadAssets = sync.OnceValue(func() map[string]*asset {
	assets, err := build(static)
	if err != nil {
		panic("web: " + err.Error()) // the embedded tree is fixed at build time
	}
	return assets
})

// build reads the tree under "static" and returns the assets by URL path.
// References to a vendor file ("/vendor/NAME") in the other files are
// rewritten to its hashed name.
func build(fsys fs.FS) (map[string]*asset, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, "static")] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	assets := map[string]*asset{}
	var renames []string // old, new pairs for strings.NewReplacer
	for p, b := range files {
		if !strings.HasPrefix(p, "/vendor/") {
			continue
		}
		sum := sha256.Sum256(b)
		ext := path.Ext(p)
		hashed := strings.TrimSuffix(p, ext) + "." + hex.EncodeToString(sum[:4]) + ext
		renames = append(renames, p, hashed)
		assets[hashed] = newAsset(hashed, b, cacheImmutable)
		assets[p] = newAsset(p, b, cacheRevalidate)
	}
	rename := strings.NewReplacer(renames...)
	for p, b := range files {
		if strings.HasPrefix(p, "/vendor/") {
			continue
		}
		if len(renames) > 0 && isText(p) {
			b = []byte(rename.Replace(string(b)))
		}
		assets[p] = newAsset(p, b, cacheRevalidate)
	}
	if a, ok := assets["/index.html"]; ok {
		assets["/"] = a
	}
	return assets, nil
}

func isText(p string) bool {
	switch path.Ext(p) {
	case ".html", ".js", ".mjs", ".css":
		return true
	}
	return false
}

func newAsset(p string, b []byte, cache string) *asset {
	sum := sha256.Sum256(b)
	ct, ok := contentTypes[path.Ext(p)]
	if !ok {
		if ct = mime.TypeByExtension(path.Ext(p)); ct == "" {
			ct = "application/octet-stream"
		}
	}
	return &asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, cache: cache}
}

type handler struct {
	assets map[string]*asset
}

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	// Room and watch links may carry a join token in the query: never send
	// it on to HLS servers or other sites.
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, ok := h.assets[r.URL.Path]
	if !ok {
		hd.Set("Cache-Control", cacheRevalidate)
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	hd.Set("Content-Type", a.ctype)
	hd.Set("Cache-Control", a.cache)
	hd.Set("ETag", a.etag)
	if strings.HasPrefix(a.ctype, "text/html") {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Frame-Options", "DENY")
	}
	// ServeContent answers If-None-Match (304), ranges and HEAD.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
