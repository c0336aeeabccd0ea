// RoomPage wires what the watch and go-live pages share: the room
// connection, the chat, the player, the live badge (and when the page last
// saw the stream live), the viewer count and the connection notices.

import { RoomConnection } from './room.js';
import { ChatView, SendForm, plainReason, rank } from './chat.js';
import { Player } from './player.js';
import { $, Notice } from './ui.js';
import { common as C } from './strings.js';

// parseTime reads an API time: RFC 3339 text, or Unix seconds or ms.
export function parseTime(v) {
  if (typeof v === 'number') return v < 1e12 ? v * 1000 : v;
  const t = Date.parse(v || '');
  return Number.isNaN(t) ? 0 : t;
}

// ROOM_NAME is chatfleet's rule for room names (docs/control-api.md): a
// link whose name breaks it names no room, and is not worth asking about.
export const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

// endText says why a session ended, for people: the page's sentence for
// why, then the room's reason when it adds something.
export function endText(why, reason) {
  const text = C.ended[why] || C.ended.error;
  const r = plainReason(reason);
  return r ? text + ' ' + C.reason(r) : text;
}

export class RoomPage extends EventTarget {
  // opts: credentials(refresh), transport, onModerate(action, target),
  // endActions: {why: {label, run}}, a button for the notice of an end.
  constructor(opts) {
    super();
    this.notice = new Notice($('#notice'));
    this.chat = new ChatView($('#chat-log'), { onModerate: opts.onModerate });
    this.player = new Player($('#video'), $('#player-status'));
    this.stream = { live: false, hlsUrl: '' };
    this.lastLive = 0; // ms: when this page last saw the stream live
    this.viewerCount = 0;
    this.slowMode = 0;
    this.ended = null;
    this.endActions = opts.endActions || {};
    this.input = $('#chat-input');
    this.conn = new RoomConnection({ credentials: opts.credentials, transport: opts.transport });
    this.sender = new SendForm($('#chat-form'), this.input, (text) => this.conn.chat(text), this.chat);
    this.conn.addEventListener('state', (ev) => this._state(ev.detail));
    this.conn.addEventListener('welcome', (ev) => this._welcome(ev.detail));
    this.conn.addEventListener('message', (ev) => this._message(ev.detail));
    this.conn.addEventListener('ended', (ev) => this._ended(ev.detail));
    this._okTimer = null;
  }

  start() {
    this.conn.start();
  }

  send(msg) {
    if (!this.conn.send(msg)) {
      this.chat.line(C.notConnected, 'error');
      return false;
    }
    return true;
  }

  _enableChat(on) {
    this.sender.setConnected(on);
  }

  _state(d) {
    const sse = d.transport === 'sse';
    const st = $('#conn-state');
    clearTimeout(this._okTimer);
    switch (d.state) {
      case 'connecting':
        st.textContent = C.connecting;
        break;
      case 'open':
        this._everOpen = true;
        st.textContent = C.connected(sse);
        this._enableChat(true);
        if (this._keepNotice) {
          this._keepNotice = false; // the missed-messages notice stays
        } else if (this._wasLost) {
          this.notice.show(C.reconnected, { kind: 'ok' });
          this._okTimer = setTimeout(() => this.notice.clear(), 4000);
        } else {
          this.notice.clear();
        }
        this._wasLost = false;
        break;
      case 'reconnecting': {
        if (d.delay === undefined) {
          st.textContent = C.reconnectingVia(sse);
          break;
        }
        this._wasLost = true;
        this._enableChat(false);
        st.textContent = C.disconnected;
        const secs = Math.max(1, Math.round(d.delay / 1000));
        const text = d.delay === 0 ? C.trySSE : C.connectionLost(this._everOpen, d.reason, secs, d.attempt);
        this.notice.show(text, { kind: 'error', action: d.delay ? { label: C.retryNow, run: () => this.conn.retryNow() } : null });
        break;
      }
      case 'ended':
      case 'closed':
        st.textContent = C.disconnected;
        this._enableChat(false);
        break;
    }
    this.dispatchEvent(new CustomEvent('state', { detail: d }));
  }

