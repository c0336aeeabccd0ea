// The operator console (/admin.html): the fleet through the admin API
// (/admin/v1/…). The admin key the operator types is kept in this tab's
// sessionStorage only (never the lasting local storage, never the address) and sent as
// X-API-Key. Everything the API returns is set as text, never as HTML.

import { request, listRooms, roomStatus, roomViewers } from './api.js';
import { $, h, Notice } from './ui.js';
import { applyStrings, console as text } from './strings.js';

const KEY_STORAGE = 'chatfleet.adminKey';
const BANS_PAGE = 100;

const notice = new Notice(typeof document === 'undefined' ? null : $('#notice')); // no document: node's unit tests
const enc = encodeURIComponent;

function adminKey() {
  return sessionStorage.getItem(KEY_STORAGE) || '';
}

// admin calls the admin API and returns {status, data}; errors go to the
// notice (the envelope's message) unless quiet, and are rethrown.
async function admin(method, path, body, quiet = false) {
  try {
    const { status, env } = await request(method, '/admin/v1' + path, body, adminKey());
    return { status, data: env.data };
  } catch (e) {
    let msg = e.message;
    if (e.status === 401 || e.status === 403) msg = text.keyRefused(e.status, msg);
    if (!quiet) notice.show(text.callFailed(`${method} /admin/v1${path}`, msg), { kind: 'error', alert: true });
    throw e;
  }
}

// pending counts the actions under way, in body[data-pending] (the
// browser test waits for 0 before its next step).
let pending = 0;
function setPending(d) {
  pending += d;
  document.body.dataset.pending = String(pending);
}

// run runs an action and ignores the error admin rethrows: the notice
// shows it.
async function run(f) {
  setPending(1);
  try {
    await f();
  } catch (e) {
    if (!(e && 'status' in e)) {
      notice.show(String(e && e.message ? e.message : e), { kind: 'error', alert: true });
    }
  } finally {
    setPending(-1);
  }
}

function ok(text) {
  notice.show(text, { kind: 'ok' });
}

// failures describes an answer's failed and down hosts, or ''.
export function failures(d) {
  const parts = [];
  for (const f of (d && d.failed) || []) parts.push(text.hostFailed(f.hostId, f.error));
  const down = (d && d.down) || [];
  if (down.length) parts.push(text.hostsDown(down));
  return parts.length ? text.notTold(parts) : '';
}

// parseWords splits the editor's text into words (lines, spaces, commas).
export function parseWords(text) {
  return String(text).split(/[\s,]+/).filter((w) => w !== '');
}

function fmt(v) {
  if (v === null || v === undefined) return text.none;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// kv fills a <dl> with an object's fields.
function kv(dl, obj) {
  const items = [];
  for (const [k, v] of Object.entries(obj || {})) items.push(h('dt', {}, k), h('dd', {}, fmt(v)));
  dl.replaceChildren(...items);
}

// replaceRows replaces a table body's rows and keeps the keyboard focus on
// the same button (row key and data-action) when it was in the table.
function replaceRows(tbody, key, rows) {
  const a = document.activeElement;
  const tr = a && tbody.contains(a) ? a.closest('tr') : null;
  const was = tr ? [tr.dataset[key], a.dataset.action] : null;
  tbody.replaceChildren(...rows);
  if (!was) return;
  const again = rows.find((r) => r.dataset[key] === was[0]);
  const b = again && again.querySelector(`button[data-action="${was[1]}"]`);
  if (b && !b.disabled) b.focus();
  else if (again) again.querySelector('button:not([disabled])')?.focus();
}

function cpu(v) {
  return Number.isFinite(v) ? text.percent((v * 100).toFixed(1)) : text.none;
}

function when(s) {
  if (!s) return text.none;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString();
}

// The confirmation dialog: resolves to {ok, reason}.
function confirmAction({ title, text, okLabel, reason = false }) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  $('#confirm-reason-field').hidden = !reason;
  $('#confirm-reason').value = '';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve({ ok: dlg.returnValue === 'ok', reason: $('#confirm-reason').value.trim() }), { once: true });
    dlg.showModal();
    (reason ? $('#confirm-reason') : $('#confirm-cancel')).focus();
  });
}

// Hosts.

