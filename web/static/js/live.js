// The go-live page: create a room, announce the HLS stream, chat, see the
// viewers, moderate, invite, close. /live.html?room=NAME reopens a room this
// browser created (its producer token is kept in localStorage);
// /live.html?room=NAME&token=…&ws=… (the "Open on another device" link)
// stores the token first, so that another device presents the room.

import { ApiError, createRoom, createToken, deleteRoom, getRoom, roomURLs } from './api.js';
import { randomId } from './settings.js';
import { RoomPage, parseTime } from './roompage.js';
import { moderationMessage, rank } from './chat.js';
import { $, h, copyText, Notice, openSettings, setupSettings } from './ui.js';
import { api as apiText, applyStrings, live as text } from './strings.js';

const STORE = 'chatfleet.producerRooms';
const NAME_STORE = 'chatfleet.producerName'; // the display name last used to create a room
const STREAM_TIMEOUT = 8000; // ms the stream check waits for the playlist
const PAGE_SIZE = 20;
const q = new URLSearchParams(location.search);
const transport = q.get('transport') || 'auto';
const notice = new Notice($('#notice'));

function stored() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || '{}') || {};
  } catch {
    return {};
  }
}

function store(name, v) {
  const all = stored();
  if (v) all[name] = v;
  else delete all[name];
  localStorage.setItem(STORE, JSON.stringify(all));
}

function showMyRooms() {
  const all = stored();
  const names = Object.keys(all).filter((n) => !all[n].expiresAt || all[n].expiresAt > Date.now());
  $('#my-rooms').hidden = names.length === 0;
  $('#my-rooms-list').replaceChildren(...names.map((n) =>
    h('li', {}, h('a', { href: '/live.html?room=' + encodeURIComponent(n) }, n))));
}

// humanError says an API failure for people: the network, the key, or
// the API's own message (which names the field of a refused form).
function humanError(e) {
  if (!(e instanceof ApiError) || e.status === 0) return apiText.unreachable;
  if (e.status === 401) return apiText.needKey;
  if (e.status === 403 && e.code !== 'forbidden') return apiText.wrongKey;
  if (e.status >= 500) return apiText.failed(e.status);
  return e.message.charAt(0).toUpperCase() + e.message.slice(1) + (/[.!?]$/.test(e.message) ? '' : '.');
}

function apiError(e) {
  const key = e.status === 401 || (e.status === 403 && e.code !== 'forbidden');
  notice.show(humanError(e), { kind: 'error', action: key ? { label: apiText.enterKey, run: openSettings } : null });
}

// nameError shows a problem with the room name under its field.
function nameError(msg) {
  const el = $('#room-name-error');
  el.textContent = msg;
  el.hidden = !msg;
  $('#room-name').setAttribute('aria-invalid', msg ? 'true' : 'false');
}

async function create(ev) {
  ev.preventDefault();
  const name = $('#room-name').value.trim();
  if (!name) return;
  const title = $('#room-title-input').value.trim();
  const ownerName = $('#owner-name').value.trim();
  const button = $('#create-button');
  button.disabled = true;
  nameError('');
  notice.clear();
  try {
    const d = await createRoom(name, { title, ownerName });
    if (!d.token) throw new Error(text.noProducerToken);
    if (ownerName) localStorage.setItem(NAME_STORE, ownerName);
    else localStorage.removeItem(NAME_STORE);
    store(name, { token: d.token, ...roomURLs(d), expiresAt: parseTime(d.expiresAt), title });
    history.replaceState(null, '', '/live.html?room=' + encodeURIComponent(name));
    openRoom(name);
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      if (stored()[name]) {
        openRoom(name);
        return;
      }
      nameError(text.nameTaken);
      $('#room-name').focus();
      return;
    }
    if (e instanceof ApiError) apiError(e);
    else notice.show(e.message, { kind: 'error' });
  } finally {
    button.disabled = false;
  }
}

let page = null;
let roomName = '';
let viewersPage = 0;
let viewersTimer = null;

function final(err, why) {
  err.final = why;
  return err;
}

