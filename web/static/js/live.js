// The go-live page: create a room, announce the HLS stream, chat, see the
// viewers, moderate, invite, close. /live.html?room=NAME reopens a room this
// browser created (its producer token is kept in localStorage).

import { ApiError, createRoom, createToken, deleteRoom, getRoom, roomURLs } from './api.js';
import { randomId } from './settings.js';
import { RoomPage, parseTime } from './roompage.js';
import { moderationMessage, rank } from './chat.js';
import { $, h, copyText, Notice, openSettings, setupSettings } from './ui.js';

const STORE = 'chatfleet.producerRooms';
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

function apiError(e) {
  const action = e.status === 401 || (e.status === 403 && !/ban/i.test(e.message)) ? { label: 'Enter API key', run: openSettings } : null;
  notice.show(e.message, { kind: 'error', action });
}

async function create(ev) {
  ev.preventDefault();
  const name = $('#room-name').value.trim();
  if (!name) return;
  const button = $('#create-button');
  button.disabled = true;
  try {
    const d = await createRoom(name);
    if (!d.token) throw new Error('the API answered without a producer token');
    store(name, { token: d.token, ...roomURLs(d), expiresAt: parseTime(d.expiresAt) });
    history.replaceState(null, '', '/live.html?room=' + encodeURIComponent(name));
    openRoom(name);
  } catch (e) {
    if (e instanceof ApiError && e.status === 409 && stored()[name]) {
      openRoom(name);
      return;
    }
    apiError(e instanceof ApiError ? e : new ApiError(0, 'error', e.message));
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
  if (!c) throw final(new Error('this browser holds no producer token for the room'), 'gone');
  if (c.expiresAt && c.expiresAt < Date.now()) throw final(new Error('the producer token expired'), 'gone');
  if (refresh) {
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

function renderViewers(m) {
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
  $('#viewers-page').textContent = `Page ${viewersPage + 1} of ${pages}`;
  $('#viewers-prev').disabled = viewersPage === 0;
  $('#viewers-next').disabled = viewersPage + 1 >= pages;
  $('#viewers').replaceChildren(...users.map((u) => {
    const name = u.name || u.userId;
    const li = h('li', { dataset: { user: u.userId } },
      h('span', { class: 'name' }, name, u.userId === me.userId ? ' (you)' : ''),
      u.role !== 'viewer' ? h('span', { class: 'badge role-' + u.role }, u.role) : null);
    if (u.userId !== me.userId && rank(u.role) < rank(me.role)) {
      const t = { userId: u.userId, name };
      li.append(
        h('button', { type: 'button', class: 'small secondary', 'aria-label': 'Mute ' + name, onclick: () => moderate('mute', t) }, 'Mute'),
        h('button', { type: 'button', class: 'small secondary', 'aria-label': 'Unmute ' + name, onclick: () => moderate('unmute', t) }, 'Unmute'),
        h('button', { type: 'button', class: 'small secondary', 'aria-label': 'Kick ' + name, onclick: () => moderate('kick', t) }, 'Kick'),
        h('button', { type: 'button', class: 'small danger', 'aria-label': 'Ban ' + name, onclick: () => moderate('ban', t) }, 'Ban'));
    }
    return li;
  }));
}

function absolute(url) {
  try {
    return new URL(url, location.href).toString();
  } catch {
    return url;
  }
}

async function offerDemo() {
  try {
    const res = await fetch('/demo/index.m3u8', { method: 'HEAD', cache: 'no-store' });
    $('#demo-button').hidden = !res.ok;
  } catch {
    // no demo stream here
  }
}

function openRoom(name) {
  roomName = name;
  document.title = `${name} · Go live · chatfleet`;
  $('#create').hidden = true;
  $('#room').hidden = false;
  $('#room-title').textContent = name;
  const watch = location.origin + '/watch.html?room=' + encodeURIComponent(name);
  $('#watch-link').href = watch;
  $('#watch-link').textContent = watch;
  notice.clear();

  page = new RoomPage({ credentials, transport, onModerate: moderate });
  window.chatfleet = { page }; // for the console and the browser test
  page.addEventListener('welcome', (ev) => {
    const m = ev.detail.msg;
    if (m.you && m.you.role !== 'producer') page.chat.line(`You joined as ${m.you.role}, not as the producer.`, 'error');
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
    }
  });
  page.addEventListener('state', (ev) => {
    document.body.dataset.conn = ev.detail.state;
    document.body.dataset.transport = ev.detail.transport;
  });
  page.addEventListener('ended', (ev) => {
    const why = ev.detail.why;
    document.body.dataset.ended = why;
    $('#viewers').replaceChildren();
    $('#viewers-total').textContent = '';
    $('#viewers-page').textContent = '';
    // The room's controls do nothing any more.
    for (const el of document.querySelectorAll('#room button, #room input, #room select')) el.disabled = true;
    if (why === 'closed' || why === 'gone') {
      store(name, null);
      page.notice.show(why === 'closed' ? 'The room is closed.' : 'This room is gone.', {
        kind: 'error', alert: true, action: { label: 'Create another room', run: () => (location.href = '/live.html') },
      });
    } else if (why === 'replaced') {
      page.notice.show('This room was opened as producer in another tab or window.', {
        kind: 'error', alert: true, action: { label: 'Use this tab', run: () => location.reload() },
      });
    }
  });
  page.start();
  offerDemo();
}

function wire() {
  $('#create-form').addEventListener('submit', create);
  $('#stream-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const url = $('#hls-url').value.trim();
    if (!url) {
      $('#hls-url').focus();
      return;
    }
    send({ type: 'stream', live: true, hlsUrl: absolute(url) });
  });
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
    if (page && page.conn.connected) {
      send({ type: 'close', reason: 'the producer closed the room' });
      return;
    }
    try {
      await deleteRoom(roomName);
      store(roomName, null);
      notice.show('The room is closed.', { kind: 'ok' });
    } catch (e) {
      apiError(e);
    }
  });
  $('#copy-watch').addEventListener('click', (ev) => copyText($('#watch-link').href, ev.target));
  $('#copy-invite').addEventListener('click', (ev) => copyText($('#invite-link').href, ev.target));
  $('#invite-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const role = $('#invite-role').value;
    const display = $('#invite-name').value.trim() || (role === 'moderator' ? 'Moderator' : 'Guest');
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
      $('#invite-hint').textContent = `A personal ${role} link for ${display}` + (until ? `, valid until ${new Date(until).toLocaleString()}` : '') + '. Anyone with it joins as that person.';
      $('#invite-out').hidden = false;
    } catch (e) {
      apiError(e instanceof ApiError ? e : new ApiError(0, 'error', e.message));
    }
  });
}

wire();
setupSettings(() => page && page.conn.retryNow());
const wanted = (q.get('room') || '').trim();
if (wanted && stored()[wanted]) {
  openRoom(wanted);
} else {
  if (wanted) {
    $('#room-name').value = wanted;
    notice.show(`This browser holds no producer token for “${wanted}”. Create it (if the name is free) to go live.`);
  }
  showMyRooms();
}