function hostRow(host) {
  const load = host.load || {};
  const id = host.id;
  const act = (action, label, cls, disabled) =>
    h('button', { type: 'button', class: 'small ' + cls, 'aria-label': text.actionOn(label, id), dataset: { action }, disabled, onclick: () => run(() => hostAction(id, action)) }, label);
  return h('tr', { dataset: { host: id, state: host.state || '' } },
    h('th', { scope: 'row' }, id),
    h('td', {}, h('span', { class: 'badge state-' + (host.state || 'unknown') }, host.state || text.unknownState)),
    h('td', { class: 'num' }, fmt(load.rooms)),
    h('td', { class: 'num' }, fmt(load.conns)),
    h('td', { class: 'num' }, cpu(load.cpu)),
    h('td', {}, when(host.lastSeen)),
    h('td', { class: 'actions' },
      h('button', { type: 'button', class: 'small secondary', 'aria-label': text.statsOf(id), dataset: { action: 'stats' }, onclick: () => run(() => hostStats(id)) }, text.stats),
      act('drain', text.drain, 'secondary', host.state === 'draining'),
      act('resume', text.resume, 'secondary', host.state === 'accepting'),
      act('restart', text.restart, 'secondary'),
      h('button', { type: 'button', class: 'small danger', 'aria-label': text.shutDownHost(id), dataset: { action: 'shutdown' }, onclick: () => run(() => shutdown(id)) }, text.shutDown)));
}

async function loadHosts(quiet = false) {
  const { data } = await admin('GET', '/hosts', undefined, quiet);
  const hosts = (data && data.hosts) || [];
  replaceRows($('#hosts'), 'host', hosts.map(hostRow));
  $('#hosts-empty').hidden = hosts.length > 0;
  $('#hosts-table').hidden = hosts.length === 0;
}

async function hostAction(id, action) {
  const { status, data } = await admin('POST', `/hosts/${enc(id)}/${action}`);
  const r = (data && data.result) || {};
  const said = text.hostAnswered(id, action, status, r.state, r.message);
  ok(said);
  // The action's answer stays shown if the list cannot be read just now
  // (a host shutting down may take the local stack with it).
  try {
    await loadHosts(true);
  } catch (e) {
    ok(text.hostsNotRefreshed(said, e.message));
  }
}

async function hostStats(id) {
  const { data } = await admin('GET', `/hosts/${enc(id)}/stats`);
  $('#host-stats-title').textContent = text.statsOf(id);
  kv($('#host-stats-list'), data);
  $('#host-stats').hidden = false;
}

async function shutdown(id) {
  const c = await confirmAction({
    title: text.shutDownTitle(id),
    text: text.shutDownText,
    okLabel: text.shutDownHost(id),
  });
  if (!c.ok) {
    ok(text.shutDownCancelled(id));
    return;
  }
  await hostAction(id, 'shutdown');
}

// Rooms. The listing is the room API's (with the room API key the page
// was given, /config.js or the lobby's settings); without it the operator
// inspects rooms by name.

function roomRow(r) {
  const status = roomStatus(r);
  return h('tr', { dataset: { room: r.name } },
    h('th', { scope: 'row' }, r.name),
    h('td', {}, h('span', { class: 'badge' + (status === 'live' ? ' live' : '') }, status)),
    h('td', { class: 'num' }, String(roomViewers(r))),
    h('td', {}, fmt(r.hostId)),
    h('td', { class: 'actions' },
      h('button', { type: 'button', class: 'small secondary', 'aria-label': text.inspectRoom(r.name), dataset: { action: 'inspect' }, onclick: () => run(() => inspect(r.name)) }, text.inspect),
      h('button', { type: 'button', class: 'small secondary', 'aria-label': text.bansOf(r.name), dataset: { action: 'bans' }, onclick: () => { $('#bans-room').value = r.name; run(() => loadBans(false)); } }, text.bans),
      h('button', { type: 'button', class: 'small danger', 'aria-label': text.closeRoom(r.name), dataset: { action: 'close' }, onclick: () => run(() => closeRoom(r.name)) }, text.close)));
}

async function loadRooms() {
  try {
    const { rooms } = await listRooms({ sort: 'newest', limit: 100 });
    const open = rooms.filter((r) => r && r.name && !['closed', 'failed'].includes(r.status));
    replaceRows($('#rooms'), 'room', open.map(roomRow));
    $('#rooms-table').hidden = open.length === 0;
    $('#rooms-note').textContent = open.length ? text.roomsNote(open.length) : text.noOpenRoom;
  } catch (e) {
    $('#rooms').replaceChildren();
    $('#rooms-table').hidden = true;
    $('#rooms-note').textContent = text.listingNeedsKey(e.message);
  }
}

