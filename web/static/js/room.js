// RoomConnection is one participant's connection to a room: a WebSocket, or
// the SSE fallback (EventSource for what the room sends, POST /send for what
// the client sends). It reconnects by itself with exponential backoff and
// jitter, recovers what it missed by sending the last seq it saw, and drops
// the duplicates a recovery may replay. See docs/protocol.md for the
// messages and docs/web.md for the behaviour.

import { randomId } from './settings.js';
import { common as C } from './strings.js';

// Close codes the room uses (protocol/protocol.go).
export const Close = {
  normal: 1000,
  goingAway: 1001, // the room ended
  unsupported: 1003,
  policy: 1008, // flooding
  tooBig: 1009,
  internal: 1011,
  restart: 1012, // the host is draining: reconnect, the room may move
  replaced: 4001, // a newer producer connection took over
  kicked: 4003,
  banned: 4004,
  notEntitled: 4005, // paid room: the entitlement hook said no (or is down past its grace)
  tooSlow: 4008,
};

// Server message types that carry a seq when sent to the whole room.
const SEQUENCED = new Set([
  'chat', 'join', 'leave', 'deleted', 'muted', 'unmuted', 'kicked', 'banned', 'stream', 'slowmode', 'system',
]);

const MIN_DELAY = 500; // ms, the first retry's ceiling
const MAX_DELAY = 30000; // ms
const OPEN_TIMEOUT = 10000; // ms for a transport to open and the welcome to come
const PING_AFTER = 20000; // ms of silence before the client pings (WebSocket)
const DEAD_AFTER = 45000; // ms of silence before the connection counts as dead

// backoff returns the delay before retry number attempt (1, 2, …):
// exponential with "equal jitter", between half and all of
// min(MAX_DELAY, MIN_DELAY * 2^(attempt-1)).
export function backoff(attempt, rand = Math.random) {
  const cap = Math.min(MAX_DELAY, MIN_DELAY * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + (rand() * cap) / 2);
}

// sendURL is the room's POST /send address, next to its /events.
function sendURL(creds) {
  const u = new URL(creds.sseUrl);
  u.pathname = u.pathname.replace(/\/events$/, '') + '/send';
  u.search = '';
  return u;
}

export class RoomConnection extends EventTarget {
  // credentials(refresh) returns a promise of {token, wsUrl, sseUrl}. It is
  // called before every attempt; refresh is true when the last attempts
  // failed or the host restarted, so that it can fetch a new token and the
  // room's current address. An error with .final ('gone', 'banned', …)
  // ends the connection instead of retrying.
  // transport is 'auto' (WebSocket, falling back to SSE when WebSocket
  // cannot connect), 'ws' or 'sse'.
  constructor({ credentials, transport = 'auto' }) {
    super();
    this.credentials = credentials;
    this.mode = transport === 'ws' || transport === 'sse' ? transport : 'auto';
    this.transport = this.mode === 'sse' ? 'sse' : 'ws';
    this.lastSeq = 0; // the last sequenced event seen
    this.you = null; // {userId, name, role} from the welcome
    this.state = 'idle'; // connecting, open, reconnecting, ended, closed
    this._running = false;
    this._gen = 0; // increments per attempt: callbacks of old attempts do nothing
    this._failures = 0; // consecutive failed attempts
    this._needRefresh = false;
    this._worked = { ws: false, sse: false };
    this._ws = null;
    this._es = null;
    this._welcomed = false; // the current transport got its welcome
    this._timer = null;
    this._openTimer = null;
    this._pingTimer = null;
    this._lastRx = 0;
    this._creds = null;
    this._n = 0;
    this._onOnline = () => this.retryNow();
    // The browser knows its network is gone before any timeout would tell.
    this._onOffline = () => {
      if (this._ws || this._es) this._lost(this._gen, 0, C.whyOffline);
    };
  }

  start() {
    if (this._running) return;
    this._running = true;
    addEventListener('online', this._onOnline);
    addEventListener('offline', this._onOffline);
    this._connect();
  }

  // stop closes the connection for good.
  stop() {
    this._running = false;
    this._teardown(Close.normal, 'bye');
    removeEventListener('online', this._onOnline);
    removeEventListener('offline', this._onOffline);
    this._setState('closed', {});
  }

  // retryNow skips the wait before the next attempt.
  retryNow() {
    if (this._running && this.state === 'reconnecting' && this._timer) this._connect();
  }

  get connected() {
    return this.state === 'open';
  }

