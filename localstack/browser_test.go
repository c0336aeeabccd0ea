package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"net/http"
	"net/http/httptest"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// chromiumFlags are the flags the browser test runs Chromium with.
var chromiumFlags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("headless", true),
	chromedp.Flag("no-sandbox", true), // CI runs as root
	chromedp.Flag("disable-gpu", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("no-first-run", true),
	chromedp.WindowSize(1280, 900),
}

// findChromium returns the browser to drive: $CHROMIUM, else chromium on
// the PATH. The browser test needs it and fails without it: .ci/run
// installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "/usr/bin/chromium"}
	if p := os.Getenv("CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the browser test needs headless Chromium; install it with " +
		"`apt-get install -y --no-install-recommends chromium` (as .ci/run does) or set CHROMIUM to its path")
	return ""
}

// artifacts returns the folder for screenshots: $ARTIFACTS_DIR/<test> when
// set (kept), else the test's artifact folder (kept with `go test
// -artifacts`, removed otherwise).
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.ArtifactDir()
	if root := os.Getenv("ARTIFACTS_DIR"); root != "" {
		dir = filepath.Join(root, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots go to %s", dir)
	return dir
}

// tab is one browser page the test drives.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	dir  string

	mu      sync.Mutex
	console []string
}

// newTab opens a page in ctx's browser (newContext: in a browser context of
// its own, with its own storage, as a second browser would be).
func newTab(t *testing.T, parent context.Context, name, dir string, newContext bool) *tab {
	t.Helper()
	var opts []chromedp.ContextOption
	if newContext {
		opts = append(opts, chromedp.WithNewBrowserContext())
	}
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	tb := &tab{t: t, name: name, ctx: ctx, dir: dir}
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	tb.slow("open a tab", start)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m.String())
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			tb.mu.Lock()
			defer tb.mu.Unlock()
			t.Logf("%s console:\n  %s", name, strings.Join(tb.console, "\n  "))
		}
	})
	return tb
}

// slack multiplies every time limit of the browser test: a step returns as
// soon as it is done, and a machine busy with other tests (`make test`
// runs packages in parallel, with -race) may be slow.
const slack = 2

// do runs steps with a time limit, failing the test with what and a
// screenshot of the page as it is.
func (tb *tab) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, slack*timeout)
	defer cancel()
	start := time.Now()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.shot("FAILED-" + tb.name)
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
	tb.slow(what, start)
}

// slow logs a step that took more than a second, to tell where a slow run
// spends its time.
func (tb *tab) slow(what string, start time.Time) {
	if d := time.Since(start); d > time.Second {
		tb.t.Logf("%s: %s took %v", tb.name, what, d.Round(time.Millisecond))
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, expr, err)
	}
	return v
}

// wait waits until the JavaScript expression is truthy. It evaluates it
// every 100ms, so that a navigation meanwhile (which destroys the page's
// JavaScript context) only costs a retry.
func (tb *tab) wait(what, expr string, timeout time.Duration) {
	tb.t.Helper()
	timeout *= slack
	start := time.Now()
	defer tb.slow("wait until "+what, start)
	deadline := start.Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			tb.shot("FAILED-" + tb.name)
			tb.t.Fatalf("%s: wait until %s: not after %v (last error: %v)", tb.name, what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitText waits until the element of sel holds text.
func (tb *tab) waitText(sel, text string, timeout time.Duration) {
	tb.t.Helper()
	tb.wait(fmt.Sprintf("%s shows %q", sel, text),
		fmt.Sprintf(`(document.querySelector(%s)?.textContent || '').includes(%s)`, js(sel), js(text)), timeout)
}

// shot saves a PNG of the whole page.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	defer tb.slow("screenshot "+name, time.Now())
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("%s: screenshot %s: %v", tb.name, name, err)
		return
	}
	p := filepath.Join(tb.dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		tb.t.Errorf("save %s: %v", p, err)
		return
	}
	tb.t.Logf("%s screenshot %s", time.Now().Format("15:04:05.000"), p)
}

// offline cuts the page off the network (on) or gives it back, as a lost
// Wi-Fi would: new connections fail and the browser reports offline (open
// connections are left alone by the emulation; the page drops them on the
// browser's offline event).
func (tb *tab) offline(on bool) {
	tb.t.Helper()
	var conds []*network.Conditions
	if on {
		conds = append(conds, &network.Conditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
	}
	tb.do(fmt.Sprintf("set offline %v", on), 10*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, t, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: conds}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: on, DownloadThroughput: -1, UploadThroughput: -1})
		return err
	}))
}

