package hostapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/httpx"
)

// maxAnswer bounds what is read of an answer: a list of a full host's rooms
// fits.
const maxAnswer = 8 << 20

// ErrNoAnswer is in the chain of the error of a call the host did not
// answer: it could not be reached, or the connection failed or timed out
// before the whole answer was read.
var ErrNoAnswer = errors.New("host did not answer")

// Error is an error answer of a host: its HTTP status and the error of its
// envelope (one made of the status if the body has none). It does not
// unwrap to that *chatfleet.Error: what the host refused is not the
// caller's own failure, and the caller decides which codes to pass on.
type Error struct {
	Status int
	Err    *chatfleet.Error
}

func (e *Error) Error() string {
	return fmt.Sprintf("status %d: %s: %s", e.Status, e.Err.Code, e.Err.Message)
}

// Client calls one host's API and admin ports. Its zero value has no
// address: set API and Key for the room calls, Admin and AdminKey for the
// admin calls. Timeouts are the context's. Safe for concurrent use.
type Client struct {
	API      string // base URL of the API port, e.g. http://10.0.0.5:8080
	Key      string // the fleet key (KEY)
	Admin    string // base URL of the admin port
	AdminKey string // the fleet admin key (ADMIN_KEY)
	// HTTP makes the calls; nil means http.DefaultClient. The control API
	// gives one that dials only the fleet's networks and follows no
	// redirect with a key.
	HTTP *http.Client
}

// CreateRoom asks the host to run room name with opts. A room that runs
// there already is an *Error of status 409 whose Err has the room's port.
func (c *Client) CreateRoom(ctx context.Context, name string, opts RoomOptions) (Created, error) {
	var out Created
	if err := c.do(ctx, c.API, c.Key, http.MethodPost, RoomPath+url.PathEscape(name), CreateRequest{opts}, &out); err != nil {
		return Created{}, err
	}
	if out.Port <= 0 {
		return Created{}, errors.New("the host answered a create without a port")
	}
	return out, nil
}

// CloseRoom closes room name through the API port, telling its clients
// reason. A room the host does not run is an *Error of status 404.
func (c *Client) CloseRoom(ctx context.Context, name, reason string) error {
	return c.do(ctx, c.API, c.Key, http.MethodDelete, RoomPath+url.PathEscape(name), CloseRequest{reason}, nil)
}

// AdminCloseRoom is CloseRoom through the admin port.
func (c *Client) AdminCloseRoom(ctx context.Context, name, reason string) error {
	return c.do(ctx, c.Admin, c.AdminKey, http.MethodDelete, AdminRoomPath+url.PathEscape(name), CloseRequest{reason}, nil)
}

// Room returns room name as the API port tells it.
func (c *Client) Room(ctx context.Context, name string) (RoomInfo, error) {
	var out RoomInfo
	err := c.do(ctx, c.API, c.Key, http.MethodGet, RoomPath+url.PathEscape(name), nil, &out)
	return out, err
}

// AdminRoom is Room through the admin port.
func (c *Client) AdminRoom(ctx context.Context, name string) (RoomInfo, error) {
	var out RoomInfo
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodGet, AdminRoomPath+url.PathEscape(name), nil, &out)
	return out, err
}

// Rooms lists the host's rooms through the API port.
func (c *Client) Rooms(ctx context.Context) ([]RoomInfo, error) {
	var out RoomList
	err := c.do(ctx, c.API, c.Key, http.MethodGet, RoomsPath, nil, &out)
	return out.Rooms, err
}

// AdminRooms is Rooms through the admin port.
func (c *Client) AdminRooms(ctx context.Context) ([]RoomInfo, error) {
	var out RoomList
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodGet, RoomsPath, nil, &out)
	return out.Rooms, err
}

// Global sends text to every client of every room of the host and returns
// how many rooms it reached.
func (c *Client) Global(ctx context.Context, text string) (int, error) {
	var out RoomCount
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodPost, MessagesPath, GlobalRequest{text}, &out)
	return out.Rooms, err
}

// ApplyBans has the host's rooms apply ch and returns how many rooms it
// sent changes to.
func (c *Client) ApplyBans(ctx context.Context, ch BanChanges) (int, error) {
	var out RoomCount
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodPost, BansPath, ch, &out)
	return out.Rooms, err
}

// RefreshCache has the host reload its cache (blocked words, room
// defaults) from the store and push it to its rooms; it returns how many
// rooms it pushed to.
func (c *Client) RefreshCache(ctx context.Context) (int, error) {
	var out RoomCount
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodPost, CacheRefreshPath, nil, &out)
	return out.Rooms, err
}

// Do asks the host to carry out a.
func (c *Client) Do(ctx context.Context, a Action) (ActionAnswer, error) {
	var out ActionAnswer
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodPost, a.Path(), nil, &out)
	return out, err
}

// Stats returns the host's stats.
func (c *Client) Stats(ctx context.Context) (HostStats, error) {
	var out HostStats
	err := c.do(ctx, c.Admin, c.AdminKey, http.MethodGet, StatsPath, nil, &out)
	return out, err
}

// do sends method to base+path with key and body (JSON, if not nil), and
// decodes the data envelope of a 2xx answer into out (if not nil). An
// error answer is an *Error; a call the host did not answer wraps
// ErrNoAnswer. Keys never reach an error: *url.Error names the method and
// URL only.
func (c *Client) do(ctx context.Context, base, key, method, path string, body, out any) error {
	if base == "" {
		return fmt.Errorf("%s %s: no address for this port", method, path)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%w: read answer to %s %s: %w", ErrNoAnswer, method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var env httpx.Envelope
		if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Code == "" {
			env.Error = &chatfleet.Error{Code: httpx.Code(resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
		}
		return &Error{Status: resp.StatusCode, Err: env.Error}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, &struct {
			Data any `json:"data"`
		}{out}); err != nil {
			return fmt.Errorf("decode answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}
