// The lobby: rooms from the listing API, refreshed every few seconds.

import { listRooms, roomStatus, roomViewers } from './api.js';
import { $, h, Notice, openSettings, setupSettings } from './ui.js';
import { api as apiText, applyStrings, lobby as text } from './strings.js';

const REFRESH = 5000;
const PAGE = 50;

const notice = new Notice($('#notice'));
const tbody = $('#rooms');
let sort = 'viewers';
let pages = 1; // how many pages "Show more" asked for
let timer = null;
let lastCount = '';

// row is one room: its title (or name) as the link, the name and the
// producer's display name when the listing has them, the live state the
// server reports, the viewers and a Watch button.
function row(r) {
  const status = roomStatus(r);
  const live = status === 'live';
  const viewers = roomViewers(r);
  const href = '/watch.html?room=' + encodeURIComponent(r.name);
  const title = (r.title || '').trim();
  const owner = (r.ownerName || '').trim();
  const sub = [title ? r.name : '', owner ? text.by(owner) : ''].filter(Boolean).join(' · ');
  return h('tr', { dataset: { room: r.name } },
    h('td', { class: 'room' },
      h('a', { href, class: 'room-title' }, title || r.name),
      sub ? h('span', { class: 'room-sub hint' }, sub) : null),
    h('td', {}, h('span', { class: 'badge' + (live ? ' live' : '') }, live ? text.live : text.status(status))),
    h('td', { class: 'num' }, String(viewers), h('span', { class: 'visually-hidden' }, text.viewers(viewers))),
    h('td', { class: 'watch' }, h('a', { href, class: 'button secondary small', 'aria-label': text.watchLabel(title || r.name) }, text.watch)));
}

// failure says why the listing failed, for people.
function failure(e) {
  if (e.status === 0) return apiText.unreachable;
  if (e.status === 401) return apiText.needKey;
  if (e.status === 403) return apiText.wrongKey;
  return apiText.failed(e.status);
}

async function refresh() {
  clearTimeout(timer);
  try {
    let rooms = [];
    let cursor = '';
    for (let i = 0; i < pages; i++) {
      const page = await listRooms({ sort, limit: PAGE, cursor });
      rooms = rooms.concat(page.rooms);
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    rooms = rooms.filter((r) => r && r.name && !['closed', 'failed'].includes(r.status));
    tbody.replaceChildren(...rooms.map(row));
    $('#rooms-empty').hidden = rooms.length > 0;
    $('#rooms-table').hidden = rooms.length === 0;
    $('#more').hidden = !cursor;
    const live = rooms.filter((r) => roomStatus(r) === 'live').length;
    const count = text.roomsCount(rooms.length, live);
    if (count !== lastCount) $('#rooms-count').textContent = lastCount = count;
    $('#rooms-updated').textContent = text.updated(new Date().toLocaleTimeString());
    notice.clear();
  } catch (e) {
    const action = e.status === 401 || e.status === 403 ? { label: apiText.enterKey, run: openSettings } : null;
    notice.show(text.cannotLoad(failure(e)), { kind: 'error', action });
  }
  if (!document.hidden) timer = setTimeout(refresh, REFRESH);
}

$('#sort').addEventListener('change', (ev) => {
  sort = ev.target.value;
  pages = 1;
  refresh();
});
$('#more').addEventListener('click', () => {
  pages++;
  refresh();
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) refresh();
  else clearTimeout(timer);
});
applyStrings();
setupSettings(refresh);
refresh();