async function inspect(name) {
  $('#inspect-name').value = name;
  const { data } = await admin('GET', `/rooms/${enc(name)}`);
  $('#room-detail-title').textContent = text.roomTitle(name);
  kv($('#room-detail-list'), data && data.room);
  const host = data && data.host;
  if (host) {
    const { stats, ...rest } = host;
    kv($('#room-detail-host'), { ...rest, ...(stats || {}) });
  } else {
    $('#room-detail-host').replaceChildren(h('dt', {}, text.hostTerm), h('dd', {}, text.notOpen));
  }
  $('#room-detail').hidden = false;
}

async function closeRoom(name) {
  const c = await confirmAction({
    title: text.closeTitle(name),
    text: text.closeText,
    okLabel: text.closeRoom(name),
    reason: true,
  });
  if (!c.ok) return;
  const { status, data } = await admin('DELETE', `/rooms/${enc(name)}`, { reason: c.reason });
  ok(text.roomClosed(name, data && data.status, status));
  await loadRooms();
}

// Bans.

let bansCursor = '';

function banRow(b, room) {
  const label = text.removeBan(b.userId, room);
  return h('tr', { dataset: { user: b.userId } },
    h('th', { scope: 'row' }, b.userId),
    h('td', {}, b.reason || ''),
    h('td', {}, b.until ? when(b.until) : text.forever),
    h('td', {}, b.by || ''),
    h('td', { class: 'actions' },
      h('button', { type: 'button', class: 'small secondary', 'aria-label': label, dataset: { action: 'unban' }, onclick: () => run(() => removeBan(b.userId, room)) }, text.remove)));
}

async function loadBans(more) {
  const room = $('#bans-room').value.trim();
  const q = new URLSearchParams({ limit: String(BANS_PAGE) });
  if (room) q.set('room', room);
  if (more && bansCursor) q.set('cursor', bansCursor);
  const { data } = await admin('GET', '/bans?' + q);
  const bans = (data && data.bans) || [];
  const rows = bans.map((b) => banRow(b, room));
  if (more) $('#bans').append(...rows);
  else replaceRows($('#bans'), 'user', rows);
  bansCursor = (data && data.nextCursor) || '';
  $('#bans-more').hidden = !bansCursor;
  const n = $('#bans').children.length;
  $('#bans-count').textContent = text.bansCount(n, room, !!bansCursor);
  $('#bans-table').hidden = n === 0;
}

async function addBan() {
  const userId = $('#ban-user').value.trim();
  const reason = $('#ban-reason').value.trim();
  const minutes = Number($('#ban-minutes').value || 0);
  const { status, data } = await admin('POST', '/bans', { userId, reason, minutes });
  ok(text.banAdded(userId, status, data.hosts, data.rooms, failures(data)));
  $('#ban-form').reset();
  $('#bans-room').value = '';
  await loadBans(false);
}

async function removeBan(userId, room) {
  const path = room ? `/rooms/${enc(room)}/bans/${enc(userId)}` : `/bans/${enc(userId)}`;
  const { status, data } = await admin('DELETE', path);
  ok(text.bansRemoved(data.removed, userId, room, status, data.hosts, data.rooms, failures(data)));
  await loadBans(false);
}

// Blocked words and room defaults.

async function loadWords() {
  const { data } = await admin('GET', '/blocked-words');
  const words = (data && data.words) || [];
  $('#words-text').value = words.join('\n');
  $('#words-count').textContent = text.wordsCount(words.length);
}

async function saveWords() {
  const { status, data } = await admin('PUT', '/blocked-words', { words: parseWords($('#words-text').value) });
  ok(text.wordsReplaced(status, data.words.length, data.hosts, failures(data)));
  await loadWords();
}

const DEFAULT_FIELDS = ['historySize', 'maxMessageLen', 'slowModeSeconds', 'idleTimeoutSec'];

function showDefaults(d) {
  for (const f of DEFAULT_FIELDS) $('#def-' + f).value = d && Number.isFinite(d[f]) ? String(d[f]) : '';
  $('#def-allowAnonymous').checked = !!(d && d.allowAnonymous);
}