// js quotes s as a JavaScript string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowser drives the web client in headless Chromium against the local
// stack: the lobby, a producer going live, a viewer (WebSocket) and a
// second viewer (SSE fallback) in browser contexts of their own, chat both
// ways, a ban, the lobby's listing, and the room's close. Each step leaves a
// screenshot.
func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	dir := artifacts(t)
	s := startStack(t)
	start := time.Now()

	browser := startBrowser(t)
	t.Logf("%s started in %v", chromium, time.Since(start).Round(time.Millisecond))

	const room = "e2e-room"
	base := s.URL("")
	producer := newTab(t, browser, "producer", dir, false)

	// 1. The lobby gets the dev API key from the stack's /config.js and lists rooms.
	producer.do("open the lobby", 20*time.Second, chromedp.Navigate(base+"/"))
	producer.wait("the lobby lists rooms", `document.querySelector('#rooms-count').textContent !== ''`, 15*time.Second)
	producer.shot("01-lobby")

	// 2. Go live: create the room, announce a stream.
	producer.do("follow Go live", 10*time.Second, chromedp.Click(chromedp.ID("go-live")))
	producer.wait("the go-live page", `location.pathname === '/live.html' && document.readyState === 'complete' && !!document.querySelector('#room-name')`, 10*time.Second)
	producer.do("create a room", 20*time.Second,
		chromedp.SendKeys(chromedp.ID("room-name"), room),
		chromedp.Click(chromedp.ID("create-button")))
	producer.wait("the producer is connected", `document.body.dataset.conn === 'open'`, 20*time.Second)
	producer.do("announce the stream", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("hls-url"), playlists(t).URL+"/ok.m3u8"),
		chromedp.Click(chromedp.ID("go-live-button")))
	producer.waitText("#live-badge", "live", 10*time.Second)
	producer.waitText("#chat-log", "The stream is live", 10*time.Second)
	producer.shot("02-producer-live")

	// 3. A viewer in a browser context of its own; the key comes in the
	// address (?apiKey=), which the page stores and strips.
	viewer := newTab(t, browser, "viewer", dir, true)
	viewer.do("open the watch page", 20*time.Second, chromedp.Navigate(base+"/watch.html?room="+room+"&apiKey="+testAPIKey))
	viewer.wait("the viewer is connected over WebSocket", `document.body.dataset.conn === 'open' && document.body.dataset.transport === 'ws'`, 20*time.Second)
	if loc := eval[string](viewer, `location.search`); strings.Contains(loc, "apiKey") {
		t.Errorf("the watch page left the API key in its address: %s", loc)
	}
	guestID := eval[string](viewer, `JSON.parse(localStorage.getItem('chatfleet.guest')).userId`)
	guestName := eval[string](viewer, `JSON.parse(localStorage.getItem('chatfleet.guest')).name`)
	if owner := eval[string](producer, `localStorage.getItem('chatfleet.guest') || ''`); owner != "" && strings.Contains(owner, guestID) {
		t.Fatalf("the viewer's browser context shares storage with the producer's")
	}
	viewer.waitText("#live-badge", "live", 10*time.Second)
	viewer.waitText("#viewer-count", "2 people", 10*time.Second)
	producer.waitText("#viewer-count", "2 people", 10*time.Second)
	producer.wait("the viewer list shows the viewer", fmt.Sprintf(`!!document.querySelector('#viewers li[data-user=%s]')`, js(guestID)), 10*time.Second)
	producer.waitText("#viewers", guestName, 5*time.Second)
	viewer.shot("03-viewer-joined")

	// 4. Chat both ways.
	viewer.do("send a chat message", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-input"), "hello from the viewer"),
		chromedp.Click(chromedp.ID("chat-send")))
	producer.waitText("#chat-log", "hello from the viewer", 10*time.Second)
	producer.do("answer", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-input"), "welcome, viewer"),
		chromedp.Click(chromedp.ID("chat-send")))
	viewer.waitText("#chat-log", "welcome, viewer", 10*time.Second)
	viewer.waitText("#chat-log", "hello from the viewer", 5*time.Second)
	producer.shot("04-producer-chat")
	viewer.shot("05-viewer-chat")

	// 5. The viewer's network goes away: the page says so and retries; what
	// the producer says meanwhile arrives on reconnection (lastSeq). Then a
	// longer outage, past the room's history of 100 events: the page says
	// that messages were missed.
	viewer.offline(true)
	viewer.wait("the viewer shows the lost connection", `document.body.dataset.conn === 'reconnecting'`, 10*time.Second)
	viewer.waitText("#notice", "Connection lost", 10*time.Second)
	viewer.shot("06-viewer-reconnecting")
	producer.do("chat while the viewer is away", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-input"), "said while you were away"),
		chromedp.Click(chromedp.ID("chat-send")))
	producer.waitText("#chat-log", "said while you were away", 10*time.Second)
	viewer.offline(false)
	viewer.wait("the viewer is back", `document.body.dataset.conn === 'open'`, 20*time.Second)
	viewer.waitText("#chat-log", "said while you were away", 10*time.Second)
	viewer.waitText("#chat-log", "recovered", 5*time.Second) // "Reconnected: N missed events recovered."
	viewer.shot("07-viewer-recovered")

	viewer.offline(true)
	viewer.wait("the viewer is cut off again", `document.body.dataset.conn === 'reconnecting'`, 10*time.Second)
	// More than the room keeps (8 events per message of its history size of
	// 100), in batches the room's rate ceiling takes.
	for b := 0; b < 9; b++ {
		js := fmt.Sprintf(`(() => { let n = 0; for (let i = %d; i <= %d; i++) if (chatfleet.page.conn.chat('burst ' + i)) n++; return n; })()`, b*100+1, b*100+100)
		if n := eval[int](producer, js); n != 100 {
			t.Fatalf("the producer sent %d of 100 messages", n)
		}
		producer.waitText("#chat-log", fmt.Sprintf("burst %d", b*100+100), 10*time.Second)
	}
	viewer.offline(false)
	viewer.wait("the viewer is back", `document.body.dataset.conn === 'open'`, 20*time.Second)
	viewer.waitText("#chat-log", "burst 900", 10*time.Second)
	viewer.waitText("#notice", "messages were missed", 5*time.Second)
	viewer.shot("08-viewer-missed")

	// 6. A second viewer forced onto the SSE fallback chats through POST /send.
	sse := newTab(t, browser, "sse-viewer", dir, true)
	sse.do("open the watch page over SSE", 20*time.Second, chromedp.Navigate(base+"/watch.html?room="+room+"&transport=sse&apiKey="+testAPIKey))
	sse.wait("the SSE viewer is connected", `document.body.dataset.conn === 'open' && document.body.dataset.transport === 'sse'`, 20*time.Second)
	sse.waitText("#chat-log", "burst 900", 10*time.Second) // history
	sse.do("send a chat message over SSE", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-input"), "hello over SSE\r")) // Enter sends
	producer.waitText("#chat-log", "hello over SSE", 10*time.Second)
	viewer.waitText("#chat-log", "hello over SSE", 10*time.Second)
	sse.waitText("#chat-log", "hello over SSE", 10*time.Second)
	producer.waitText("#viewer-count", "3 people", 10*time.Second)
	sse.shot("09-sse-viewer")

	// 7. The lobby (another tab of the producer's browser) lists the room
	// as live with its viewers, from the hosts' reports.
	lobby := newTab(t, browser, "lobby", dir, false)
	lobby.do("open the lobby", 20*time.Second, chromedp.Navigate(base+"/"))
	lobby.wait("the lobby lists the live room with 3 viewers", fmt.Sprintf(`(() => {
		const tr = document.querySelector('tr[data-room=%s]');
		return tr && tr.querySelector('.badge.live') && tr.querySelector('td.num').textContent.startsWith('3');
	})()`, js(room)), 30*time.Second)
	lobby.shot("10-lobby-live")

	// 8. The producer bans the first viewer from the viewer list.
	producer.do("ban the viewer", 10*time.Second,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#viewers li[data-user=%s] button[aria-label^="Ban"]`, js(guestID)))))
	viewer.wait("the viewer is told it was banned", `document.body.dataset.ended === 'banned'`, 10*time.Second)
	viewer.waitText("#notice", "banned", 5*time.Second)
	producer.wait("the viewer list drops the viewer", fmt.Sprintf(`!document.querySelector('#viewers li[data-user=%s]')`, js(guestID)), 10*time.Second)
	producer.waitText("#chat-log", guestName+" was banned", 5*time.Second)
	producer.waitText("#viewer-count", "2 people", 10*time.Second)
	sse.waitText("#chat-log", guestName+" was banned", 10*time.Second)
	viewer.shot("11-viewer-banned")
	producer.shot("12-producer-after-ban")

	// 9. The banned viewer cannot come back.
	viewer.do("reload the watch page", 20*time.Second, chromedp.Reload())
	viewer.wait("the banned viewer stays out", `document.body.dataset.ended === 'banned' || document.body.dataset.conn === 'reconnecting'`, 20*time.Second)
	if got := eval[string](viewer, `document.body.dataset.conn || ''`); got == "open" {
		t.Errorf("the banned viewer got back in")
	}
	viewer.shot("13-viewer-banned-reload")

	// 10. A personal moderator link: the page joins with the link's token,
	// without an API key (a browser context with empty storage).
	producer.do("create a moderator link", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("invite-name"), "Ann"),
		chromedp.SetValue(chromedp.ID("invite-role"), "moderator"),
		chromedp.Click(chromedp.CSS(`#invite-form button[type="submit"]`)))
	producer.wait("the link", `!document.querySelector('#invite-out').hidden`, 10*time.Second)
	link := eval[string](producer, `document.querySelector('#invite-link').href`)
	mod := newTab(t, browser, "moderator", dir, true)
	mod.do("open the moderator link", 20*time.Second, chromedp.Navigate(link))
	mod.wait("the moderator is connected", `document.body.dataset.conn === 'open'`, 20*time.Second)
	if role := eval[string](mod, `chatfleet.page.conn.you.role + ' ' + chatfleet.page.conn.you.name`); role != "moderator Ann" {
		t.Errorf("the personal link joined as %q, want \"moderator Ann\"", role)
	}
	producer.waitText("#viewers", "Ann", 10*time.Second)
	mod.do("delete a message as moderator", 10*time.Second, chromedp.Click(chromedp.JSPath(
		`[...document.querySelectorAll('#chat-log li.chat')].find(li => li.textContent.includes('hello over SSE')).querySelector('button.msg-actions')`)),
		chromedp.Click(chromedp.CSS(`.msg-menu button[data-action="delete"]`)))
	for _, tb := range []*tab{mod, producer, sse} {
		tb.waitText("#chat-log", "message deleted by Ann", 10*time.Second)
	}
	mod.shot("14-moderator-link")

	// 11. The producer closes the room; the SSE viewer is told.
	producer.do("close the room", 10*time.Second,
		chromedp.Click(chromedp.ID("close-room")),
		chromedp.WaitVisible(chromedp.ID("close-confirm")),
		chromedp.Click(chromedp.ID("close-confirm")))
	producer.wait("the producer sees the room closed", `document.body.dataset.ended === 'closed'`, 10*time.Second)
	sse.wait("the SSE viewer sees the room closed", `document.body.dataset.ended === 'closed'`, 10*time.Second)
	sse.waitText("#notice", "The room has ended", 5*time.Second)
	mod.wait("the moderator sees the room closed", `document.body.dataset.ended === 'closed'`, 10*time.Second)
	producer.shot("15-producer-closed")
	sse.shot("16-sse-viewer-closed")
	t.Logf("browser scenario took %v", time.Since(start).Round(time.Millisecond))
}