async function credentials(refresh) {
  const c = stored()[roomName];
  if (!c) throw final(new Error(text.noToken(roomName)), 'gone');
  if (c.expiresAt && c.expiresAt < Date.now()) throw final(new Error(text.tokenExpired), 'gone');
  if (refresh || !c.wsUrl) {
    try {
      const room = await getRoom(roomName);
      if (['closed', 'failed'].includes(room.status)) throw final(new Error('status ' + room.status), 'gone');
      const urls = roomURLs(room);
      if (urls.wsUrl) Object.assign(c, urls);
      store(roomName, c);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) throw final(e, 'gone');
      if (e.final) throw e;
      // The API is unreachable: try the address we have.
    }
  }
  return c;
}

function send(msg) {
  return page && page.send(msg);
}

// moderate sends a moderation message for the chat's and the viewer
// list's buttons, with the moderation panel's settings.
function moderate(action, target) {
  const msg = moderationMessage(action, target, {
    reason: $('#mod-reason').value.trim(),
    muteSeconds: Number($('#mute-seconds').value),
    banMinutes: Number($('#ban-minutes').value),
  });
  if (msg) send(msg);
}

function requestViewers() {
  clearTimeout(viewersTimer);
  viewersTimer = null;
  if (page && page.conn.connected) send({ type: 'viewers', page: viewersPage, pageSize: PAGE_SIZE });
}

// soonViewers asks for the list after presence changes, at most a few
// times a second.
function soonViewers() {
  if (!viewersTimer) viewersTimer = setTimeout(requestViewers, 300);
}

// mutes holds what the room said of mutes: userId → until (ms; 0 = until
// unmuted). The viewers message does not carry them, so the page keeps
// them from the muted and unmuted events (live and replayed).
const mutes = new Map();
let lastViewers = null;
let muteTimer = null;

function trackMute(m) {
  if (m.type === 'muted') mutes.set(m.userId, m.until || (m.seconds ? (m.ts || Date.now()) + m.seconds * 1000 : 0));
  else if (m.type === 'unmuted') mutes.delete(m.userId);
  else return;
  if (lastViewers) renderViewers(lastViewers);
}

// muteLeft returns the ms left of userId's mute: -1 when not muted,
// Infinity when until unmuted.
function muteLeft(userId) {
  if (!mutes.has(userId)) return -1;
  const until = mutes.get(userId);
  if (!until) return Infinity;
  const left = until - Date.now();
  if (left <= 0) {
    mutes.delete(userId);
    return -1;
  }
  return left;
}

function renderViewers(m) {
  lastViewers = m;
  const me = page.conn.you || {};
  const users = m.users || [];
  const total = m.total || 0;
  const pages = Math.max(1, Math.ceil(total / (m.pageSize || PAGE_SIZE)));
  if (viewersPage >= pages && viewersPage > 0) {
    viewersPage = pages - 1;
    requestViewers();
    return;
  }
  $('#viewers-total').textContent = `(${total})`;
  $('#viewers-page').textContent = text.page(viewersPage + 1, pages);
  $('#viewers-prev').disabled = viewersPage === 0;
  $('#viewers-next').disabled = viewersPage + 1 >= pages;
  let counting = false;
  const button = (action, label, name, t, cls = 'secondary') =>
    h('button', { type: 'button', class: 'small ' + cls, 'aria-label': text.actionLabel(label, name), onclick: () => moderate(action, t) }, label);
  $('#viewers').replaceChildren(...users.map((u) => {
    const name = u.name || u.userId;
    const left = muteLeft(u.userId);
    if (left > 0 && left !== Infinity) counting = true;
    const li = h('li', { dataset: left >= 0 ? { user: u.userId, muted: 'true' } : { user: u.userId } },
      h('span', { class: 'name' }, name, u.userId === me.userId ? text.you : ''),
      u.role !== 'viewer' ? h('span', { class: 'badge role-' + u.role }, text.role(u.role)) : null,
      left >= 0 ? h('span', { class: 'badge muted' }, left === Infinity ? text.muted : text.mutedFor(left)) : null);
    if (u.userId !== me.userId && rank(u.role) < rank(me.role)) {
      const t = { userId: u.userId, name };
      li.append(
        left >= 0 ? button('unmute', text.unmute, name, t) : button('mute', text.mute, name, t),
        button('kick', text.kick, name, t),
        button('ban', text.ban, name, t, 'danger'));
    }
    return li;
  }));
  // Count the mutes down while the list shows one that ends.
  clearTimeout(muteTimer);
  if (counting) muteTimer = setTimeout(() => lastViewers && renderViewers(lastViewers), 1000);
}

