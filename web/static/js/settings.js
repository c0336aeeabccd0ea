// Settings the pages share: the control API's address and key, and the
// guest identity of this browser. See docs/web.md, "The API key".

import { common as C } from './strings.js';

const KEY_STORAGE = 'chatfleet.apiKey';
const GUEST_STORAGE = 'chatfleet.guest';

// served returns what /config.js set (window.CHATFLEET_CONFIG), or {}.
function served() {
  const c = globalThis.CHATFLEET_CONFIG;
  return c && typeof c === 'object' ? c : {};
}

// apiBase is the control API's origin ('' = this site), from /config.js.
export function apiBase() {
  return String(served().apiBase || '').replace(/\/+$/, '');
}

// takeKeyFromQuery stores ?apiKey=... and removes it from the address bar,
// so that the key is not left in the history or in shared links.
function takeKeyFromQuery() {
  const q = new URLSearchParams(location.search);
  if (!q.has('apiKey')) return;
  const k = q.get('apiKey').trim();
  if (k) localStorage.setItem(KEY_STORAGE, k);
  q.delete('apiKey');
  const rest = q.toString();
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
}

// apiKey returns the key for X-API-Key: the one saved in this browser (the
// settings field or ?apiKey=), else the one /config.js serves, else ''.
export function apiKey() {
  takeKeyFromQuery();
  return localStorage.getItem(KEY_STORAGE) || served().apiKey || '';
}

// keySource says where apiKey() comes from: 'saved', 'config' or ''.
export function keySource() {
  if (localStorage.getItem(KEY_STORAGE)) return 'saved';
  return served().apiKey ? 'config' : '';
}

export function saveApiKey(k) {
  k = (k || '').trim();
  if (k) localStorage.setItem(KEY_STORAGE, k);
  else localStorage.removeItem(KEY_STORAGE);
}

function randomId(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// guest returns this browser's guest identity, made once and kept in
// localStorage: {userId: 'web-…', name: 'Guest-1234'}. Ids starting with
// 'guest-' are the rooms' anonymous guests' (the control API refuses tokens
// for them): an identity stored before that is made anew.
export function guest() {
  let g = null;
  try {
    g = JSON.parse(localStorage.getItem(GUEST_STORAGE) || 'null');
  } catch {
    g = null;
  }
  if (!g || typeof g.userId !== 'string' || !g.userId || g.userId.startsWith('guest-')) {
    const n = new Uint16Array(1);
    crypto.getRandomValues(n);
    g = { userId: 'web-' + randomId(8), name: C.guestName(String(1000 + (n[0] % 9000))) };
    localStorage.setItem(GUEST_STORAGE, JSON.stringify(g));
  }
  return g;
}

export function setGuestName(name) {
  const g = guest();
  g.name = name.trim().slice(0, 40) || g.name;
  localStorage.setItem(GUEST_STORAGE, JSON.stringify(g));
  return g;
}

export { randomId };
