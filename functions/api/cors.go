package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/netguard"
)

// CORS of the room API. Browsers on the origins of Config.CORSAllowedOrigins
// (CORS_ALLOWED_ORIGINS) may call it; the admin API is same-origin only and
// never answers CORS headers.
const (
	corsAllowHeaders = "Content-Type, X-API-Key"
	corsMaxAge       = 600 // seconds a browser may cache a preflight's answer
)

// RoomPreflightRoutes are the OPTIONS routes of the room API, one for each
// path of RoomRoutes: the handler answers browsers' CORS preflight requests
// on them. The SAM template declares them (without an API key: browsers send
// none with a preflight) next to RoomRoutes.
var RoomPreflightRoutes = preflightRoutes(RoomRoutes)

func preflightRoutes(routes []Route) []Route {
	var out []Route
	for _, r := range routes {
		pre := Route{http.MethodOptions, r.Path}
		if !slices.Contains(out, pre) {
			out = append(out, pre)
		}
	}
	return out
}

// ParseOrigins parses a comma-separated list of exact origins,
// scheme://host[:port] with scheme http or https and nothing after the
// host or port (no path, not even "/"). An empty list allows none.
func ParseOrigins(s string) ([]string, error) {
	var out []string
	for _, o := range splitList(s) {
		if err := checkOrigin(o); err != nil {
			return nil, err
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

func checkOrigin(o string) error {
	bad := fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://app.example.com", o)
	u, err := netguard.HTTPURL(o, 0)
	if err != nil || u.Hostname() == "" ||
		u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
		return bad
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad
		}
	}
	if o != u.Scheme+"://"+strings.ToLower(u.Host) {
		return fmt.Errorf("origin %q: write it as browsers send it: lower-case scheme and host", o)
	}
	return nil
}

// cors is the room API's CORS policy: exact allowed origins, and for each
// path of the API the methods it serves.
type cors struct {
	origins []string
	paths   *http.ServeMux // OPTIONS <path> -> the path's methods, for preflights
}

func newCORS(origins []string, routes []Route) *cors {
	c := &cors{origins: origins, paths: http.NewServeMux()}
	methods := map[string][]string{}
	var order []string
	for _, r := range routes {
		if _, ok := methods[r.Path]; !ok {
			order = append(order, r.Path)
		}
		methods[r.Path] = append(methods[r.Path], r.Method)
	}
	for _, p := range order {
		allow := strings.Join(methods[p], ", ")
		c.paths.HandleFunc(http.MethodOptions+" "+p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Methods", allow)
		})
	}
	return c
}

func (c *cors) allowed(origin string) bool {
	return origin != "" && slices.Contains(c.origins, origin)
}

// wrap answers preflights itself (before the key check: browsers send no key
// with them) and adds the CORS headers to every answer, errors included, for
// an allowed origin. A refused origin gets no CORS headers; its preflight
// gets 403.
func (c *cors) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if !c.allowed(origin) {
			if preflight {
				httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.EFORBIDDEN, "origin %q is not allowed (CORS_ALLOWED_ORIGINS)", truncate(origin, 200)))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		if !preflight {
			next.ServeHTTP(w, r)
			return
		}
		h, pattern := c.paths.Handler(r)
		if pattern == "" {
			httpx.WriteError(w, nil, chatfleet.Errorf(chatfleet.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
		h.ServeHTTP(w, r)
		w.Header().Set("Access-Control-Allow-Headers", corsAllowHeaders)
		w.Header().Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
		w.WriteHeader(http.StatusNoContent)
	})
}

// truncate cuts s to at most n bytes, for echoing client input in errors.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// splitList returns s's comma-separated items, spaces trimmed and empty
// items dropped.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