function absolute(url) {
  try {
    return new URL(url, location.href).toString();
  } catch {
    return '';
  }
}

// checkStream fetches the playlist before the room is told it is live,
// so that the producer learns why a stream fails (HTTP status, timeout,
// unreachable, not a playlist) rather than the viewers. It returns ''
// when the stream loads, else what to tell the producer.
async function checkStream(url) {
  let res;
  try {
    res = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(STREAM_TIMEOUT) });
  } catch (e) {
    return e && e.name === 'TimeoutError' ? text.streamTimeout(STREAM_TIMEOUT / 1000) : text.streamNetwork;
  }
  if (!res.ok) return text.streamHttp(res.status, res.statusText);
  const body = await res.text().catch(() => '');
  return body.trimStart().startsWith('#EXTM3U') ? '' : text.streamNotHls;
}

// streamStatus says how the stream check went, next to the stream form.
function streamStatus(msg, kind = '', action = null) {
  const el = $('#stream-status');
  el.replaceChildren(...(msg ? [msg] : []));
  el.className = 'stream-status' + (kind ? ' ' + kind : '');
  if (action) el.append(' ', h('button', { type: 'button', class: 'small secondary', onclick: action.run }, action.label));
}

async function goLive(ev) {
  ev.preventDefault();
  const input = $('#hls-url');
  const raw = input.value.trim();
  if (!raw) {
    input.focus();
    return;
  }
  const url = absolute(raw);
  if (!/^https?:/.test(url)) {
    streamStatus(text.streamBadUrl, 'error');
    input.focus();
    return;
  }
  input.value = url; // relative addresses are shown as what viewers get
  const button = $('#go-live-button');
  button.disabled = true;
  streamStatus(text.checking);
  const problem = await checkStream(url);
  button.disabled = false;
  const announce = () => {
    if (send({ type: 'stream', live: true, hlsUrl: url })) streamStatus(text.streamLive, 'ok');
  };
  if (problem) {
    streamStatus(problem, 'error', { label: text.goLiveAnyway, run: announce });
    return;
  }
  announce();
}

async function offerDemo() {
  try {
    const res = await fetch('/demo/index.m3u8', { method: 'HEAD', cache: 'no-store' });
    $('#demo-button').hidden = !res.ok;
  } catch {
    // no demo stream here
  }
}

// deviceLink is the producer link of the room: this page with the
// producer token and the room's address, for presenting from another
// device. Anyone who has it is the producer, so it is shown with a warning.
function deviceLink(name) {
  const c = stored()[name] || {};
  const link = new URL('/live.html', location.origin);
  link.searchParams.set('room', name);
  link.searchParams.set('token', c.token || '');
  if (c.wsUrl) link.searchParams.set('ws', c.wsUrl);
  return link.toString();
}

// tokenExpiry reads a join token's expiry (its JWT exp claim), 0 if unknown.
function tokenExpiry(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(b64)).exp;
    return Number.isFinite(exp) ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

// showTitle puts the room's title (or its name) in the heading.
function showTitle(name, title) {
  $('#room-title').textContent = title || name;
  $('#room-name-shown').textContent = title ? name : '';
  document.title = text.pageTitle(title || name);
}

let closing = false; // this page asked the room to close

