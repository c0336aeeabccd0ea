// The watch page: /watch.html?room=NAME[&transport=sse|ws][&token=T&ws=URL]
// A viewer gets a join token for this browser's guest identity from the
// tokens API, or uses the personal link a producer made (token and ws).

import { ApiError, createToken, getRoom, roomURLs } from './api.js';
import { guest, setGuestName } from './settings.js';
import { ROOM_NAME, RoomPage, parseTime } from './roompage.js';
import { moderationMessage } from './chat.js';
import { $, openSettings, setupSettings } from './ui.js';
import { applyStrings, common as C, watch as W } from './strings.js';

const q = new URLSearchParams(location.search);
const roomName = (q.get('room') || '').trim();
const transport = q.get('transport') || 'auto';
const linkToken = q.get('token') || '';
const linkWS = q.get('ws') || '';

function final(err, why) {
  err.final = why;
  return err;
}

// apiFailure turns an API error into a final one when retrying cannot help.
function apiFailure(e) {
  if (e instanceof ApiError) {
    if (e.status === 404) return final(e, 'gone');
    if (e.status === 403 && /ban/i.test(e.message)) return final(e, 'banned');
  }
  return e;
}

let creds = null;

// credentials returns the join token and the room's addresses, asking the
// API again when refresh is set or the token is about to expire.
async function credentials(refresh) {
  const expiring = creds && creds.expiresAt && creds.expiresAt - Date.now() < 60000;
  if (creds && !refresh && !expiring) return creds;
  try {
    if (linkToken && linkWS) {
      creds = { token: linkToken, ...roomURLs({ wsUrl: linkWS }), expiresAt: 0 };
      return creds;
    }
    const g = guest();
    const tok = linkToken ? { token: linkToken } : await createToken(roomName, { role: 'viewer', userId: g.userId, name: g.name, ttlSeconds: 3600 });
    // A fresh token's answer says where to connect: the control API chose
    // the endpoint (a viewer of a room with edges gets one of them). The
    // room's own address (its origin) serves when the answer names none.
    let urls = roomURLs(tok);
    if (!urls.wsUrl || refresh) {
      const room = await getRoom(roomName);
      if (['closed', 'failed'].includes(room.status)) throw final(new Error('status ' + room.status), 'gone');
      if (!urls.wsUrl) urls = roomURLs(room);
    }
    if (!tok.token || !urls.wsUrl) throw new Error(W.noToken);
    creds = { token: tok.token, ...urls, expiresAt: parseTime(tok.expiresAt) };
    return creds;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || (e.status === 403 && !/ban/i.test(e.message)))) {
      page.notice.show(W.apiRefused(e.message), { kind: 'error', action: { label: W.enterKey, run: openSettings } });
    }
    throw apiFailure(e);
  }
}

let page = null;

function pickRoom() {
  $('#pick-room').hidden = false;
  $('#pick-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('#pick-name').value.trim();
    if (name) location.search = '?room=' + encodeURIComponent(name);
  });
  $('#pick-name').focus();
}

// missing says that the room does not exist, instead of the room.
function missing(text) {
  $('#room').hidden = true;
  $('#missing-text').textContent = text;
  $('#room-missing').hidden = false;
  document.body.dataset.ended = 'gone';
}

function watch() {
  document.title = W.title(roomName);
  if (!ROOM_NAME.test(roomName)) {
    missing(W.badName(roomName));
    return;
  }
  $('#room').hidden = false;
  $('#room-title').textContent = roomName;
  const g = guest();
  $('#my-name').value = g.name;
  if (linkToken) $('#name-form').hidden = true; // the link's token carries the name

  // A moderator (a personal moderator link) gets each message's actions
  // menu: mute for 5 minutes, ban for good.
  const onModerate = (action, target) => {
    const msg = moderationMessage(action, target, { muteSeconds: 300 });
    if (msg) page.send(msg);
  };
  const rejoin = { label: C.rejoin, run: () => location.reload() };
  page = new RoomPage({ credentials, transport, onModerate, endActions: { kicked: rejoin, replaced: rejoin } });
  window.chatfleet = { page }; // for the console and the browser test
  page.addEventListener('welcome', (ev) => {
    const you = ev.detail.msg.you || {};
    $('#me-hint').textContent = W.youAre(you.name || you.userId, you.role);
  });
  page.addEventListener('ended', (ev) => {
    document.body.dataset.ended = ev.detail.why;
    if (ev.detail.why === 'gone') missing(W.noRoom(roomName));
  });
  page.addEventListener('state', (ev) => {
    document.body.dataset.conn = ev.detail.state;
    document.body.dataset.transport = ev.detail.transport;
  });
  $('#name-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setGuestName($('#my-name').value);
    location.reload(); // a new token carries the new name
  });
  page.start();
  // The room's title and producer, when the API says them (a personal link
  // works without an API key: then the name stays).
  getRoom(roomName).then((r) => {
    if (r.title) {
      $('#room-title').textContent = r.title;
      document.title = W.title(r.title);
    }
    if (r.ownerName) {
      $('#room-by').textContent = W.by(r.ownerName);
      $('#room-by').hidden = false;
    }
  }, () => {});
}

applyStrings();
setupSettings(() => page && page.conn.retryNow());
if (roomName) watch();
else pickRoom();
