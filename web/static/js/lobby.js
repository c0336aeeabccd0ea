// The lobby: rooms from the listing API, refreshed every few seconds.

import { listRooms, roomStatus, roomViewers } from './api.js';
import { $, h, Notice, openSettings, setupSettings } from './ui.js';

const REFRESH = 5000;
const PAGE = 50;

const notice = new Notice($('#notice'));
const tbody = $('#rooms');
let sort = 'viewers';
let pages = 1; // how many pages "Show more" asked for
let timer = null;
let lastCount = '';

function row(r) {
  const status = roomStatus(r);
  const live = status === 'live';
  const viewers = roomViewers(r);
  const href = '/watch.html?room=' + encodeURIComponent(r.name);
  return h('tr', { dataset: { room: r.name } },
    h('td', {}, h('a', { href }, r.name)),
    h('td', {}, h('span', { class: 'badge' + (live ? ' live' : '') }, live ? 'live' : status)),
    h('td', { class: 'num' }, String(viewers), h('span', { class: 'visually-hidden' }, viewers === 1 ? ' viewer' : ' viewers')),
    h('td', {}, h('a', { href, class: 'button secondary', 'aria-label': 'Watch ' + r.name }, 'Watch')));
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
    const count = `${rooms.length} ${rooms.length === 1 ? 'room' : 'rooms'}, ${live} live.`;
    if (count !== lastCount) $('#rooms-count').textContent = lastCount = count;
    $('#rooms-updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
    notice.clear();
  } catch (e) {
    const action = e.status === 401 || e.status === 403 ? { label: 'Enter API key', run: openSettings } : null;
    notice.show('Cannot load the rooms: ' + e.message, { kind: 'error', action });
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
setupSettings(refresh);
refresh();