// TestConsole drives the operator console (/admin.html) in headless
// Chromium against the local stack and uses every admin route through it:
// hosts (list, drain, resume, stats, restart, shutdown behind a
// confirmation), a room (listed, inspected, its own ban lifted, closed),
// a global message a viewer receives, a fleet ban added, listed and
// removed, blocked words and room defaults replaced and read back, an
// API error shown, and the key kept in sessionStorage only. Each step
// leaves a screenshot.
func TestConsole(t *testing.T) {
	dir := artifacts(t)
	s := startStack(t)

	browser := startBrowser(t)

	// A room made through the room API, its producer and a viewer, and a
	// ban of the room's own (by the producer) for the console to lift.
	const room = "console-room"
	var created struct{ Token, WSURL string }
	decodeData(t, "POST", s.URL("/api/v1/rooms/"+room), testAPIKey, `{}`, http.StatusCreated, &created)
	prod := testutil.DialRoom(t, strings.TrimSuffix(created.WSURL, "/ws"), created.Token, -1)
	prod.Next(protocol.TypeWelcome, 5*time.Second)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeBan, UserID: "room-pest", Reason: "spam here"})
	prod.Next(protocol.TypeBanned, 5*time.Second)
	v := joinRoom(t, s, room, "", "console-viewer")

	op := newTab(t, browser, "operator", dir, false)
	row := func(kind, id string) string { return fmt.Sprintf(`#%s tr[data-%s=%s]`, kind+"s", kind, js(id)) }
	button := func(kind, id, action string) chromedp.CSS {
		return chromedp.CSS(fmt.Sprintf(`%s button[data-action=%q]`, row(kind, id), action))
	}
	// settle waits until the console's actions are done (it re-renders
	// its tables after each).
	settle := func() {
		t.Helper()
		op.wait("the console is idle", `document.body.dataset.pending === '0'`, 10*time.Second)
	}
	noticeOK := func(text string) {
		t.Helper()
		op.wait(fmt.Sprintf("the notice says %q", text), fmt.Sprintf(
			`(() => { const n = document.querySelector('#notice'); return !n.hidden && n.classList.contains('ok') && n.textContent.includes(%s); })()`, js(text)), 10*time.Second)
		settle()
	}

	// 1. The lobby links the console discreetly; the console asks for the key.
	op.do("open the lobby", 20*time.Second, chromedp.Navigate(s.URL("/")))
	// (The lobby's listing moves the footer when it arrives.)
	op.wait("the lobby lists the room", `!!document.querySelector('#rooms tr[data-room="console-room"]')`, 15*time.Second)
	op.do("follow the console link", 10*time.Second, chromedp.Click(chromedp.CSS(`footer a[href="/admin.html"]`)))
	op.wait("the console asks for the key", `location.pathname === '/admin.html' && document.querySelector('#console').hidden && !!document.querySelector('#admin-key')`, 10*time.Second)
	op.shot("c01-key-form")

	// 2. A wrong key is refused with the API's message; the right one lists the two hosts.
	op.do("enter a wrong key", 10*time.Second, chromedp.SendKeys(chromedp.ID("admin-key"), "WRONG_KEY\r"))
	op.wait("the refusal is shown", `document.querySelector('#notice').classList.contains('error') && document.querySelector('#notice').textContent.includes('the admin key was refused')`, 10*time.Second)
	op.wait("the refused key is not kept", `sessionStorage.getItem('chatfleet.adminKey') === null && document.querySelector('#console').hidden`, 5*time.Second)
	op.shot("c02-wrong-key")
	op.do("enter the admin key", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("admin-key"), testAdminAPIKey),
		chromedp.Click(chromedp.ID("key-use")))
	noticeOK("Connected to the admin API")
	op.wait("two hosts listed", `document.querySelectorAll('#hosts tr').length === 2`, 10*time.Second)
	if got := eval[string](op, `sessionStorage.getItem('chatfleet.adminKey') + ' ' + (localStorage.getItem('chatfleet.adminKey') === null) + ' ' + location.href.includes('DEV_ADMIN')`); got != testAdminAPIKey+" true false" {
		t.Errorf("the key is kept as %q, want it in sessionStorage only, not in localStorage or the address", got)
	}
	op.shot("c03-hosts")

	// 3. Drain, then resume host-1; its stats on demand.
	op.do("drain host-1", 10*time.Second, chromedp.Click(button("host", "host-1", "drain")))
	noticeOK("host-1: drain answered 200, state draining")
	op.wait("host-1 is draining", `document.querySelector('#hosts tr[data-host="host-1"]').dataset.state === 'draining'`, 10*time.Second)
	op.shot("c04-host-drained")
	// By keyboard: focus Resume and press Enter; the focus stays in host-1's row after the list is re-read.
	op.do("resume host-1 by keyboard", 10*time.Second, chromedp.Focus(button("host", "host-1", "resume")), chromedp.KeyEvent("\r"))
	noticeOK("host-1: resume answered 200, state accepting")
	op.wait("host-1 is accepting", `document.querySelector('#hosts tr[data-host="host-1"]').dataset.state === 'accepting'`, 10*time.Second)
	if got := eval[string](op, `(document.activeElement.closest('tr')?.dataset.host || '') + ' ' + (document.activeElement.dataset.action || '')`); !strings.HasPrefix(got, "host-1 ") {
		t.Errorf("after the host list was re-read the focus is on %q, want a button of host-1's row", got)
	}
	op.shot("c05-host-resumed")
	op.do("show host-1's stats", 10*time.Second, chromedp.Click(button("host", "host-1", "stats")))
	settle()
	op.waitText("#host-stats-title", "Stats of host-1", 10*time.Second)
	op.waitText("#host-stats-list", "uptimeSec", 5*time.Second)
	op.shot("c06-host-stats")

	// 4. The room is listed with its viewer, and inspected.
	op.do("refresh the rooms", 10*time.Second, chromedp.Click(chromedp.ID("rooms-refresh")))
	settle()
	op.wait("the room is listed", `!!document.querySelector(`+js(row("room", room))+`)`, 10*time.Second)
	op.do("inspect the room", 10*time.Second, chromedp.Click(button("room", room, "inspect")))
	settle()
	op.waitText("#room-detail-title", "Room "+room, 10*time.Second)
	op.waitText("#room-detail-host", "pid", 5*time.Second)
	// The host's figures are sampled: inspect again until they count the producer and the viewer.
	conns := `[...document.querySelectorAll('#room-detail-host dt')].some(dt => dt.textContent === 'conns' && Number(dt.nextElementSibling.textContent) >= 2)`
	for deadline := time.Now().Add(slack * 10 * time.Second); !eval[bool](op, conns); {
		if time.Now().After(deadline) {
			op.shot("FAILED-operator")
			t.Fatal("the room's inspection never counted its 2 connections")
		}
		time.Sleep(200 * time.Millisecond)
		op.do("inspect the room again", 10*time.Second, chromedp.Click(chromedp.CSS(`#inspect-form button[type="submit"]`)))
		settle()
	}
	op.shot("c07-room-inspected")

	// 5. A global message reaches the viewer.
	const msg = "maintenance at <b>noon</b>"
	got := watch([]*viewer{v}, globalMessage(msg))
	op.do("send a global message", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("message-text"), msg),
		chromedp.Click(chromedp.CSS(`#message-form button[type="submit"]`)))
	noticeOK("Message sent (200) to")
	if _, err := got(); err != nil {
		t.Fatalf("the viewer did not get the global message: %v", err)
	}
	op.shot("c08-global-message")

	// 6. A fleet ban added, listed and removed.
	op.do("add a fleet ban", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("ban-user"), "pest-1"),
		chromedp.SendKeys(chromedp.ID("ban-reason"), "<script>alert(1)</script>"),
		chromedp.SetValue(chromedp.ID("ban-minutes"), "30"),
		chromedp.Click(chromedp.CSS(`#ban-form button[type="submit"]`)))
	noticeOK("Fleet ban of pest-1 added (201)")
	op.wait("the fleet ban is listed", `!!document.querySelector('#bans tr[data-user="pest-1"]')`, 10*time.Second)
	if n := eval[int](op, `document.querySelectorAll('#bans script').length`); n != 0 {
		t.Errorf("the ban's reason became markup: %d script elements", n)
	}
	op.waitText("#bans", "<script>alert(1)</script>", 5*time.Second)
	op.shot("c09-fleet-ban")
	op.do("remove the fleet ban", 10*time.Second, chromedp.Click(chromedp.CSS(`#bans tr[data-user="pest-1"] button[data-action="unban"]`)))
	noticeOK("1 ban of pest-1 removed (200)")
	op.wait("the fleet ban is gone", `!document.querySelector('#bans tr[data-user="pest-1"]')`, 10*time.Second)
	op.shot("c10-fleet-ban-removed")

	// 7. The room's own ban, listed from the room's row and removed.
	op.do("list the room's bans", 10*time.Second, chromedp.Click(button("room", room, "bans")))
	settle()
	op.wait("the room's ban is listed", `!!document.querySelector('#bans tr[data-user="room-pest"]')`, 10*time.Second)
	op.waitText("#bans-count", "in room "+room, 5*time.Second)
	op.do("remove the room's ban", 10*time.Second, chromedp.Click(chromedp.CSS(`#bans tr[data-user="room-pest"] button[data-action="unban"]`)))
	noticeOK("1 ban of room-pest removed from " + room + " (200)")
	op.shot("c11-room-ban-removed")

	// 8. Blocked words: a refusal shows the API's message; then replaced and read back.
	op.do("save an invalid word", 10*time.Second,
		chromedp.SetValue(chromedp.ID("words-text"), "fine\nnot-ok"),
		chromedp.Click(chromedp.CSS(`#words-form button[type="submit"]`)))
	op.wait("the API's refusal is shown", `document.querySelector('#notice').classList.contains('error') && document.querySelector('#notice').textContent.includes('letters and digits only')`, 10*time.Second)
	op.shot("c12-words-refused")
	op.do("replace the blocked words", 10*time.Second,
		chromedp.SetValue(chromedp.ID("words-text"), "darn\nheck"),
		chromedp.Click(chromedp.CSS(`#words-form button[type="submit"]`)))
	noticeOK("Blocked words replaced (200): 2 words, told 2 hosts")
	var words struct{ Words []string }
	decodeData(t, "GET", s.URL("/admin/v1/blocked-words"), testAdminAPIKey, "", http.StatusOK, &words)
	if strings.Join(words.Words, ",") != "darn,heck" {
		t.Errorf("the store holds blocked words %q, want darn, heck", words.Words)
	}
	op.wait("the words shown are the stored ones", `document.querySelector('#words-text').value === 'darn\nheck'`, 10*time.Second)
	op.shot("c13-blocked-words")

	// 9. Room defaults replaced and read back.
	op.do("replace the room defaults", 10*time.Second,
		chromedp.SetValue(chromedp.ID("def-maxMessageLen"), "321"),
		chromedp.SetValue(chromedp.ID("def-idleTimeoutSec"), "600"),
		chromedp.Click(chromedp.CSS(`#defaults-form button[type="submit"]`)))
	noticeOK("Room defaults replaced (200): told 2 hosts")
	var defs struct{ MaxMessageLen, IdleTimeoutSec, HistorySize int }
	decodeData(t, "GET", s.URL("/admin/v1/room-defaults"), testAdminAPIKey, "", http.StatusOK, &defs)
	if defs.MaxMessageLen != 321 || defs.IdleTimeoutSec != 600 || defs.HistorySize != 100 {
		t.Errorf("the store holds defaults %+v, want maxMessageLen 321, idleTimeoutSec 600, historySize 100", defs)
	}
	// Read back: a reload of the page (the tab keeps its key) shows what the API holds.
	op.do("reload the console", 20*time.Second, chromedp.Reload())
	noticeOK("Connected to the admin API")
	op.wait("the words are read back", `document.querySelector('#words-text').value === 'darn\nheck' && document.querySelector('#words-count').textContent === '2 words stored.'`, 10*time.Second)
	op.wait("the defaults are read back", `document.querySelector('#def-maxMessageLen').value === '321' && document.querySelector('#def-idleTimeoutSec').value === '600' && document.querySelector('#def-historySize').value === '100'`, 10*time.Second)
	op.shot("c14-room-defaults")

	// 10. The room closed with a reason, behind a confirmation.
	op.do("ask to close the room", 10*time.Second, chromedp.Click(button("room", room, "close")))
	op.wait("the confirmation asks for a reason", `document.querySelector('#confirm').open && !document.querySelector('#confirm-reason-field').hidden`, 10*time.Second)
	op.do("give the reason", 10*time.Second, chromedp.SendKeys(chromedp.ID("confirm-reason"), "closed by the operator"))
	op.shot("c15-room-close-confirm")
	op.do("confirm the close", 10*time.Second, chromedp.Click(chromedp.ID("confirm-ok")))
	noticeOK(room + ": closed (200)")
	op.wait("the room leaves the listing", `!document.querySelector(`+js(row("room", room))+`)`, 10*time.Second)
	var insp struct{ Room struct{ Status string } }
	decodeData(t, "GET", s.URL("/admin/v1/rooms/"+room), testAdminAPIKey, "", http.StatusOK, &insp)
	if insp.Room.Status != "closed" {
		t.Errorf("the room's status after the close is %q, want closed", insp.Room.Status)
	}
	op.shot("c16-room-closed")

	// 11. Restart host-2 (202); shutdown asks first, and cancelling does nothing.
	op.do("restart host-2", 10*time.Second, chromedp.Click(button("host", "host-2", "restart")))
	noticeOK("host-2: restart answered 202")
	op.shot("c17-host-restart")
	op.do("ask to shut down host-1", 10*time.Second, chromedp.Click(button("host", "host-1", "shutdown")))
	op.wait("the shutdown asks for confirmation", `document.querySelector('#confirm').open && document.querySelector('#confirm-title').textContent === 'Shut down host-1?'`, 10*time.Second)
	op.shot("c18-shutdown-confirm")
	op.do("cancel the shutdown", 10*time.Second, chromedp.Click(chromedp.ID("confirm-cancel")))
	noticeOK("host-1: shutdown cancelled")
	op.do("refresh the hosts", 10*time.Second, chromedp.Click(chromedp.ID("hosts-refresh")))
	settle()
	op.wait("host-1 still accepting", `document.querySelector('#hosts tr[data-host="host-1"]')?.dataset.state === 'accepting'`, 10*time.Second)

	// 12. The audit log lists the actions with their actor, newest first.
	op.do("show the audit log", 10*time.Second, chromedp.Click(chromedp.CSS(`#audit-form button[type="submit"]`)))
	settle()
	for _, action := range []string{"host.drain", "host.resume", "host.restart", "global.message", "ban.add", "ban.remove", "roomban.remove", "blockedwords.set", "defaults.set", "room.close"} {
		op.wait("the audit log lists "+action, fmt.Sprintf(`(() => { const tr = document.querySelector('#audit tr[data-action=%s]'); return tr && tr.children[1].textContent === 'admin'; })()`, js(action)), 10*time.Second)
	}
	if first := eval[string](op, `document.querySelector('#audit tr').dataset.action`); first != "host.restart" {
		t.Errorf("the audit log starts with %q, want the latest action, host.restart", first)
	}
	op.do("filter the audit log by host-1", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("audit-target"), "host-1"),
		chromedp.Click(chromedp.CSS(`#audit-form button[type="submit"]`)))
	settle()
	op.waitText("#audit-count", "for host-1", 10*time.Second)
	if others := eval[int](op, `[...document.querySelectorAll('#audit tr')].filter(tr => tr.children[3].textContent !== 'host-1').length`); others != 0 {
		t.Errorf("the audit log filtered by host-1 shows %d entries of other targets", others)
	}
	op.shot("c19-audit-log")

	// 13. Forget the key: the console hides and the tab holds no key.
	op.do("forget the key", 10*time.Second, chromedp.Click(chromedp.ID("key-forget")))
	op.wait("the key is forgotten", `sessionStorage.getItem('chatfleet.adminKey') === null && document.querySelector('#console').hidden`, 10*time.Second)
	op.shot("c20-key-forgotten")

	// 14. Last, as the stack stops with it: shut host-1 down for real (202).
	op.do("enter the admin key again", 10*time.Second, chromedp.SendKeys(chromedp.ID("admin-key"), testAdminAPIKey+"\r"))
	noticeOK("Connected to the admin API")
	op.do("shut down host-1", 10*time.Second, chromedp.Click(button("host", "host-1", "shutdown")))
	op.wait("the confirmation", `document.querySelector('#confirm').open`, 10*time.Second)
	op.do("confirm the shutdown", 10*time.Second, chromedp.Click(chromedp.ID("confirm-ok")))
	op.waitText("#notice", "host-1: shutdown answered 202", 10*time.Second)
	op.shot("c21-host-shutdown")
}