function openRoom(name) {
  roomName = name;
  const mine = stored()[name] || {};
  showTitle(name, mine.title);
  if (mine.title === undefined) {
    getRoom(name).then((r) => r.title && showTitle(name, r.title)).catch(() => {});
  }
  $('#create').hidden = true;
  $('#room').hidden = false;
  const watch = location.origin + '/watch.html?room=' + encodeURIComponent(name);
  $('#watch-link').href = watch;
  $('#watch-link').textContent = watch;
  const device = deviceLink(name);
  $('#device-link').href = device;
  $('#device-link').textContent = device;
  $('#device-hint').textContent = text.deviceHint;
  notice.clear();

  page = new RoomPage({ credentials, transport, onModerate: moderate });
  window.chatfleet = { page }; // for the console and the browser test
  page.addEventListener('welcome', (ev) => {
    const m = ev.detail.msg;
    if (m.you && m.you.role !== 'producer') page.chat.line(text.notProducer(m.you.role), 'error');
    if (m.stream && m.stream.hlsUrl && !$('#hls-url').value) $('#hls-url').value = m.stream.hlsUrl;
    $('#slow-seconds').value = String(m.slowMode || 0);
    requestViewers();
  });
  page.addEventListener('message', (ev) => {
    const m = ev.detail;
    switch (m.type) {
      case 'viewers':
        renderViewers(m);
        break;
      case 'muted':
      case 'unmuted':
        trackMute(m);
        break;
      case 'join':
      case 'leave':
      case 'kicked':
      case 'banned':
      case 'count':
        if (!m.replayed) soonViewers();
        break;
      case 'slowmode':
        if (!m.replayed) $('#slow-seconds').value = String(m.seconds || 0);
        break;
      case 'stream':
        if (!m.replayed && !m.live) streamStatus(text.streamOffline);
        break;
    }
  });
  page.addEventListener('state', (ev) => {
    const d = ev.detail;
    document.body.dataset.conn = d.state;
    document.body.dataset.transport = d.transport;
    // Say a lost connection for people (the shared notice names the
    // technical reason).
    if (d.state === 'reconnecting' && d.delay > 0) {
      const secs = Math.max(1, Math.round(d.delay / 1000));
      page.notice.show(navigator.onLine === false ? text.offline : text.retrying(secs), {
        kind: 'error', action: { label: text.retryNow, run: () => page.conn.retryNow() },
      });
    }
  });
  page.addEventListener('ended', (ev) => {
    const why = ev.detail.why;
    document.body.dataset.ended = why;
    $('#viewers').replaceChildren();
    $('#viewers-total').textContent = '';
    $('#viewers-page').textContent = '';
    streamStatus('');
    // The room's controls do nothing any more.
    for (const el of document.querySelectorAll('#room button, #room input, #room select')) el.disabled = true;
    const another = { label: text.createAnother, run: () => (location.href = '/live.html') };
    if (why === 'closed' && closing) {
      // Say it where the producer is looking: by the Close button.
      store(name, null);
      page.notice.clear();
      closeDone(text.closed);
    } else if (why === 'closed' || why === 'gone') {
      store(name, null);
      const reason = ev.detail.reason || '';
      const mine = reason === text.noToken(name) || reason === text.tokenExpired;
      page.notice.show(why === 'closed' ? text.closed : mine ? reason : text.gone, { kind: 'error', alert: true, action: another });
    } else if (why === 'replaced') {
      page.notice.show(text.replaced, { kind: 'error', alert: true, action: { label: text.useHere, run: () => location.reload() } });
    }
  });
  page.start();
  offerDemo();
}

// closeDone shows the close's confirmation next to the Close button, in
// view, with the focus on it.
function closeDone(msg) {
  const el = $('#close-done');
  el.replaceChildren(h('span', {}, msg), ' ', h('a', { href: '/live.html', class: 'button small' }, text.createAnother));
  el.hidden = false;
  el.scrollIntoView({ block: 'center' });
  el.focus();
}

