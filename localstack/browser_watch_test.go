package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/chatfleet/chatfleet/internal/testutil"
	"github.com/chatfleet/chatfleet/protocol"
)

// emulate sets the tab's viewport to v: a phone (v.mobile) held upright,
// or a desktop window. (tab.size does the same as a step of its own.)
func (v viewport) emulate() chromedp.Action[chromedp.Void] {
	if v.mobile {
		return chromedp.EmulateViewport(v.width, v.height, chromedp.EmulatePortrait, chromedp.EmulateMobile)
	}
	return chromedp.EmulateViewport(v.width, v.height)
}

// watchLayout is where the watch page's parts are, as the browser lays
// them out.
type watchLayout struct {
	InputTop, InputBottom, SendRight  float64
	VideoBottom, VideoRight, VideoTop float64
	LogTop, LogLeft, LogHeight        float64
	ScrollX, ScrollY                  float64
	InnerW, InnerH, ScrollW           float64
	NameShown                         bool
}

const watchLayoutJS = `(() => {
	const r = (s) => document.querySelector(s).getBoundingClientRect();
	const input = r('#chat-input'), send = r('#chat-send'), video = r('.player'), log = r('#chat-log');
	const form = document.querySelector('#name-form');
	return {
		InputTop: input.top, InputBottom: input.bottom, SendRight: send.right,
		VideoTop: video.top, VideoBottom: video.bottom, VideoRight: video.right,
		LogTop: log.top, LogLeft: log.left, LogHeight: log.height,
		ScrollX: scrollX, ScrollY: scrollY, InnerW: innerWidth, InnerH: innerHeight,
		ScrollW: document.documentElement.scrollWidth,
		NameShown: form.checkVisibility(),
	};
})()`

