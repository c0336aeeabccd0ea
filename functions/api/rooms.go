package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/hostapi"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/webhook"
)

// Limits of the room API.
const (
	maxCreateBody   = 16 << 10
	maxTokenBody    = 4 << 10
	defaultTokenTTL = time.Hour
	maxTokenTTL     = 24 * time.Hour
	producerTTL     = maxTokenTTL // the producer gets one token, at creation, and may reconnect with it all day
	producerName    = "producer"  // the producer's display name when the create names none
	legacyOwnerID   = "producer"  // the owner of a room stored without one (created before owners)
	guestPrefix     = "guest-"    // anonymous guests' ids; no token may claim one
	maxUserIDLen    = 128
	maxDisplayLen   = 64
	maxTitleLen     = 120 // bytes, as a host takes it
	defaultPageSize = 50
	maxPageSize     = 200
	maxURLLen       = 2048
	listFillCalls   = 4 // store pages read to fill one listing page
)

var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// roomAPI serves the room API. Its handlers may run concurrently.
type roomAPI struct {
	base
	// Reads kept for Config.ReadCacheTTL (cache.go): room records by name,
	// for tokens and GET /rooms/{name}, and listing pages.
	rooms *readCache[*chatfleet.Room]
	pages *readCache[storedPage]
}

// storedPage is what the store gave for one listing page.
type storedPage struct {
	rooms []*chatfleet.Room
	next  string
}

// createRequest is the optional body of POST /api/v1/rooms/{name}.
type createRequest struct {
	HLSURL         string   `json:"hlsUrl"`
	Title          string   `json:"title"` // shown in listings
	AllowAnonymous bool     `json:"allowAnonymous"`
	Paid           bool     `json:"paid"`
	Region         string   `json:"region"`
	WebhookURLs    []string `json:"webhookUrls"` // passed to the host, which delivers the room's events to them
	OwnerID        string   `json:"ownerId"`     // the producer's user id; generated if empty
	OwnerName      string   `json:"ownerName"`   // the producer's display name
	// Edges is how many other hosts serve the room's viewers (0 to
	// chatfleet.MaxRoomEdges; docs/scaleout.md): the room runs as an origin
	// with that many edges, or fewer if fewer hosts can run one.
	Edges int `json:"edges"`
}

// validate checks the request; allowPrivate lets webhookUrls name
// non-public address literals (WEBHOOK_ALLOW_PRIVATE).
func (c *createRequest) validate(allowPrivate bool) error {
	if c.OwnerID != "" {
		if err := checkUserID("ownerId", c.OwnerID); err != nil {
			return err
		}
	}
	if len(c.OwnerName) > maxDisplayLen {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: at most %d bytes", "ownerName", maxDisplayLen)
	}
	if len(c.Title) > maxTitleLen || !utf8.ValidString(c.Title) || strings.IndexFunc(c.Title, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want at most %d bytes of printable characters", "title", maxTitleLen)
	}
	if c.HLSURL != "" {
		if err := checkURL("hlsUrl", c.HLSURL, maxURLLen); err != nil {
			return err
		}
		// A host refuses credentials in it: the URL is shown to every viewer.
		if u, _ := url.Parse(c.HLSURL); u.User != nil {
			return chatfleet.Errorf(chatfleet.EINVALID, "field %q: credentials in a URL are not allowed (it is shown to every viewer)", "hlsUrl")
		}
	}
	if c.Edges < 0 || c.Edges > chatfleet.MaxRoomEdges {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want 0 to %d", "edges", chatfleet.MaxRoomEdges)
	}
	if c.Region != "" && !regionRE.MatchString(c.Region) {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want an AWS region name such as eu-west-1", "region")
	}
	// The host applies the same rule: what passes here, it takes.
	if err := webhook.ValidateURLs(c.WebhookURLs, allowPrivate); err != nil {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: %v", "webhookUrls", err)
	}
	return nil
}