function wire() {
  $('#create-form').addEventListener('submit', create);
  $('#stream-form').addEventListener('submit', goLive);
  $('#go-offline-button').addEventListener('click', () => send({ type: 'stream', live: false }));
  $('#demo-button').addEventListener('click', () => {
    $('#hls-url').value = location.origin + '/demo/index.m3u8';
    $('#stream-form').requestSubmit();
  });
  $('#slow-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    send({ type: 'slowmode', seconds: Math.max(0, Math.min(3600, Number($('#slow-seconds').value) || 0)) });
  });
  $('#viewers-prev').addEventListener('click', () => {
    viewersPage = Math.max(0, viewersPage - 1);
    requestViewers();
  });
  $('#viewers-next').addEventListener('click', () => {
    viewersPage++;
    requestViewers();
  });
  const confirmRow = (on) => {
    $('#close-room').hidden = on;
    $('#close-confirm').hidden = !on;
    $('#close-cancel').hidden = !on;
    (on ? $('#close-cancel') : $('#close-room')).focus();
  };
  $('#close-room').addEventListener('click', () => confirmRow(true));
  $('#close-cancel').addEventListener('click', () => confirmRow(false));
  $('#close-confirm').addEventListener('click', async () => {
    confirmRow(false);
    closing = true;
    if (page && page.conn.connected) {
      send({ type: 'close', reason: text.closeReason });
      return;
    }
    try {
      await deleteRoom(roomName);
      store(roomName, null);
      if (page) page.conn.stop();
      closeDone(text.closed);
    } catch (e) {
      closing = false;
      apiError(e);
    }
  });
  $('#copy-device').addEventListener('click', (ev) => copyText($('#device-link').href, ev.target));
  $('#copy-watch').addEventListener('click', (ev) => copyText($('#watch-link').href, ev.target));
  $('#copy-invite').addEventListener('click', (ev) => copyText($('#invite-link').href, ev.target));
  $('#invite-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const role = $('#invite-role').value;
    const display = $('#invite-name').value.trim() || (role === 'moderator' ? text.defaultModerator : text.defaultGuest);
    try {
      const t = await createToken(roomName, { role, userId: 'invite-' + randomId(6), name: display, ttlSeconds: 86400 });
      const ws = roomURLs(t).wsUrl || (stored()[roomName] || {}).wsUrl || '';
      const link = new URL('/watch.html', location.origin);
      link.searchParams.set('room', roomName);
      link.searchParams.set('token', t.token);
      if (ws) link.searchParams.set('ws', ws);
      $('#invite-link').href = link.toString();
      $('#invite-link').textContent = link.toString();
      const until = parseTime(t.expiresAt);
      $('#invite-hint').textContent = text.invite(role, display, until ? new Date(until).toLocaleString() : '');
      $('#invite-out').hidden = false;
    } catch (e) {
      apiError(e instanceof ApiError ? e : new ApiError(0, 'error', e.message));
    }
  });
}

// adopt stores the producer token of an "Open on another device" link
// and takes it out of the address bar (and so out of the history).
function adopt(name) {
  const token = q.get('token');
  if (!name || !token) return;
  const ws = q.get('ws') || '';
  store(name, { token, ...(ws ? roomURLs({ wsUrl: ws }) : {}), expiresAt: tokenExpiry(token) });
  history.replaceState(null, '', '/live.html?room=' + encodeURIComponent(name));
}

// explain says why a room named in the address cannot be opened here:
// free (create it), not a room name, or made elsewhere (use its producer
// link).
async function explain(name) {
  $('#room-name').value = name;
  try {
    const r = await getRoom(name);
    if (['closed', 'failed'].includes(r.status)) throw new ApiError(404, 'not_found', '');
    notice.show(text.noToken(name), { kind: 'error' });
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) notice.show(text.freeName(name));
    else if (e instanceof ApiError && e.status === 400) nameError(text.badName(name));
    else notice.show(text.noToken(name), { kind: 'error' });
  }
}

applyStrings();
wire();
setupSettings(() => page && page.conn.retryNow());
$('#owner-name').value = localStorage.getItem(NAME_STORE) || '';
const wanted = (q.get('room') || '').trim();
adopt(wanted);
if (wanted && stored()[wanted]) {
  openRoom(wanted);
} else {
  if (wanted) explain(wanted);
  showMyRooms();
}
