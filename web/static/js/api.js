// The control API: rooms and join tokens. Every call sends X-API-Key and
// unwraps the {"data": …} / {"error": {code, message}} envelopes.

import { apiBase, apiKey } from './settings.js';
import { api as text } from './strings.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// request sends one request with key as X-API-Key (none when '') and
// returns {status, env}: the HTTP status and the whole envelope. A failure
// throws an ApiError with the envelope's message.
export async function request(method, path, body, key) {
  const headers = { Accept: 'application/json' };
  if (key) headers['X-API-Key'] = key;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(apiBase() + path, init);
  } catch (e) {
    throw new ApiError(0, 'network', text.unreachable);
  }
  let env = null;
  if (res.status !== 204) {
    try {
      env = await res.json();
    } catch {
      env = null;
    }
  }
  if (!res.ok) {
    const e = (env && env.error) || {};
    throw new ApiError(res.status, e.code || 'http_' + res.status, e.message || res.statusText || text.requestFailed);
  }
  return { status: res.status, env: env || {} };
}

// call sends one request with the room API key and returns the whole envelope.
export async function call(method, path, body) {
  const key = apiKey();
  try {
    return (await request(method, path, body, key)).env;
  } catch (e) {
    if (e.status === 401 && !key) e.message = text.needKey;
    throw e;
  }
}

const enc = encodeURIComponent;

// listRooms returns {rooms, nextCursor}.
export async function listRooms({ sort = 'viewers', limit = 50, cursor = '' } = {}) {
  const q = new URLSearchParams({ sort, limit: String(limit) });
  if (cursor) q.set('cursor', cursor);
  const env = await call('GET', '/api/v1/rooms?' + q);
  const d = env.data;
  const rooms = Array.isArray(d) ? d : (d && (d.rooms || d.items)) || [];
  const nextCursor = (d && !Array.isArray(d) && (d.nextCursor || d.cursor)) || env.nextCursor || '';
  return { rooms, nextCursor };
}

export async function getRoom(name) {
  return (await call('GET', '/api/v1/rooms/' + enc(name))).data || {};
}

// createRoom creates a room with its title and the producer's display name
// (ownerName), each left out when empty; the answer holds the producer's
// join token and the room's addresses: {name, hostId, host, port, wsUrl,
// sseUrl, token, expiresAt}.
export async function createRoom(name, { title = '', ownerName = '' } = {}) {
  const body = {};
  if (title) body.title = title;
  if (ownerName) body.ownerName = ownerName;
  return (await call('POST', '/api/v1/rooms/' + enc(name), body)).data || {};
}

// createToken returns a join token for role 'viewer' or 'moderator'.
export async function createToken(name, { role = 'viewer', userId, name: display, ttlSeconds = 3600 }) {
  const body = { role, userId, name: display, ttlSeconds };
  const d = (await call('POST', '/api/v1/rooms/' + enc(name) + '/tokens', body)).data || {};
  return typeof d === 'string' ? { token: d } : d;
}

export async function deleteRoom(name) {
  await call('DELETE', '/api/v1/rooms/' + enc(name));
}

// roomStatus reads a listing entry: 'live', 'offline', or another status.
export function roomStatus(r) {
  if (r.producerLive === true || r.status === 'live') return 'live';
  return r.status || 'offline';
}

// roomViewers reads a listing entry's viewer count.
export function roomViewers(r) {
  const v = r.viewers ?? r.viewerCount ?? 0;
  return Number.isFinite(v) ? v : 0;
}

// roomURLs returns the room's WebSocket and SSE URLs from an API answer
// (room, create or token), deriving what is missing from host and port.
export function roomURLs(d) {
  let wsUrl = d.wsUrl || '';
  let sseUrl = d.sseUrl || '';
  const host = d.host || d.hostAddr;
  if (!wsUrl && host && d.port) wsUrl = `ws://${host}:${d.port}/ws`;
  if (!sseUrl && wsUrl) {
    const u = new URL(wsUrl);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    u.pathname = u.pathname.replace(/\/ws$/, '') + '/events';
    u.search = '';
    sseUrl = u.toString();
  }
  return { wsUrl, sseUrl };
}