  _welcome(d) {
    const m = d.msg;
    if (d.reset) this.chat.clear();
    this.chat.setYou(m.you);
    if (d.missed) {
      this.chat.line(C.missed, 'notice');
      this.notice.show(C.missed, { kind: '' });
      this._keepNotice = true;
    } else if (d.recovered && d.replayed > 0) {
      this.chat.line(C.recovered(d.replayed), 'notice');
    }
    this._setStream(m.stream || { live: false }, false);
    this._setCount(m.viewerCount || 0);
    this.slowMode = m.slowMode || 0;
    if (m.maxLen > 0) this.sender.setMaxLength(m.maxLen); // the room's own limit, before any send
    if (m.muted) this.sender.mute(m.until || Infinity); // a mute made before this page joined
    this.dispatchEvent(new CustomEvent('welcome', { detail: d }));
  }

  // _you reports whether a message is about this page's user.
  _you(m) {
    return !!(this.conn.you && m.userId && m.userId === this.conn.you.userId);
  }

  _message(m) {
    this.chat.add(m);
    // Mutes are followed in the history too: a mute made before this page
    // joined still holds.
    if (m.type === 'muted' && this._you(m)) {
      const until = m.replayed ? (m.until || Infinity) : m.seconds ? Date.now() + m.seconds * 1000 : Infinity;
      if (until > Date.now()) this.sender.mute(until);
    } else if (m.type === 'unmuted' && this._you(m)) {
      this.sender.mute(0);
    }
    if (!m.replayed) {
      switch (m.type) {
        case 'stream':
          this._setStream({ live: !!m.live, hlsUrl: m.hlsUrl || '', reason: m.reason || '' }, true);
          break;
        case 'join':
        case 'leave':
        case 'count':
          this._setCount(m.viewerCount || 0);
          break;
        case 'slowmode':
          this.slowMode = m.seconds || 0;
          if (!this.slowMode) this.sender.cooldown(0);
          break;
        case 'ack':
          this.sender.ack(m.clientId);
          // Slow mode holds viewers only (docs/protocol.md).
          if (m.clientId && this.slowMode && rank((this.conn.you || {}).role) < 1) this.sender.cooldown(this.slowMode);
          break;
        case 'error':
          if (m.ref) this.sender.error(m.ref, m.code, m.message || m.code);
          else this.chat.line(m.message || m.code, 'error');
          break;
      }
    }
    this.dispatchEvent(new CustomEvent('message', { detail: m }));
  }

  _ended(d) {
    this.ended = d;
    const text = endText(d.why, d.reason);
    this.player.offline(d.why === 'banned' ? C.playerBanned : C.disconnected);
    this._setBadge(false);
    $('#viewer-count').textContent = '';
    this.chat.line(text, 'error');
    const action = (this.endActions || {})[d.why] || null;
    this.notice.show(text, { kind: 'error', alert: true, action });
    this.dispatchEvent(new CustomEvent('ended', { detail: d }));
  }

  _setBadge(live) {
    const b = $('#live-badge');
    b.textContent = live ? C.live : C.offline;
    b.classList.toggle('live', live);
    document.body.dataset.live = live ? 'live' : 'offline';
  }

  // _setStream shows the stream's state. news: a stream message now (not
  // the welcome's state), which also lets a player that gave up try again.
  _setStream(s, news) {
    const was = this.stream.live;
    this.stream = { live: !!s.live, hlsUrl: s.hlsUrl || '' };
    this._setBadge(this.stream.live);
    if (this.stream.live) this.lastLive = 0;
    else if (was) this.lastLive = Date.now();
    const last = $('#last-live');
    if (last) {
      last.hidden = !this.lastLive;
      last.textContent = this.lastLive ? C.lastLive(new Date(this.lastLive).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) : '';
    }
    if (this.stream.live && this.stream.hlsUrl) this.player.play(this.stream.hlsUrl, { fresh: news });
    else this.player.offline(s.reason ? C.streamOfflineWhy(s.reason) : C.streamOffline);
  }

  _setCount(n) {
    this.viewerCount = n;
    $('#viewer-count').textContent = C.people(n);
  }
}