// axePath is axe-core's browser build, from `npm ci` in web/ (.ci/run
// does it; web/package.json pins the version).
const axePath = "../web/node_modules/axe-core/axe.min.js"

// axeSource reads axe-core, failing the test when it is missing: the
// accessibility checks are part of the browser tests, not an option.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatalf("axe-core is missing (%v): run `(cd web && npm ci --no-audit --no-fund)` as .ci/run does", err)
	}
	return string(b)
}

// axeViolation is what the test reports of an axe-core violation.
type axeViolation struct {
	ID, Impact, Help string
	Nodes            []string
}

// axe runs axe-core on the page as it is and fails the test on every
// violation of impact serious or critical, listing them.
func (tb *tab) axe(src, page string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, slack*20*time.Second)
	defer cancel()
	start := time.Now()
	defer tb.slow("axe on "+page, start)
	const run = `(window.axe ? Promise.resolve() : Promise.reject(new Error('axe not loaded')))
		.then(() => axe.run(document, {resultTypes: ['violations']}))
		.then(r => JSON.stringify(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
			.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))`
	out, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("if (!window.axe) {"+src+"\n}; true"))
	var res string
	if err == nil {
		res, err = chromedp.Run(ctx, chromedp.Evaluate[string](run, chromedp.EvalAwaitPromise))
	}
	if err != nil || !out {
		tb.t.Fatalf("%s: axe on %s: %v", tb.name, page, err)
	}
	var vs []axeViolation
	if err := json.Unmarshal([]byte(res), &vs); err != nil {
		tb.t.Fatalf("%s: axe on %s: %v: %s", tb.name, page, err, res)
	}
	for _, v := range vs {
		tb.t.Errorf("%s: axe on %s: %s (%s): %s, at %s", tb.name, page, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "; "))
	}
	if len(vs) > 0 {
		tb.shot("FAILED-axe-" + page)
	}
}