  // send sends one client message; it reports false when not connected.
  // Over SSE the reply to the POST (ack, viewers, pong, or an error) is
  // dispatched as if the room had sent it.
  send(msg) {
    if (!this._welcomed) return false;
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify(msg));
      return true;
    }
    if (this._es) {
      this._post(msg);
      return true;
    }
    return false;
  }

  // chat sends a chat message and returns its clientId, or '' when not
  // connected. The ack and any error carry the clientId (error as ref).
  chat(text) {
    const clientId = 'c' + ++this._n + '-' + randomId(3);
    return this.send({ type: 'chat', text, clientId, sendTs: Date.now() }) ? clientId : '';
  }

  async _post(msg) {
    const creds = this._creds;
    try {
      const res = await fetch(sendURL(creds), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + creds.token },
        body: JSON.stringify(msg),
      });
      let env = {};
      try {
        env = await res.json();
      } catch {
        env = {};
      }
      if (res.ok && env.data && env.data.type) {
        this._handle(env.data);
      } else {
        const e = env.error || {};
        this._handle({ type: 'error', code: e.code || 'http_' + res.status, message: e.message || res.statusText, ref: msg.clientId });
      }
    } catch (e) {
      this._handle({ type: 'error', code: 'network', message: 'not sent: ' + e.message, ref: msg.clientId });
    }
  }

  _setState(state, detail) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, transport: this.transport, ...detail } }));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async _connect() {
    clearTimeout(this._timer);
    this._timer = null;
    if (!this._running) return;
    const gen = ++this._gen;
    this._setState(this.lastSeq > 0 || this._failures > 0 ? 'reconnecting' : 'connecting', { attempt: this._failures + 1 });
    let creds;
    try {
      creds = await this.credentials(this._needRefresh);
    } catch (e) {
      if (gen !== this._gen || !this._running) return;
      if (e && e.final) {
        this._end(e.final, 0, e.message);
      } else {
        this._fail(0, (e && e.message) || String(e));
      }
      return;
    }
    if (gen !== this._gen || !this._running) return;
    this._needRefresh = false;
    this._creds = creds;
    this._welcomed = false;
    this._openTimer = setTimeout(() => {
      if (gen === this._gen && !this._welcomed) this._lost(gen, 0, C.whyTimedOut);
    }, OPEN_TIMEOUT);
    if (this.transport === 'sse') this._openSSE(creds, gen);
    else this._openWS(creds, gen);
  }

  _openWS(creds, gen) {
    let ws;
    try {
      const u = new URL(creds.wsUrl);
      u.searchParams.set('token', creds.token);
      if (this.lastSeq > 0) u.searchParams.set('lastSeq', String(this.lastSeq));
      ws = new WebSocket(u);
    } catch (e) {
      this._lost(gen, 0, e.message);
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => {
      if (gen === this._gen && typeof ev.data === 'string') this._frame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this._ws === ws) this._lost(gen, ev.code, ev.reason);
    };
  }

  _openSSE(creds, gen) {
    let es;
    try {
      const u = new URL(creds.sseUrl);
      u.searchParams.set('token', creds.token);
      if (this.lastSeq > 0) u.searchParams.set('lastSeq', String(this.lastSeq));
      es = new EventSource(u);
    } catch (e) {
      this._lost(gen, 0, e.message);
      return;
    }
    this._es = es;
    es.onmessage = (ev) => {
      if (gen === this._gen) this._frame(ev.data);
    };
    // The browser would retry by itself; the client retries instead, with
    // its own backoff and a fresh lastSeq.
    es.onerror = () => {
      if (this._es === es) this._lost(gen, 0, C.whySSEFailed);
    };
  }

  // _frame handles one WebSocket frame or SSE event: one or more JSON
  // messages separated by '\n'.
  _frame(text) {
    this._lastRx = Date.now();
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg && typeof msg.type === 'string') this._handle(msg);
    }
  }

  _handle(msg) {
    switch (msg.type) {
      case 'welcome':
        this._welcome(msg);
        return;
      case 'close': // SSE: the stream's close frame
        if (this._es) this._lost(this._gen, msg.closeCode || 0, msg.reason || '');
        return;
    }
    if (SEQUENCED.has(msg.type) && msg.seq) {
      if (msg.seq <= this.lastSeq) return; // already seen (replayed by a recovery)
      this.lastSeq = msg.seq;
    }
    this._emit('message', msg);
  }

  _welcome(msg) {
    clearTimeout(this._openTimer);
    this._welcomed = true;
    this._worked[this.transport] = true;
    this._failures = 0;
    this.you = msg.you || null;
    const seq = msg.seq || 0;
    let since = this.lastSeq;
    // A room that knows less than we saw is a new room of the same name.
    const reset = since > seq;
    if (reset) since = 0;
    const recovered = since > 0;
    const replay = (msg.history || []).filter((h) => h && h.type && (!h.seq || h.seq > since));
    this.lastSeq = since;
    this._emit('welcome', { msg, recovered, reset, missed: !!msg.missed && recovered, replayed: replay.length });
    for (const h of replay) {
      if (h.seq) this.lastSeq = Math.max(this.lastSeq, h.seq);
      this._emit('message', { ...h, replayed: true });
    }
    this.lastSeq = Math.max(this.lastSeq, seq);
    this._setState('open', { recovered });
    this._startPing();
  }

  _startPing() {
    clearInterval(this._pingTimer);
    this._lastRx = Date.now();
    const gen = this._gen;
    this._pingTimer = setInterval(() => {
      if (gen !== this._gen) return;
      const quiet = Date.now() - this._lastRx;
      if (quiet > DEAD_AFTER && this._ws) {
        this._lost(gen, 0, C.whyNoAnswer);
      } else if (quiet > PING_AFTER && this._ws && this._ws.readyState === WebSocket.OPEN) {
        this._ws.send('{"type":"ping"}');
      }
    }, 5000);
  }

  _teardown(code, reason) {
    this._gen++;
    clearTimeout(this._timer);
    clearTimeout(this._openTimer);
    clearInterval(this._pingTimer);
    this._timer = this._openTimer = this._pingTimer = null;
    this._welcomed = false;
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.onclose = ws.onmessage = null;
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
    if (this._es) {
      this._es.close();
      this._es = null;
    }
  }

  // _probe asks the room why it refused a connection, with a ping through
  // POST /send (which checks the token and bans as the handshake does):
  // {final: 'banned'} for a ban, {refresh: true} for a token it refused,
  // else {}. A browser can read the refusal only when the room sends CORS
  // headers with it; otherwise the probe says nothing.
  async _probe(creds) {
    try {
      const res = await fetch(sendURL(creds), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + creds.token },
        body: '{"type":"ping"}',
      });
      let msg = '';
      try {
        msg = ((await res.json()).error || {}).message || '';
      } catch {
        msg = '';
      }
      if (res.status === 403 && /banned/i.test(msg)) return { final: 'banned', reason: msg };
      if (res.status === 401) return { refresh: true };
    } catch {
      // unreachable, or the refusal is not readable
    }
    return {};
  }

  // _lost handles the end of the current attempt or connection.
  _lost(gen, code, reason) {
    if (gen !== this._gen || !this._running) return;
    const welcomed = this._welcomed;
    this._teardown(Close.normal, '');
    if (!welcomed && (code === 0 || code === 1006) && this._creds && this._creds.sseUrl) {
      // Refused before the welcome: a ban or a bad token looks like a
      // network failure to WebSocket and EventSource alike.
      const g = this._gen;
      this._probe(this._creds).then((r) => {
        if (g !== this._gen || !this._running) return;
        if (r.final) return this._end(r.final, Close.banned, r.reason);
        if (r.refresh) this._needRefresh = true;
        this._fail(code, reason, false);
      });
      return;
    }
    switch (code) {
      case Close.banned:
        return this._end('banned', code, reason);
      case Close.kicked:
        return this._end('kicked', code, reason);
      case Close.notEntitled:
        return this._end('notEntitled', code, reason);
      case Close.replaced:
        return this._end('replaced', code, reason);
      case Close.goingAway:
        return this._end('closed', code, reason);
      case Close.unsupported:
      case Close.tooBig:
        return this._end('error', code, reason);
      case Close.restart:
        this._needRefresh = true; // the room may come back on another host
        break;
    }
    this._fail(code, reason, welcomed);
  }

  _fail(code, reason, welcomed = false) {
    this._failures++;
    if (this._failures >= 2) this._needRefresh = true; // an expired token, or the room moved
    let delay = backoff(this._failures);
    if (this.mode === 'auto' && !welcomed) {
      if (this.transport === 'ws' && !this._worked.ws) {
        this.transport = 'sse'; // WebSocket cannot connect here: try the fallback at once
        delay = 0;
      } else if (this.transport === 'sse' && !this._worked.sse && this._failures >= 3) {
        this.transport = 'ws'; // neither works yet: the room may have been down
      }
    }
    this._setState('reconnecting', { attempt: this._failures, delay, code, reason, wasOpen: welcomed });
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _end(why, code, reason) {
    this._running = false;
    this._teardown(Close.normal, '');
    removeEventListener('online', this._onOnline);
    removeEventListener('offline', this._onOffline);
    this._setState('ended', { why, code, reason });
    this._emit('ended', { why, code, reason });
  }
}