// drain reads what the room sends a test client that does not look at it,
// so that the room never finds it too slow.
func drain(ws *testutil.WS) {
	go func() {
		for {
			if _, _, err := ws.Conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
}

// TestBrowserWatch drives the watch page in headless Chromium against the
// local stack, at a desktop (1280×800) and a phone (390×844) size at once:
// the layout (the chat input on screen without scrolling, the name in a
// menu), a stream that cannot be loaded (the cause, bounded retries, a new
// try when the stream is announced again), presence lines, links,
// mentions, the "more messages below" marker, refused sends (whitespace,
// slow mode, a mute with its countdown), a moderator's one-Tab-stop
// actions menu by keyboard, a kick said once, the producer gone past its
// grace (offline, last live), and links to rooms that do not exist. The
// producer and two more viewers are test clients of the room; each step
// leaves screenshots named watch-<size>-<step>.png.
func TestBrowserWatch(t *testing.T) {
	dir := artifacts(t)
	t.Setenv("ROOM_PRODUCER_GRACE", "1s") // the rooms inherit it through the stack
	s := startStack(t)
	start := time.Now()

	browser := startBrowser(t)

	// The room, its producer (a test client) and a stream that answers 404.
	const room = "watch-room"
	base := s.URL("")
	var created struct{ Token, WSURL string }
	decodeData(t, "POST", s.URL("/api/v1/rooms/"+room), testAPIKey, `{}`, http.StatusCreated, &created)
	roomBase := strings.TrimSuffix(created.WSURL, "/ws")
	prod := testutil.DialRoom(t, roomBase, created.Token, -1)
	prod.Next(protocol.TypeWelcome, 5*time.Second)
	drain(prod)
	stream := base + "/no-such-stream/index.m3u8"
	prod.Send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: stream})

	// Two viewers, one per size, each in a browser context of its own.
	viewers := make([]*tab, len(viewports))
	for i, vp := range viewports {
		v := newTab(t, browser, "viewer-"+vp.name, dir, true)
		v.do("set the viewport", 10*time.Second, vp.emulate())
		v.do("open the watch page", 20*time.Second, chromedp.Navigate(base+"/watch.html?room="+room+"&apiKey="+testAPIKey))
		viewers[i] = v
	}
	each := func(f func(v *tab, vp viewport)) {
		t.Helper()
		for i, vp := range viewports {
			f(viewers[i], vp)
		}
	}
	shot := func(v *tab, vp viewport, step string) {
		t.Helper()
		v.shot("watch-" + vp.name + "-" + step)
	}
	guests := map[string]struct{ id, name string }{}
	each(func(v *tab, vp viewport) {
		v.wait("connected", `document.body.dataset.conn === 'open'`, 20*time.Second)
		guests[vp.name] = struct{ id, name string }{
			eval[string](v, `chatfleet.page.conn.you.userId`), eval[string](v, `chatfleet.page.conn.you.name`),
		}
	})

	// 1. Layout: the player on top (phone) or beside the chat (desktop);
	// the chat input on screen without scrolling; the name in a menu.
	each(func(v *tab, vp viewport) {
		l := eval[watchLayout](v, watchLayoutJS)
		if l.InnerW != float64(vp.width) || l.InnerH != float64(vp.height) {
			t.Fatalf("%s: the viewport is %v×%v, want %d×%d", vp.name, l.InnerW, l.InnerH, vp.width, vp.height)
		}
		if l.ScrollY != 0 || l.InputTop < 0 || l.InputBottom > l.InnerH {
			t.Errorf("%s: the chat input spans y=%v..%v (page scrolled %v), want it within the %v px screen", vp.name, l.InputTop, l.InputBottom, l.ScrollY, l.InnerH)
		}
		if l.ScrollW > l.InnerW || l.SendRight > l.InnerW {
			t.Errorf("%s: the page is %v px wide (Send ends at %v), wider than the %v px screen", vp.name, l.ScrollW, l.SendRight, l.InnerW)
		}
		if vp.width < vp.height {
			if l.LogTop < l.VideoBottom || l.VideoTop > 200 {
				t.Errorf("%s: the player spans y=%v..%v and the chat starts at y=%v: want the player on top, the chat below", vp.name, l.VideoTop, l.VideoBottom, l.LogTop)
			}
		} else if l.LogLeft < l.VideoRight {
			t.Errorf("%s: the chat starts at x=%v, left of the player's right edge %v: want it beside the player", vp.name, l.LogLeft, l.VideoRight)
		}
		if l.LogHeight < 150 {
			t.Errorf("%s: the chat log is only %v px tall", vp.name, l.LogHeight)
		}
		if l.NameShown {
			t.Errorf("%s: the name form is shown outside its menu", vp.name)
		}
		// The log is a role="log" container holding a list: no list item
		// outside a list (axe's listitem rule).
		if !eval[bool](v, `document.querySelector('#chat-log').tagName === 'DIV' && document.querySelector('#chat-log').getAttribute('role') === 'log' && !document.querySelector('[role=log] > li') && [...document.querySelectorAll('#chat-log li')].every(li => li.parentElement.tagName === 'OL')`) {
			t.Errorf("%s: the chat log's markup puts list items outside a list", vp.name)
		}
		shot(v, vp, "chat")
		v.do("open the name menu", 10*time.Second, chromedp.Click(chromedp.CSS(`#me-menu summary`)))
		v.wait("the name form shows", `document.querySelector('#name-form').checkVisibility() && document.querySelector('#me-hint').textContent.includes('You are in the chat as')`, 5*time.Second)
		shot(v, vp, "name-menu")
		v.do("close the name menu", 10*time.Second, chromedp.Click(chromedp.CSS(`#me-menu summary`)))
		if vp.width > vp.height {
			return
		}
		// The phone turned to landscape: the chat beside the player, its
		// input still on screen.
		v.do("turn to landscape", 10*time.Second, chromedp.EmulateViewport(vp.height, vp.width, chromedp.EmulateLandscape, chromedp.EmulateMobile))
		v.wait("the landscape layout", `innerWidth === 844`, 5*time.Second)
		l = eval[watchLayout](v, watchLayoutJS)
		if l.LogLeft < l.VideoRight || l.InputBottom > l.InnerH || l.ScrollY != 0 || l.ScrollW > l.InnerW {
			t.Errorf("phone in landscape: %+v; want the chat beside the player and its input within the screen", l)
		}
		shot(v, vp, "landscape")
		v.do("turn back", 10*time.Second, vp.emulate())
		v.wait("the portrait layout", `innerWidth === 390`, 5*time.Second)
	})

	// 2. The stream answers 404: the player says so after a few tries, and
	// tries again when the stream is announced live again.
	each(func(v *tab, vp viewport) {
		v.waitText("#live-badge", "live", 10*time.Second)
		v.wait("the stream is unavailable, with its cause", `document.querySelector('#player-status').dataset.state === 'unavailable' && document.querySelector('#player-status').textContent.includes('Stream unavailable') && document.querySelector('#player-status small').textContent.includes('HTTP 404')`, 20*time.Second)
		shot(v, vp, "unavailable")
	})
	prod.Send(protocol.ClientMsg{Type: protocol.TypeStream, Live: true, HLSURL: stream})
	each(func(v *tab, vp viewport) {
		v.wait("the player tries again", `document.querySelector('#player-status').dataset.state !== 'unavailable'`, 5*time.Second)
	})

	// 3. Presence: two joins in one line; your own join is not shown.
	pest := joinRoom(t, s, room, "", "pest-1")
	drain(pest.ws)
	other := joinRoom(t, s, room, "", "pest-2")
	drain(other.ws)
	each(func(v *tab, vp viewport) {
		v.wait("one presence line for both joins", `(() => {
			const ps = [...document.querySelectorAll('#chat-log li.presence')];
			const last = ps[ps.length - 1];
			return last && last.textContent.includes('pest-1') && last.textContent.includes('pest-2 joined') && ps.filter(p => p.textContent.includes('pest-1')).length === 1;
		})()`, 10*time.Second)
		if eval[bool](v, fmt.Sprintf(`[...document.querySelectorAll('#chat-log li.presence')].some(p => p.textContent.includes(%s))`, js(guests[vp.name].name))) {
			t.Errorf("%s: a presence line shows the viewer's own join", vp.name)
		}
	})

	// 4. Links (http and https only, safe) and mentions of one's own name.
	pest.ws.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: `docs at https://example.com/docs?x=1, not javascript:alert(1) <b>bold</b>`})
	for _, vp := range viewports {
		pest.ws.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "hey @" + guests[vp.name].name + " welcome"})
	}
	each(func(v *tab, vp viewport) {
		v.wait("the link", `!!document.querySelector('#chat-log a[href="https://example.com/docs?x=1"]')`, 10*time.Second)
		got := eval[string](v, `(() => { const a = document.querySelector('#chat-log a[href="https://example.com/docs?x=1"]'); return a.target + '|' + a.rel + '|' + a.textContent; })()`)
		if got != "_blank|noopener noreferrer nofollow|https://example.com/docs?x=1" {
			t.Errorf("%s: the link is %q", vp.name, got)
		}
		if n := eval[int](v, `document.querySelectorAll('#chat-log a:not([href^="https://example.com/"]), #chat-log b').length`); n != 0 {
			t.Errorf("%s: %d other links or markup elements in the chat", vp.name, n)
		}
		v.wait("the mention is highlighted", fmt.Sprintf(`[...document.querySelectorAll('#chat-log li.mentioned mark.mention')].some(m => m.textContent === %s)`, js("@"+guests[vp.name].name)), 10*time.Second)
	})

	// 5. "More messages below" while scrolled up.
	for i := 1; i <= 40; i++ {
		prod.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: fmt.Sprintf("line %d", i)})
	}
	each(func(v *tab, vp viewport) {
		v.waitText("#chat-log", "line 40", 10*time.Second)
		v.wait("the log follows the latest message", `(() => { const l = document.querySelector('#chat-log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 40; })()`, 5*time.Second)
		if !eval[bool](v, `document.querySelector('.chat-more').hidden`) {
			t.Errorf("%s: the marker shows while the viewer is at the bottom", vp.name)
		}
		eval[int](v, `document.querySelector('#chat-log').scrollTop = 0`)
	})
	pest.ws.Send(protocol.ClientMsg{Type: protocol.TypeChat, Text: "said while you read back"})
	each(func(v *tab, vp viewport) {
		v.waitText("#chat-log", "said while you read back", 10*time.Second)
		v.wait("the marker shows over the chat", `(() => {
			const m = document.querySelector('.chat-more'), l = document.querySelector('#chat-log').getBoundingClientRect();
			if (m.hidden) return false;
			const r = m.getBoundingClientRect();
			return r.top >= l.top && r.bottom <= l.bottom && r.left >= l.left && r.right <= l.right;
		})()`, 5*time.Second)
		shot(v, vp, "more-below")
		v.do("follow the marker", 10*time.Second, chromedp.Click(chromedp.CSS(`.chat-more`)))
		v.wait("back at the latest message", `(() => { const l = document.querySelector('#chat-log'); return document.querySelector('.chat-more').hidden && l.scrollHeight - l.scrollTop - l.clientHeight < 40; })()`, 5*time.Second)
	})

	// 6. Refused sends: the input's limit, whitespace, slow mode.
	each(func(v *tab, vp viewport) {
		if n := eval[int](v, `document.querySelector('#chat-input').maxLength`); n != 500 {
			t.Errorf("%s: the input takes %d characters, want the room's 500", vp.name, n)
		}
		v.do("send only spaces", 10*time.Second, chromedp.SendKeys(chromedp.ID("chat-input"), "   \r"))
		v.wait("the form says why", `document.querySelector('#chat-feedback').textContent.includes('only spaces') && document.querySelector('#chat-input').getAttribute('aria-invalid') === 'true'`, 5*time.Second)
		eval[string](v, `document.querySelector('#chat-input').value = ''`)
	})
	prod.Send(protocol.ClientMsg{Type: protocol.TypeSlowMode, Seconds: 30})
	each(func(v *tab, vp viewport) {
		v.waitText("#chat-log", "Slow mode on: one message every 30 s", 10*time.Second)
		v.do("send under slow mode", 10*time.Second, chromedp.SendKeys(chromedp.ID("chat-input"), "first under slow mode "+vp.name+"\r"))
		v.wait("the Send button counts down", `/^Wait (2\d|30) s$/.test(document.querySelector('#chat-send').textContent) && document.querySelector('#chat-send').getAttribute('aria-disabled') === 'true'`, 10*time.Second)
		v.do("send again too early", 10*time.Second, chromedp.SendKeys(chromedp.ID("chat-input"), "too early\r"))
		v.wait("the form says when", `/next message in \d+ s/.test(document.querySelector('#chat-feedback').textContent)`, 5*time.Second)
		shot(v, vp, "slowmode")
	})
	prod.Send(protocol.ClientMsg{Type: protocol.TypeSlowMode, Seconds: 0})
	each(func(v *tab, vp viewport) {
		v.wait("the Send button is back", `document.querySelector('#chat-send').textContent === 'Send' && document.querySelector('#chat-send').getAttribute('aria-disabled') === 'false'`, 10*time.Second)
		eval[string](v, `document.querySelector('#chat-input').value = ''`)
	})

	// 7. A moderator (a personal link): one Tab stop per message, a menu
	// driven by keyboard; the mute it makes disables the viewer's input
	// with its countdown.
	var modTok struct{ Token, WSURL string }
	decodeData(t, "POST", s.URL("/api/v1/rooms/"+room+"/tokens"), testAPIKey, `{"role":"moderator","userId":"mod-mia","name":"Mia"}`, http.StatusCreated, &modTok)
	mod := newTab(t, browser, "moderator", dir, true)
	mod.do("set the viewport", 10*time.Second, viewports[0].emulate())
	mod.do("open the moderator link", 20*time.Second, chromedp.Navigate(base+"/watch.html?room="+room+"&token="+modTok.Token+"&ws="+modTok.WSURL))
	mod.wait("the moderator is connected", `document.body.dataset.conn === 'open'`, 20*time.Second)
	mod.waitText("#chat-log", "first under slow mode phone", 10*time.Second)
	// Each viewer's message is one Tab stop: its actions button (the
	// producer's cannot be moderated: none).
	stops := eval[struct{ Messages, WithOne, Most int }](mod, `(() => {
		const lis = [...document.querySelectorAll('#chat-log li.chat')].filter(li => !li.querySelector('.badge.role-producer'));
		const n = lis.map(li => [...li.querySelectorAll('button, input, select, [tabindex]')].filter(b => b.tabIndex >= 0).length);
		return { Messages: lis.length, WithOne: n.filter(x => x === 1).length, Most: Math.max(0, ...n) };
	})()`)
	if stops.Messages < 6 || stops.WithOne != stops.Messages || stops.Most != 1 {
		t.Errorf("the moderator's chat: %d messages, %d with one Tab stop, at most %d in one; want one each", stops.Messages, stops.WithOne, stops.Most)
	}
	for i, vp := range viewports {
		g := guests[vp.name]
		menuButton := fmt.Sprintf(`#chat-log li.chat[data-user=%s] button.msg-actions`, js(g.id))
		mod.do("focus the message's actions", 10*time.Second, chromedp.Focus(chromedp.CSS(menuButton)), chromedp.KeyEvent("\r"))
		mod.wait("the menu opens on its first item", `document.activeElement.getAttribute('role') === 'menuitem' && document.activeElement.dataset.action === 'delete'`, 5*time.Second)
		mod.do("arrow down", 5*time.Second, chromedp.KeyEvent(kb.ArrowDown))
		mod.wait("Mute has the focus", `document.activeElement.dataset.action === 'mute'`, 5*time.Second)
		if i == 0 {
			mod.do("Escape", 5*time.Second, chromedp.KeyEvent(kb.Escape))
			mod.wait("the menu closes, the focus back on its button", `!document.querySelector('.msg-menu') && document.activeElement.classList.contains('msg-actions') && document.activeElement.getAttribute('aria-expanded') === 'false'`, 5*time.Second)
			mod.do("open the menu again", 5*time.Second, chromedp.KeyEvent("\r"))
			mod.do("arrow down", 5*time.Second, chromedp.KeyEvent(kb.ArrowDown))
			mod.wait("Mute has the focus", `document.activeElement.dataset.action === 'mute'`, 5*time.Second)
			mod.shot("watch-desktop-menu")
		}
		mod.do("mute by keyboard", 5*time.Second, chromedp.KeyEvent("\r"))
		mod.waitText("#chat-log", g.name+" was muted by Mia for 5 min", 10*time.Second)
		v := viewers[i]
		v.wait("the muted input counts down", `document.querySelector('#chat-input').disabled && /^Muted: [45]:\d\d left$/.test(document.querySelector('#chat-input').placeholder) && document.querySelector('#chat-feedback').textContent.includes('You are muted for 5 min')`, 10*time.Second)
		shot(v, vp, "muted")
		prod.Send(protocol.ClientMsg{Type: protocol.TypeUnmute, UserID: g.id})
		v.wait("the input is back", `!document.querySelector('#chat-input').disabled && document.querySelector('#chat-input').placeholder === 'Say something…'`, 10*time.Second)
	}
	// The menu at the phone's size stays on screen.
	mod.do("phone size", 10*time.Second, viewports[1].emulate())
	mod.do("open a menu", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#chat-log li.chat[data-user=%s] button.msg-actions`, js(guests["phone"].id)))))
	mod.wait("the menu is on screen", `(() => { const m = document.querySelector('.msg-menu'); if (!m) return false; const r = m.getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth; })()`, 5*time.Second)
	mod.shot("watch-phone-menu")
	mod.do("Escape", 5*time.Second, chromedp.KeyEvent(kb.Escape))
	mod.do("desktop size", 10*time.Second, viewports[0].emulate())

	// 8. Kicked: said once, with a Rejoin button; back in, the viewer's own
	// leave and join are not chat lines.
	for i, vp := range viewports {
		g := guests[vp.name]
		mod.do("open the menu", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#chat-log li.chat[data-user=%s] button.msg-actions`, js(g.id)))))
		mod.do("kick", 10*time.Second, chromedp.Click(chromedp.CSS(`.msg-menu button[data-action="kick"]`)))
		v := viewers[i]
		v.wait("the viewer is told", `document.body.dataset.ended === 'kicked'`, 10*time.Second)
		v.waitText("#notice", "A moderator removed you from this room.", 5*time.Second)
		if text := eval[string](v, `document.querySelector('#notice').textContent`); strings.Count(text, "moderator") != 1 || strings.Contains(text, "kicked") {
			t.Errorf("%s: the kicked viewer reads %q", vp.name, text)
		}
		shot(v, vp, "kicked")
		mod.waitText("#chat-log", g.name+" was removed by Mia", 10*time.Second)
		v.do("rejoin", 10*time.Second, chromedp.Click(chromedp.CSS(`#notice button`)))
		v.wait("back in", `document.body.dataset.conn === 'open' && !document.body.dataset.ended`, 20*time.Second)
		v.waitText("#chat-log", "said while you read back", 10*time.Second) // the history
		if eval[bool](v, fmt.Sprintf(`[...document.querySelectorAll('#chat-log li.presence')].some(p => p.textContent.includes(%s))`, js(g.name))) {
			t.Errorf("%s: a presence line shows the viewer's own leave or join", vp.name)
		}
	}
	if text := eval[string](mod, `document.querySelector('#chat-log').textContent`); strings.Contains(text, "kicked by a moderator") {
		t.Errorf("the chat repeats the room's generic reason: %q", text)
	}

	// 9. The producer leaves: past its grace the room says offline, and the
	// page says when it last saw the stream live.
	prod.Conn.Close()
	each(func(v *tab, vp viewport) {
		v.wait("offline", `document.querySelector('#live-badge').textContent === 'offline' && document.querySelector('#player-status').textContent.includes('the producer left') && !document.querySelector('#last-live').hidden && document.querySelector('#last-live').textContent.startsWith('Last live at')`, 15*time.Second)
		v.waitText("#chat-log", "The stream went offline: the producer left", 5*time.Second)
		// The header grew a line ("Last live at"): the log still shows its latest line.
		v.wait("the latest line in view", `(() => { const l = document.querySelector('#chat-log'), last = l.querySelector('li:last-child'); return last.getBoundingClientRect().bottom <= l.getBoundingClientRect().bottom + 1; })()`, 5*time.Second)
		shot(v, vp, "offline")
	})

	// 10. Links to rooms that do not exist say so, and try nothing.
	each(func(v *tab, vp viewport) {
		v.do("open a link with a bad room name", 20*time.Second, chromedp.Navigate(base+"/watch.html?room=not%20a%20room"))
		v.wait("the page says it is no room name", `!document.querySelector('#room-missing').hidden && document.querySelector('#missing-text').textContent.includes('is not a room name') && document.body.dataset.ended === 'gone' && !document.body.dataset.conn`, 10*time.Second)
		shot(v, vp, "bad-name")
		v.do("open a link to no room", 20*time.Second, chromedp.Navigate(base+"/watch.html?room=no-such-room"))
		v.wait("the page says there is no such room", `!document.querySelector('#room-missing').hidden && document.querySelector('#missing-text').textContent.includes('There is no room called') && document.body.dataset.ended === 'gone'`, 10*time.Second)
		shot(v, vp, "missing")
	})
	t.Logf("watch scenario took %v", time.Since(start).Round(time.Millisecond))
}