// viewport is a screen size the pages are checked at.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

// viewports: a laptop and a phone (390×844, an iPhone 12 to 15).
var viewports = []viewport{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}}

// size emulates vp in the tab.
func (tb *tab) size(vp viewport) {
	tb.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if vp.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	tb.do("emulate "+vp.name, 10*time.Second, chromedp.EmulateViewport(vp.width, vp.height, opts...))
}

// noOverflow fails the test when the page is wider than the viewport (a
// phone then scrolls sideways and clips what is at the right).
func (tb *tab) noOverflow(page string) {
	tb.t.Helper()
	if got := eval[string](tb, `document.documentElement.scrollWidth + ' ' + innerWidth`); func() bool {
		var sw, w int
		fmt.Sscan(got, &sw, &w)
		return sw > w
	}() {
		tb.t.Errorf("%s: %s overflows horizontally: scroll width and viewport width %s", tb.name, page, got)
	}
}

// inView is a JavaScript expression: the element of sel is shown and
// wholly inside the viewport.
func inView(sel string) string {
	return fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el || el.hidden) return false;
		const r = el.getBoundingClientRect(); return r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; })()`, js(sel))
}

// playlists serves HLS playlists the producer announces: /ok.m3u8 is one
// (with CORS, as a CDN's), anything else is 404.
func playlists(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.URL.Path != "/ok.m3u8" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		fmt.Fprint(w, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// startBrowser starts headless Chromium for a test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	chromium := findChromium(t)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		append(chromiumFlags, chromedp.ExecPath(chromium), chromedp.UserDataDir(t.TempDir()))...)
	t.Cleanup(cancel)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return browser
}

// TestBrowserLobbyLive checks the lobby and the go-live page as people
// use them, at a laptop's and a phone's size, with axe-core on every page
// (the operator console's too): the lobby fits the phone and shows rooms'
// titles and live state; a room is created with a title and the
// producer's name; a taken name and a lost network are said for people; a
// broken or relative stream URL is checked before going live; the viewer
// list marks a muted viewer; another device takes the room over with the
// producer link and closes it, the confirmation in view.
func TestBrowserLobbyLive(t *testing.T) {
	axeJS := axeSource(t)
	dir := artifacts(t)
	s := startStack(t)
	browser := startBrowser(t)
	hls := playlists(t)
	start := time.Now()
	base := s.URL("")
	for _, vp := range viewports {
		room := "jazz-" + vp.name
		title := "Friday jazz (" + vp.name + ")"
		owner := "Ann " + vp.name
		shot := func(tb *tab, what string) { tb.shot(what + "-" + vp.name) }

		// The lobby, then Go live: the create form asks for the name, a
		// title and the producer's display name.
		p := newTab(t, browser, "producer-"+vp.name, dir, true)
		p.size(vp)
		p.do("open the lobby", 20*time.Second, chromedp.Navigate(base+"/"))
		p.wait("the lobby lists rooms", `document.querySelector('#rooms-count').textContent !== ''`, 15*time.Second)
		p.noOverflow("the lobby")
		p.axe(axeJS, "lobby-"+vp.name)
		shot(p, "lobby")
		p.do("open the go-live page", 20*time.Second, chromedp.Navigate(base+"/live.html"))
		p.wait("the create form", `!!document.querySelector('#owner-name') && document.readyState === 'complete'`, 10*time.Second)
		p.axe(axeJS, "live-form-"+vp.name)
		p.do("create the room", 20*time.Second,
			chromedp.SendKeys(chromedp.ID("room-name"), room),
			chromedp.SendKeys(chromedp.ID("room-title-input"), title),
			chromedp.SendKeys(chromedp.ID("owner-name"), owner),
			chromedp.Click(chromedp.ID("create-button")))
		p.wait("the producer is connected", `document.body.dataset.conn === 'open'`, 20*time.Second)
		p.waitText("#room-title", title, 5*time.Second)
		if got := eval[string](p, `chatfleet.page.conn.you.role + ' ' + chatfleet.page.conn.you.name`); got != "producer "+owner {
			t.Errorf("%s: the producer joined as %q, want %q", vp.name, got, "producer "+owner)
		}
		p.noOverflow("the go-live page")
		p.axe(axeJS, "live-created-"+vp.name)
		shot(p, "live-created")

		// A stream that does not load is said, with the cause, before the
		// room is told; a relative address is made absolute. A good one goes live.
		p.do("announce a missing relative stream", 10*time.Second,
			chromedp.SendKeys(chromedp.ID("hls-url"), "/nope/index.m3u8"),
			chromedp.Click(chromedp.ID("go-live-button")))
		p.waitText("#stream-status", "answered 404", 10*time.Second)
		if got := eval[string](p, `document.querySelector('#hls-url').value + ' ' + document.querySelector('#live-badge').textContent`); got != base+"/nope/index.m3u8 offline" {
			t.Errorf("%s: after a missing stream the URL and badge are %q, want the absolute URL, offline", vp.name, got)
		}
		shot(p, "live-stream-404")
		p.do("announce a good stream", 10*time.Second,
			chromedp.SetValue(chromedp.ID("hls-url"), hls.URL+"/ok.m3u8"),
			chromedp.Click(chromedp.ID("go-live-button")))
		p.waitText("#live-badge", "live", 10*time.Second)

		// The room's name in another browser: made elsewhere, and taken (a
		// name that cannot be one is said so). Without network the create
		// says so for people.
		o := newTab(t, browser, "other-"+vp.name, dir, true)
		o.size(vp)
		o.do("open the go-live page for a bad name", 20*time.Second, chromedp.Navigate(base+"/live.html?room=bad.name"))
		o.waitText("#room-name-error", "cannot be a room name", 10*time.Second)
		o.do("open the go-live page for the room", 20*time.Second, chromedp.Navigate(base+"/live.html?room="+room))
		o.waitText("#notice", "was created on another device", 10*time.Second)
		o.offline(true)
		o.do("create while offline", 10*time.Second, chromedp.Click(chromedp.ID("create-button")))
		o.waitText("#notice", "Can't reach chatfleet right now", 10*time.Second)
		o.offline(false)
		o.do("create the taken name", 10*time.Second, chromedp.Click(chromedp.ID("create-button")))
		o.waitText("#room-name-error", "That name is taken: choose another", 10*time.Second)
		o.wait("the name field is marked invalid and focused", `document.activeElement.id === 'room-name' && document.activeElement.getAttribute('aria-invalid') === 'true'`, 5*time.Second)
		shot(o, "live-name-taken")

		// A viewer, muted from the viewer list: marked with the time left,
		// only Unmute offered; unmuted, only Mute.
		v := joinRoom(t, s, room, "", "viewer-"+vp.name)
		row := fmt.Sprintf(`#viewers li[data-user=%s]`, js(v.user))
		p.wait("the viewer is listed", `!!document.querySelector(`+js(row)+`)`, 10*time.Second)
		p.do("mute the viewer", 10*time.Second, chromedp.Click(chromedp.CSS(row+` button[aria-label^="Mute "]`)))
		p.waitText(row, "left", 10*time.Second) // "muted, 4:59 left"
		p.wait("only Unmute is offered", fmt.Sprintf(`(() => { const li = document.querySelector(%s);
			return !!li.querySelector('button[aria-label^="Unmute "]') && !li.querySelector('button[aria-label^="Mute "]'); })()`, js(row)), 5*time.Second)
		shot(p, "live-viewer-muted")
		p.do("unmute the viewer", 10*time.Second, chromedp.Click(chromedp.CSS(row+` button[aria-label^="Unmute "]`)))
		p.wait("only Mute is offered", fmt.Sprintf(`(() => { const li = document.querySelector(%s);
			return !li.dataset.muted && !!li.querySelector('button[aria-label^="Mute "]') && !li.querySelector('button[aria-label^="Unmute "]'); })()`, js(row)), 10*time.Second)

		// The lobby (in the other browser) shows the title, the producer's
		// name and the live state (the hosts report it every few seconds).
		o.do("open the lobby", 20*time.Second, chromedp.Navigate(base+"/"))
		o.wait("the lobby shows the room's title and producer, live", fmt.Sprintf(`(() => { const tr = document.querySelector('tr[data-room=%s]');
			return tr && tr.querySelector('.badge.live') && tr.querySelector('.room-title').textContent === %s &&
				tr.querySelector('.room-sub').textContent.includes('by ' + %s); })()`, js(room), js(title), js(owner)), 20*time.Second)
		o.noOverflow("the lobby with rooms")
		o.wait("the Watch buttons are in view", `[...document.querySelectorAll('#rooms td.watch a')].every(a => a.getBoundingClientRect().right <= innerWidth)`, 5*time.Second)
		shot(o, "lobby-rooms")

		// The producer's network goes: the page says it for people.
		p.offline(true)
		p.wait("the producer is told", `document.body.dataset.conn === 'reconnecting' && !document.querySelector('#notice').hidden`, 15*time.Second)
		p.wait("the notice says it for people", `(t => t.includes("You're offline") && !t.includes('(') && !/control API|failed to fetch/i.test(t))(document.querySelector('#notice').textContent)`, 10*time.Second)
		shot(p, "live-offline")
		p.offline(false)
		p.wait("the producer is back", `document.body.dataset.conn === 'open'`, 20*time.Second)

		// Another device takes the room over with the producer link, and closes it.
		link := eval[string](p, `document.querySelector('#device-link').href`)
		if !strings.Contains(link, "token=") || !strings.Contains(link, "room="+room) {
			t.Fatalf("%s: the producer link is %q", vp.name, link)
		}
		o.do("open the producer link", 20*time.Second, chromedp.Navigate(link))
		o.wait("the other device presents the room", `document.body.dataset.conn === 'open' && chatfleet.page.conn.you.role === 'producer'`, 20*time.Second)
		if loc := eval[string](o, `location.search`); strings.Contains(loc, "token") {
			t.Errorf("%s: the producer link's token stays in the address: %s", vp.name, loc)
		}
		p.wait("the first device is told", `document.body.dataset.ended === 'replaced'`, 10*time.Second)
		p.waitText("#notice", "on another device", 5*time.Second)
		shot(p, "live-replaced")
		o.do("close the room", 10*time.Second,
			chromedp.Click(chromedp.ID("close-room")),
			chromedp.WaitVisible(chromedp.ID("close-confirm")),
			chromedp.Click(chromedp.ID("close-confirm")))
		o.wait("the room is closed", `document.body.dataset.ended === 'closed'`, 10*time.Second)
		o.waitText("#close-done", "The room is closed", 5*time.Second)
		o.wait("the confirmation is in view and focused", inView("#close-done")+` && document.activeElement.id === 'close-done'`, 5*time.Second)
		shot(o, "live-closed")
	}

	// The operator console, before and after the admin key.
	for _, vp := range viewports {
		op := newTab(t, browser, "operator-"+vp.name, dir, true)
		op.size(vp)
		op.do("open the console", 20*time.Second, chromedp.Navigate(base+"/admin.html"))
		op.wait("the key form", `!!document.querySelector('#admin-key')`, 10*time.Second)
		op.axe(axeJS, "console-key-"+vp.name)
		op.do("enter the admin key", 10*time.Second,
			chromedp.SendKeys(chromedp.ID("admin-key"), testAdminAPIKey),
			chromedp.Click(chromedp.ID("key-use")))
		op.wait("two hosts listed", `document.querySelectorAll('#hosts tr').length === 2 && document.body.dataset.pending === '0'`, 10*time.Second)
		op.axe(axeJS, "console-"+vp.name)
		op.shot("console-" + vp.name)
	}
	t.Logf("lobby and go-live scenario took %v", time.Since(start).Round(time.Millisecond))
}