// checkUserID returns EINVALID unless id is 1 to 128 bytes of printable
// UTF-8, or EFORBIDDEN if it is in the guests' namespace.
func checkUserID(field, id string) error {
	if id == "" || len(id) > maxUserIDLen || !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want 1 to %d bytes of printable characters", field, maxUserIDLen)
	}
	if strings.HasPrefix(id, guestPrefix) {
		return chatfleet.Errorf(chatfleet.EFORBIDDEN, "field %q: user ids starting with %q are reserved for anonymous guests", field, guestPrefix)
	}
	return nil
}

// ownerOf returns the user id of room's producer.
func ownerOf(room *chatfleet.Room) string {
	if room.OwnerID == "" {
		return legacyOwnerID
	}
	return room.OwnerID
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// checkURL returns EINVALID unless s is an absolute http(s) URL of at most maxLen bytes.
func checkURL(field, s string, maxLen int) error {
	if _, err := netguard.HTTPURL(s, maxLen); err != nil {
		return chatfleet.Errorf(chatfleet.EINVALID, "field %q: want an http(s) URL of at most %d bytes", field, maxLen)
	}
	return nil
}

// roomView is a room as the room API shows it.
type roomView struct {
	Name         string               `json:"name"`
	Title        string               `json:"title,omitempty"`
	OwnerName    string               `json:"ownerName,omitempty"` // the producer's display name, if given at create
	Status       chatfleet.RoomStatus `json:"status"`
	Producer     string               `json:"producer"` // "live" or "offline"
	ProducerLive bool                 `json:"producerLive"`
	Viewers      int                  `json:"viewers"`
	HostID       string               `json:"hostId"`
	Host         string               `json:"host"`
	Port         int                  `json:"port"`
	WSURL        string               `json:"wsUrl,omitempty"`
	SSEURL       string               `json:"sseUrl,omitempty"`
	HLSURL       string               `json:"hlsUrl,omitempty"`
	Paid         bool                 `json:"paid,omitempty"`
	OwnerID      string               `json:"ownerId"`            // the producer's user id
	Instance     string               `json:"instance,omitempty"` // this life of the name; not a secret
	Edges        []edgeView           `json:"edges,omitempty"`    // the room's other hosts, serving viewers
	CreatedAt    time.Time            `json:"createdAt"`
	UpdatedAt    time.Time            `json:"updatedAt"`
}

// edgeView is an edge of a room as the API shows it.
type edgeView struct {
	HostID string `json:"hostId"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	WSURL  string `json:"wsUrl,omitempty"`
	SSEURL string `json:"sseUrl,omitempty"`
}

// edgeViews returns edges as the API shows them (nil for none).
func edgeViews(edges []chatfleet.RoomEdge) []edgeView {
	var out []edgeView
	for _, e := range edges {
		out = append(out, edgeView{HostID: e.HostID, Host: e.HostAddr, Port: e.Port, WSURL: e.WSURL, SSEURL: e.SSEURL})
	}
	return out
}

// view returns r as the API shows it; hosts (by id, may be nil) give the
// proxy URL scheme of r's host.
func view(r *chatfleet.Room, hosts map[string]chatfleet.Host) roomView {
	producer := "offline"
	if r.ProducerLive {
		producer = "live"
	}
	ws, sse := roomURLs(hosts[r.HostID].RoomURL, r.HostAddr, r.Port)
	return roomView{
		Name: r.Name, Title: r.Title, OwnerName: r.OwnerName, Status: r.Status, Producer: producer, ProducerLive: r.ProducerLive, Viewers: r.Viewers,
		HostID: r.HostID, Host: r.HostAddr, Port: r.Port, WSURL: ws, SSEURL: sse,
		HLSURL: r.HLSURL, Paid: r.Paid, OwnerID: ownerOf(r), Instance: r.Instance, Edges: edgeViews(r.Edges),
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// created is the answer to a create: where the room is, who owns it, the
// producer's token and, for a room with webhookUrls, the secret its
// deliveries are signed with (shown here only).
type created struct {
	Name          string    `json:"name"`
	Instance      string    `json:"instance"`
	OwnerID       string    `json:"ownerId"`
	HostID        string    `json:"hostId"`
	Host          string    `json:"host"`
	Port          int       `json:"port"`
	WSURL         string    `json:"wsUrl"`
	SSEURL        string    `json:"sseUrl"`
	Role          string    `json:"role"`
	UserID        string    `json:"userId"`
	Token         string    `json:"token"`
	ExpiresAt     time.Time `json:"expiresAt"`
	WebhookSecret string    `json:"webhookSecret,omitempty"`
	// Edges are the edges created (fewer than asked when fewer hosts could
	// run one); the producer connects to the origin (wsUrl) only.
	Edges []edgeView `json:"edges,omitempty"`
}

// create serves POST /api/v1/rooms/{name}: pick a host, have it run the
// room, record it, answer 201 with the producer's join token.
func (a *roomAPI) create(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	if err := chatfleet.ValidateRoomName(name); err != nil {
		a.fail(w, r, err)
		return
	}
	var req createRequest
	if err := httpx.DecodeJSON(w, r, maxCreateBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := req.validate(a.cfg.WebhookAllowPrivate); err != nil {
		a.fail(w, r, err)
		return
	}
	// The store's answer (is the name free?) and the load balancers' (which
	// host?) do not depend on each other: ask both at once, and call the
	// host only once the name is known to be free.
	var freeErr error
	var wg sync.WaitGroup
	wg.Go(func() { freeErr = a.checkFree(ctx, name) })
	first, pickErr := a.cfg.Picker.Pick(ctx, chatfleet.PickRequest{Region: req.Region})
	wg.Wait()
	if freeErr != nil {
		a.fail(w, r, freeErr)
		return
	}
	opts := hostapi.RoomOptions{AllowAnonymous: req.AllowAnonymous, Paid: req.Paid, WebhookURLs: req.WebhookURLs,
		Instance: randomHex(16), OwnerID: req.OwnerID, HLSURL: req.HLSURL, Title: req.Title, OwnerName: req.OwnerName}
	display := req.OwnerName
	if opts.OwnerID == "" {
		opts.OwnerID = "owner-" + randomHex(8)
		if display == "" {
			display = producerName
		}
	}
	if len(req.WebhookURLs) > 0 {
		opts.WebhookSecret = randomHex(32)
	}
	if req.Edges > 0 {
		opts.Role = hostapi.RoleOrigin
	}
	host, port, err := a.place(ctx, name, req.Region, opts, first, pickErr)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	edges, edgeHosts := a.placeEdges(ctx, name, req.Region, host, opts, req.Edges)
	room := &chatfleet.Room{
		Name: name, Title: req.Title, OwnerName: req.OwnerName, HostID: host.ID, HostAddr: host.RoomHost, Port: port,
		Status: chatfleet.RoomOffline, HLSURL: req.HLSURL, Paid: req.Paid,
		Instance: opts.Instance, OwnerID: opts.OwnerID, Edges: edges,
	}
	if err := a.record(ctx, room); err != nil {
		// A concurrent create won the name, or the store is down: either way
		// the room just started must not run unrecorded.
		for _, h := range edgeHosts {
			a.undo(ctx, h, name)
		}
		a.undo(ctx, host, name)
		a.fail(w, r, err)
		return
	}
	a.rooms.forget(name) // the record of an earlier room of that name
	tok, exp, err := a.issue(room, opts.OwnerID, display, chatfleet.RoleProducer, producerTTL)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ws, sse := roomURLs(host.RoomURL, host.RoomHost, port)
	a.log.Info("room created", "room", name, "instance", opts.Instance, "owner", opts.OwnerID, "host", host.ID, "port", port, "edges", len(edges))
	httpx.WriteData(w, http.StatusCreated, created{
		Name: name, Instance: opts.Instance, OwnerID: opts.OwnerID,
		HostID: host.ID, Host: host.RoomHost, Port: port, WSURL: ws, SSEURL: sse,
		Role: string(chatfleet.RoleProducer), UserID: opts.OwnerID, Token: tok, ExpiresAt: exp,
		WebhookSecret: opts.WebhookSecret, Edges: edgeViews(edges),
	})
}

// placeEdges creates up to n edges of room name (whose origin runs on
// origin with opts) on other hosts, each picked by the load balancers
// among the hosts not tried yet, and returns them with their hosts. An edge
// that fails is logged and skipped: the room works with fewer. It stops
// when no host is left, after maxCreateAttempts failures, or when ctx ends.
func (a *roomAPI) placeEdges(ctx context.Context, name, region string, origin chatfleet.Host, opts hostapi.RoomOptions, n int) ([]chatfleet.RoomEdge, []chatfleet.Host) {
	// An edge delivers no webhooks: the origin's host does.
	opts.Role, opts.WebhookURLs, opts.WebhookSecret = hostapi.RoleEdge, nil, ""
	pick := chatfleet.PickRequest{Region: region, Exclude: []string{origin.ID}}
	var edges []chatfleet.RoomEdge
	var hosts []chatfleet.Host
	for failures := 0; len(edges) < n && failures < maxCreateAttempts && ctx.Err() == nil; {
		host, err := a.cfg.Picker.Pick(ctx, pick)
		if err != nil {
			if chatfleet.ErrorCode(err) != chatfleet.EUNAVAILABLE {
				a.log.Warn("pick a host for an edge", "room", name, "err", err)
			}
			break // no host left
		}
		pick.Exclude = append(pick.Exclude, host.ID)
		port, err := a.fleet.createRoom(ctx, host, name, opts)
		if err != nil {
			a.log.Warn("edge not created; the room has fewer", "room", name, "host", host.ID, "err", err)
			failures++
			continue
		}
		ws, sse := roomURLs(host.RoomURL, host.RoomHost, port)
		edges = append(edges, chatfleet.RoomEdge{HostID: host.ID, HostAddr: host.RoomHost, Port: port, WSURL: ws, SSEURL: sse})
		hosts = append(hosts, host)
	}
	if len(edges) < n {
		a.log.Warn("room has fewer edges than asked", "room", name, "asked", n, "created", len(edges))
	}
	return edges, hosts
}

// record stores room, just started on its host. A conflict means a
// concurrent create of the name won, unless the conflicting room is this very
// one, recorded first by its host's periodic sync (same address and port, and
// the same instance if the host reported one).
func (a *roomAPI) record(ctx context.Context, room *chatfleet.Room) error {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	err := a.store.CreateRoom(sctx, room)
	var ce *chatfleet.Error
	if !errors.As(err, &ce) || ce.Code != chatfleet.ECONFLICT || ce.Port != room.Port || ce.Host != room.HostAddr {
		return timedOut(ctx, "the store", err)
	}
	synced, serr := a.store.Room(sctx, room.Name)
	switch {
	case serr != nil:
		return timedOut(ctx, "the store", serr)
	case synced.Instance != "" && synced.Instance != room.Instance:
		return err // another life of the name on the same port
	case synced.Instance == "":
		// The host's sync did not carry the instance (a host that does not
		// report it): tokens issued from the store would lack it and the
		// room would refuse them. End that record and store this one.
		closed := chatfleet.RoomClosed
		if err := a.store.UpdateRoom(sctx, room.Name, chatfleet.RoomUpdate{Status: &closed}); err != nil {
			return timedOut(ctx, "the store", err)
		}
		return timedOut(ctx, "the store", a.store.CreateRoom(sctx, room))
	}
	if room.HLSURL == "" && len(room.Edges) == 0 {
		return nil
	}
	upd := chatfleet.RoomUpdate{}
	if room.HLSURL != "" {
		upd.HLSURL = &room.HLSURL
	}
	if len(room.Edges) > 0 {
		upd.Edges = &room.Edges
	}
	return timedOut(ctx, "the store", a.store.UpdateRoom(sctx, room.Name, upd))
}

// checkFree returns ECONFLICT, with where it runs, if an open room holds name.
// It reads the record by key only: a name held by a record of a release
// before 1.4.0 passes, and the create then loses at CreateRoom, which has the
// last word, and closes the room it started (as when a concurrent create
// wins). Reading by name as well would cost the embedded store a read of
// every room for each new name.
func (a *roomAPI) checkFree(ctx context.Context, name string) error {
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	old, err := a.store.RoomByKey(sctx, name)
	switch {
	case chatfleet.ErrorCode(err) == chatfleet.ENOTFOUND:
		return nil
	case err != nil:
		return timedOut(ctx, "the store", err)
	case old.Status.Open():
		return &chatfleet.Error{Code: chatfleet.ECONFLICT, Message: fmt.Sprintf("room %q exists", name), Host: old.HostAddr, Port: old.Port}
	}
	return nil
}

// place picks hosts until one runs the room, trying at most
// maxCreateAttempts hosts; a host that refuses (draining, full) or cannot be
// reached is excluded from the next pick. A host that finds the request
// invalid (webhookUrls without its WEBHOOK_SECRET, say) ends the attempts:
// the caller gets its EINVALID. first and firstErr are the answer to the
// first pick, asked by the caller.
func (a *roomAPI) place(ctx context.Context, name, region string, opts hostapi.RoomOptions, first chatfleet.Host, firstErr error) (chatfleet.Host, int, error) {
	pick := chatfleet.PickRequest{Region: region}
	var lastErr error
	for attempt := range maxCreateAttempts {
		host, err := first, firstErr
		if attempt > 0 {
			host, err = a.cfg.Picker.Pick(ctx, pick)
		}
		if err != nil {
			if attempt > 0 && chatfleet.ErrorCode(err) == chatfleet.EUNAVAILABLE {
				// Hosts were tried and refused; say so rather than "no host".
				return chatfleet.Host{}, 0, fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE,
					"no host could create the room (%d tried)", attempt), errors.Join(lastErr, err))
			}
			return chatfleet.Host{}, 0, timedOut(ctx, "the load balancers", err)
		}
		port, err := a.fleet.createRoom(ctx, host, name, opts)
		if err == nil {
			return host, port, nil
		}
		if !refused(err) || ctx.Err() != nil {
			return chatfleet.Host{}, 0, timedOut(ctx, "the host", hostFailure(err))
		}
		a.log.Warn("host refused a room; trying another", "room", name, "host", host.ID, "err", err)
		lastErr = err
		pick.Exclude = append(pick.Exclude, host.ID)
	}
	return chatfleet.Host{}, 0, fmt.Errorf("%w: %w", chatfleet.Errorf(chatfleet.EUNAVAILABLE,
		"no host could create the room (%d tried)", maxCreateAttempts), lastErr)
}

// undo closes a room that was started on host but could not be recorded.
// It runs even if the request's deadline has passed, within its own.
func (a *roomAPI) undo(ctx context.Context, host chatfleet.Host, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostCloseTimeout)
	defer cancel()
	if err := a.fleet.closeRoom(ctx, host, name, "room could not be recorded", false); err != nil {
		a.log.Error("close unrecorded room", "room", name, "host", host.ID, "err", err)
	}
}

// issue signs a join token for room's instance and returns it with its expiry.
func (a *roomAPI) issue(room *chatfleet.Room, user, display string, role chatfleet.Role, ttl time.Duration) (string, time.Time, error) {
	tok, err := a.cfg.Tokens.Issue(room.Name, room.Instance, user, display, role, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	// The expiry exactly as signed (whole seconds).
	c, err := a.cfg.Tokens.Verify(tok, room.Name, room.Instance)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("verify the token just issued: %w", err)
	}
	return tok, c.ExpiresAt.Time.UTC(), nil
}

// listPage is the answer of the listing.
type listPage struct {
	Rooms      []roomView `json:"rooms"`
	NextCursor string     `json:"nextCursor"`
}

// list serves GET /api/v1/rooms?sort=viewers|newest&limit=&cursor=: the open
// rooms that serve (live and offline), a page at a time. A page may hold
// fewer rooms than limit; only an empty nextCursor says there are no more.
func (a *roomAPI) list(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	sort := chatfleet.RoomSort(q.Get("sort"))
	switch sort {
	case "":
		sort = chatfleet.SortViewers
	case chatfleet.SortViewers, chatfleet.SortNewest:
	default:
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "sort must be %q or %q", chatfleet.SortViewers, chatfleet.SortNewest))
		return
	}
	limit := defaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "limit must be a whole number from 1 to %d", maxPageSize))
			return
		}
		limit = n
	}
	cursor := q.Get("cursor")
	if len(cursor) > 1024 {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "invalid cursor"))
		return
	}
	page := listPage{Rooms: []roomView{}}
	// The hosts (for the rooms' URLs) are the load balancers' to say, the
	// rooms the store's: ask both at once.
	hosts, stop := a.lookupHosts(ctx)
	defer stop()
	key := fmt.Sprintf("%s %d %s", sort, limit, cursor)
	got, err := a.pages.get(ctx, key, func(ctx context.Context) (storedPage, error) {
		return a.listOpen(ctx, sort, limit, cursor)
	})
	if err != nil {
		a.fail(w, r, timedOut(ctx, "the store", err))
		return
	}
	rooms, cursor := got.rooms, got.next
	byID := hosts()
	for _, rm := range rooms {
		page.Rooms = append(page.Rooms, view(rm, byID))
	}
	page.NextCursor = cursor
	httpx.WriteData(w, http.StatusOK, page)
}

// listOpen reads one listing page from the store: up to limit rooms that
// serve after cursor, and the next cursor.
func (a *roomAPI) listOpen(ctx context.Context, sort chatfleet.RoomSort, limit int, cursor string) (storedPage, error) {
	var page storedPage
	for range listFillCalls {
		sctx, cancel := storeCtx(ctx)
		got, next, err := a.store.ListRooms(sctx, chatfleet.RoomFilter{OpenOnly: true, Sort: sort, Limit: limit - len(page.rooms), Cursor: cursor})
		cancel()
		if err != nil {
			return storedPage{}, err
		}
		for _, rm := range got {
			// Starting and stale rooms hold their names but cannot be joined.
			if rm.Status == chatfleet.RoomLive || rm.Status == chatfleet.RoomOffline {
				page.rooms = append(page.rooms, rm)
			}
		}
		cursor = next
		if cursor == "" || len(page.rooms) >= limit {
			break
		}
	}
	page.next = cursor
	return page, nil
}

// hostsByID returns the hosts the load balancers know, by id, or nil if
// they cannot say: room URLs then fall back to the room's address and port.
func (a *base) hostsByID(ctx context.Context) map[string]chatfleet.Host {
	ctx, cancel := context.WithTimeout(ctx, hostsLookupTimeout)
	defer cancel()
	m, err := a.hostCache.get(ctx, "", func(ctx context.Context) (map[string]chatfleet.Host, error) {
		hosts, err := a.cfg.Picker.Hosts(ctx)
		if err != nil {
			return nil, err
		}
		m := make(map[string]chatfleet.Host, len(hosts))
		for _, h := range hosts {
			m[h.ID] = h
		}
		return m, nil
	})
	if err != nil {
		if !errors.Is(err, context.Canceled) { // the caller left, or needs it no more
			a.log.Warn("list hosts for room URLs", "err", err)
		}
		return nil
	}
	return m
}

// lookupHosts runs hostsByID in the background, for a handler that reads
// the store meanwhile: hosts waits for its answer; stop, deferred by the
// caller, ends the lookup if the handler returns without it.
func (a *base) lookupHosts(ctx context.Context) (hosts func() map[string]chatfleet.Host, stop func()) {
	ctx, stop = context.WithCancel(ctx)
	ch := make(chan map[string]chatfleet.Host, 1)
	go func() { ch <- a.hostsByID(ctx) }()
	var m map[string]chatfleet.Host
	var got bool
	return func() map[string]chatfleet.Host {
		if !got {
			m, got = <-ch, true
		}
		return m
	}, stop
}

// openRoom returns the open room named by the request's path: EINVALID for a
// bad name, ENOTFOUND if there is none or it has ended.
func (a *base) openRoom(r *http.Request) (*chatfleet.Room, error) {
	return openRoomWith(r, a.storedRoom)
}

// openRoomWith is openRoom reading the room with get.
func openRoomWith(r *http.Request, get func(context.Context, string) (*chatfleet.Room, error)) (*chatfleet.Room, error) {
	name := r.PathValue("name")
	if err := chatfleet.ValidateRoomName(name); err != nil {
		return nil, err
	}
	room, err := get(r.Context(), name)
	if err != nil {
		return nil, timedOut(r.Context(), "the store", err)
	}
	if !room.Status.Open() {
		return nil, chatfleet.Errorf(chatfleet.ENOTFOUND, "room %q is %s", name, room.Status)
	}
	return room, nil
}

// storedRoom reads the room named name from the store.
func (a *base) storedRoom(ctx context.Context, name string) (*chatfleet.Room, error) {
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	return a.store.Room(ctx, name)
}

// cachedRoom reads the room named name through the read cache. The room it
// returns is shared: not to be changed.
func (a *roomAPI) cachedRoom(ctx context.Context, name string) (*chatfleet.Room, error) {
	return a.rooms.get(ctx, name, func(ctx context.Context) (*chatfleet.Room, error) {
		return a.storedRoom(ctx, name)
	})
}

// get serves GET /api/v1/rooms/{name}. Ended rooms are found too, with their status.
func (a *roomAPI) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := chatfleet.ValidateRoomName(name); err != nil {
		a.fail(w, r, err)
		return
	}
	hosts, stop := a.lookupHosts(r.Context())
	defer stop()
	room, err := a.cachedRoom(r.Context(), name)
	if err != nil {
		a.fail(w, r, timedOut(r.Context(), "the store", err))
		return
	}
	httpx.WriteData(w, http.StatusOK, view(room, hosts()))
}

// tokenRequest is the body of POST /api/v1/rooms/{name}/tokens.
type tokenRequest struct {
	Role       chatfleet.Role `json:"role"`
	UserID     string         `json:"userId"`
	Name       string         `json:"name"`
	TTLSeconds int            `json:"ttlSeconds"`
}

// tokenAnswer is a join token and where to use it.
type tokenAnswer struct {
	Room      string    `json:"room"`
	Role      string    `json:"role"`
	UserID    string    `json:"userId"`
	Name      string    `json:"name"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	WSURL     string    `json:"wsUrl,omitempty"`
	SSEURL    string    `json:"sseUrl,omitempty"`
}

// issueToken serves POST /api/v1/rooms/{name}/tokens: a viewer or moderator
// join token for an open room, bound to its instance. Producer tokens are
// issued at creation only; the owner's id and the guests' namespace are
// refused (403), so no token impersonates the producer or a guest.
func (a *roomAPI) issueToken(w http.ResponseWriter, r *http.Request) {
	if err := chatfleet.ValidateRoomName(r.PathValue("name")); err != nil {
		a.fail(w, r, err)
		return
	}
	var req tokenRequest
	if err := httpx.DecodeJSON(w, r, maxTokenBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	switch req.Role {
	case "":
		req.Role = chatfleet.RoleViewer
	case chatfleet.RoleViewer, chatfleet.RoleModerator:
	case chatfleet.RoleProducer:
		a.fail(w, r, chatfleet.Errorf(chatfleet.EFORBIDDEN, "producer tokens are issued only when the room is created"))
		return
	default:
		a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "field %q: want %q or %q", "role", chatfleet.RoleViewer, chatfleet.RoleModerator))
		return
	}
	ttl := defaultTokenTTL
	if req.TTLSeconds != 0 {
		if req.TTLSeconds < 1 || req.TTLSeconds > int(maxTokenTTL/time.Second) {
			a.fail(w, r, chatfleet.Errorf(chatfleet.EINVALID, "field %q: want 1 to %d seconds", "ttlSeconds", int(maxTokenTTL/time.Second)))
			return
		}
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	if req.UserID == "" {
		req.UserID = guestID()
	} else if err := checkUserID("userId", req.UserID); err != nil {
		a.fail(w, r, err)
		return
	}
	lookup, stop := a.lookupHosts(r.Context())
	defer stop()
	room, err := openRoomWith(r, a.cachedRoom)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if req.UserID == ownerOf(room) {
		a.fail(w, r, chatfleet.Errorf(chatfleet.EFORBIDDEN, "user id %q is the room's owner: only the producer token, issued at creation, carries it", req.UserID))
		return
	}
	tok, exp, err := a.issue(room, req.UserID, req.Name, req.Role, ttl)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	display := req.Name
	if display == "" {
		display = req.UserID
	}
	hosts := lookup()
	v := view(room, hosts)
	ws, sse := v.WSURL, v.SSEURL
	if req.Role == chatfleet.RoleViewer {
		// Viewers are spread over the room's edges; moderators, like the
		// producer, connect to the origin.
		if e, ok := pickEdge(room.Edges, hosts); ok {
			ws, sse = e.WSURL, e.SSEURL
		}
	}
	httpx.WriteData(w, http.StatusCreated, tokenAnswer{
		Room: room.Name, Role: string(req.Role), UserID: req.UserID, Name: display,
		Token: tok, ExpiresAt: exp, WSURL: ws, SSEURL: sse,
	})
}

// pickEdge returns an edge among edges whose host the load balancers do not
// know as down (hosts nil: they could not say, every edge counts), and false
// if there is none. Of two edges drawn at random it takes the one whose host
// reported fewer connections in its last heartbeat: the power of two
// choices, which spreads viewers by load without sending every token issued
// within one heartbeat to the same least-loaded host.
func pickEdge(edges []chatfleet.RoomEdge, hosts map[string]chatfleet.Host) (chatfleet.RoomEdge, bool) {
	up := make([]chatfleet.RoomEdge, 0, len(edges))
	for _, e := range edges {
		if h, ok := hosts[e.HostID]; hosts == nil || ok && h.State != chatfleet.HostDown {
			if e.WSURL != "" {
				up = append(up, e)
			}
		}
	}
	if len(up) == 0 {
		return chatfleet.RoomEdge{}, false
	}
	a, b := up[mathrand.IntN(len(up))], up[mathrand.IntN(len(up))]
	if hosts[b.HostID].Load.Conns < hosts[a.HostID].Load.Conns {
		return b, true
	}
	return a, true
}

// guestID returns a new anonymous user id, "guest-" and 8 hex digits.
func guestID() string {
	var b [4]byte
	rand.Read(b[:])
	return "guest-" + hex.EncodeToString(b[:])
}

// close serves DELETE /api/v1/rooms/{name}: the room's host closes it (its
// clients are told), then the store records it closed.
func (a *roomAPI) close(w http.ResponseWriter, r *http.Request) {
	room, err := a.openRoom(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	err = a.closeOn(r.Context(), room, "room closed by its owner", false)
	a.rooms.forget(room.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("room closed", "room", room.Name, "host", room.HostID)
	httpx.WriteData(w, http.StatusOK, map[string]string{"name": room.Name, "status": string(chatfleet.RoomClosed)})
}

// closeOn closes room on its host (through its admin port if admin is set)
// and marks it closed in the store. A host the load balancers no longer
// know, or know as down, took its rooms with it: the store is updated alone.
// The room's edges are closed too, best effort: an edge that cannot be
// closed is logged (the origin's end reaches it through NATS anyway).
func (a *base) closeOn(ctx context.Context, room *chatfleet.Room, reason string, admin bool) error {
	hosts, err := a.cfg.Picker.Hosts(ctx)
	if err != nil {
		return timedOut(ctx, "the load balancers", err)
	}
	for _, h := range hosts {
		if h.ID != room.HostID || h.State == chatfleet.HostDown {
			continue
		}
		if err := a.fleet.closeRoom(ctx, h, room.Name, reason, admin); err != nil {
			return timedOut(ctx, "the host", hostFailure(err))
		}
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		if h.State == chatfleet.HostDown || h.ID == room.HostID || !slices.ContainsFunc(room.Edges, func(e chatfleet.RoomEdge) bool { return e.HostID == h.ID }) {
			continue
		}
		wg.Go(func() {
			if err := a.fleet.closeRoom(ctx, h, room.Name, reason, admin); err != nil {
				a.log.Warn("close an edge", "room", room.Name, "host", h.ID, "err", err)
			}
		})
	}
	wg.Wait()
	closed := chatfleet.RoomClosed
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	if err := a.store.UpdateRoom(sctx, room.Name, chatfleet.RoomUpdate{Status: &closed}); err != nil {
		return timedOut(ctx, "the store", err)
	}
	return nil
}