async function loadDefaults() {
  const { data } = await admin('GET', '/room-defaults');
  showDefaults(data);
}

async function saveDefaults() {
  const body = { allowAnonymous: $('#def-allowAnonymous').checked };
  for (const f of DEFAULT_FIELDS) body[f] = Number($('#def-' + f).value);
  const { status, data } = await admin('PUT', '/room-defaults', body);
  ok(text.defaultsReplaced(status, data.hosts, failures(data)));
  await loadDefaults();
}

// The audit log, newest first, 50 at a time.

const AUDIT_PAGE = 50;
let auditBefore = '';

function auditRow(e) {
  return h('tr', { dataset: { action: e.action || '' } },
    h('td', {}, when(e.at)),
    h('td', {}, e.actor || ''),
    h('td', {}, e.action || ''),
    h('td', {}, e.target || ''),
    h('td', { class: 'detail-cell' }, e.detail === undefined ? '' : fmt(e.detail)));
}

async function loadAudit(more) {
  const q = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  const target = $('#audit-target').value.trim();
  if (target) q.set('target', target);
  if (more && auditBefore) q.set('before', auditBefore);
  const { data } = await admin('GET', '/audit?' + q);
  const rows = ((data && data.entries) || []).map(auditRow);
  if (more) $('#audit').append(...rows);
  else $('#audit').replaceChildren(...rows);
  auditBefore = (data && data.nextBefore) || '';
  $('#audit-more').hidden = !auditBefore;
  const n = $('#audit').children.length;
  $('#audit-table').hidden = n === 0;
  $('#audit-count').textContent = text.auditCount(n, target, !!auditBefore);
}

// The key form and start.

function showKeyState() {
  const has = adminKey() !== '';
  $('#console').hidden = !has;
  $('#key-status').textContent = has ? text.keyHeld : text.keyNeeded;
}

async function loadAll() {
  notice.clear();
  // One at a time: the first refusal (a wrong key) is the message shown.
  await loadHosts();
  await loadRooms();
  await loadBans(false);
  await loadWords();
  await loadDefaults();
  ok(text.connected);
}

function wire(sel, ev, f) {
  $(sel).addEventListener(ev, (e) => {
    if (ev === 'submit') e.preventDefault();
    run(f);
  });
}

function start() {
  applyStrings();
  wire('#key-form', 'submit', async () => {
    const k = $('#admin-key').value.trim();
    $('#admin-key').value = '';
    if (!k) {
      notice.show(text.typeKey, { kind: 'error', alert: true });
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, k);
    showKeyState();
    try {
      await loadAll();
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        // A refused key is not kept: the notice says why.
        sessionStorage.removeItem(KEY_STORAGE);
        showKeyState();
      }
      throw e;
    }
  });
  $('#key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    notice.show(text.keyForgotten, { kind: 'ok' });
    $('#admin-key').focus();
  });
  wire('#hosts-refresh', 'click', loadHosts);
  wire('#rooms-refresh', 'click', loadRooms);
  wire('#inspect-form', 'submit', () => inspect($('#inspect-name').value.trim()));
  wire('#inspect-close', 'click', async () => {
    const name = $('#inspect-name').value.trim();
    if (name) await closeRoom(name);
    else $('#inspect-name').focus();
  });
  wire('#message-form', 'submit', async () => {
    const message = $('#message-text').value.trim();
    const { status, data } = await admin('POST', '/messages', { text: message });
    ok(text.messageSent(status, data.rooms, data.hosts, failures(data)));
    $('#message-text').value = '';
  });
  wire('#ban-form', 'submit', addBan);
  wire('#bans-filter', 'submit', () => loadBans(false));
  wire('#bans-more', 'click', () => loadBans(true));
  wire('#words-form', 'submit', saveWords);
  wire('#words-load', 'click', loadWords);
  wire('#defaults-form', 'submit', saveDefaults);
  wire('#defaults-load', 'click', loadDefaults);
  wire('#audit-form', 'submit', () => loadAudit(false));
  wire('#audit-more', 'click', () => loadAudit(true));
  setPending(0);
  showKeyState();
  if (adminKey()) run(loadAll);
  else $('#admin-key').focus();
}

if (typeof document !== 'undefined' && document.querySelector('#key-form')) start();