// TestAxeWatch runs axe-core on the watch page, at both sizes, live with
// a chat message: no serious or critical violation.
func TestAxeWatch(t *testing.T) {
	axeJS := axeSource(t)
	dir := artifacts(t)
	s := startStack(t)
	browser := startBrowser(t)
	const room = "axe-watch"
	var created struct{ Token, WSURL string }
	decodeData(t, "POST", s.URL("/api/v1/rooms/"+room), testAPIKey, `{"title":"Axe check","ownerName":"Ann"}`, http.StatusCreated, &created)
	prod := testutil.DialRoom(t, strings.TrimSuffix(created.WSURL, "/ws"), created.Token, -1)
	prod.Next(protocol.TypeWelcome, 5*time.Second)
	prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hello, axe"})
	prod.Next(protocol.TypeChat, 5*time.Second)
	for _, vp := range viewports {
		w := newTab(t, browser, "watch-"+vp.name, dir, true)
		w.size(vp)
		w.do("open the watch page", 20*time.Second, chromedp.Navigate(s.URL("/watch.html?room="+room)))
		w.wait("the viewer is connected", `document.body.dataset.conn === 'open'`, 20*time.Second)
		w.waitText("#chat-log", "hello, axe", 10*time.Second)
		w.waitText("#room-title", "Axe check", 10*time.Second) // the title and producer given at create
		w.waitText("#room-by", "by Ann", 10*time.Second)
		w.axe(axeJS, "watch-"+vp.name)
		w.shot("watch-" + vp.name)
	}
}
