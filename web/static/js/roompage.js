// RoomPage wires what the watch and go-live pages share: the room
// connection, the chat, the player, the live badge, the viewer count and
// the connection notices.

import { RoomConnection } from './room.js';
import { ChatView, bindSendForm } from './chat.js';
import { Player } from './player.js';
import { $, Notice } from './ui.js';

const ENDED = {
  banned: 'You were banned from this room.',
  kicked: 'You were removed from the room by a moderator.',
  closed: 'The room has ended.',
  replaced: 'This room was opened in another tab or window.',
  notEntitled: 'Your access to this paid room was refused.',
  gone: 'This room does not exist or has ended.',
  error: 'The connection was closed.',
};

// parseTime reads an API time: RFC 3339 text, or Unix seconds or ms.
export function parseTime(v) {
  if (typeof v === 'number') return v < 1e12 ? v * 1000 : v;
  const t = Date.parse(v || '');
  return Number.isNaN(t) ? 0 : t;
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
    this.viewerCount = 0;
    this.slowMode = 0;
    this.ended = null;
    this.endActions = opts.endActions || {};
    this.input = $('#chat-input');
    this.sendButton = $('#chat-send');
    this.conn = new RoomConnection({ credentials: opts.credentials, transport: opts.transport });
    this.sender = bindSendForm($('#chat-form'), this.input, (text) => this.conn.chat(text), this.chat);
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
      this.chat.line('Not connected: try again when the connection is back.', 'error');
      return false;
    }
    return true;
  }

  _enableChat(on) {
    this.input.disabled = !on;
    this.sendButton.disabled = !on;
  }

  _state(d) {
    const via = d.transport === 'sse' ? 'SSE fallback' : 'WebSocket';
    const st = $('#conn-state');
    clearTimeout(this._okTimer);
    switch (d.state) {
      case 'connecting':
        st.textContent = 'Connecting…';
        break;
      case 'open':
        this._everOpen = true;
        st.textContent = `Connected (${via})`;
        this._enableChat(true);
        if (this._keepNotice) {
          this._keepNotice = false; // the missed-messages notice stays
        } else if (this._wasLost) {
          this.notice.show('Reconnected.', { kind: 'ok' });
          this._okTimer = setTimeout(() => this.notice.clear(), 4000);
        } else {
          this.notice.clear();
        }
        this._wasLost = false;
        break;
      case 'reconnecting': {
        if (d.delay === undefined) {
          st.textContent = `Reconnecting (${via})…`;
          break;
        }
        this._wasLost = true;
        this._enableChat(false);
        st.textContent = 'Disconnected';
        const secs = Math.max(1, Math.round(d.delay / 1000));
        const why = d.reason ? ` (${d.reason})` : '';
        const text = d.delay === 0 ?
          'WebSocket could not connect; trying the SSE fallback…' :
          `${this._everOpen ? 'Connection lost' : 'Cannot connect to the room'}${why}. Reconnecting in ${secs} s (attempt ${d.attempt})…`;
        this.notice.show(text, { kind: 'error', action: d.delay ? { label: 'Retry now', run: () => this.conn.retryNow() } : null });
        break;
      }
      case 'ended':
      case 'closed':
        st.textContent = 'Disconnected';
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
      const text = 'Some messages were missed while you were disconnected: the room keeps only its latest messages.';
      this.chat.line(text, 'notice');
      this.notice.show(text, { kind: '' });
      this._keepNotice = true;
    } else if (d.recovered && d.replayed > 0) {
      this.chat.line(`Reconnected: ${d.replayed} missed ${d.replayed === 1 ? 'event' : 'events'} recovered.`, 'notice');
    }
    this._setStream(m.stream || { live: false });
    this._setCount(m.viewerCount || 0);
    this.slowMode = m.slowMode || 0;
    this.dispatchEvent(new CustomEvent('welcome', { detail: d }));
  }

  _message(m) {
    this.chat.add(m);
    if (!m.replayed) {
      switch (m.type) {
        case 'stream':
          this._setStream({ live: !!m.live, hlsUrl: m.hlsUrl || '' });
          break;
        case 'join':
        case 'leave':
        case 'count':
          this._setCount(m.viewerCount || 0);
          break;
        case 'slowmode':
          this.slowMode = m.seconds || 0;
          break;
        case 'ack':
          this.sender.ack(m.clientId);
          break;
        case 'error':
          if (m.ref) this.sender.error(m.ref, m.message || m.code);
          else this.chat.line(m.message || m.code, 'error');
          break;
      }
    }
    this.dispatchEvent(new CustomEvent('message', { detail: m }));
  }

  _ended(d) {
    this.ended = d;
    let text = ENDED[d.why] || ENDED.error;
    const reason = (d.reason || '').replace(/^you are (banned|kicked)( from this room)?:? ?/i, '');
    if (reason) text = text.replace(/\.$/, ': ' + reason + '.');
    this.player.offline(d.why === 'banned' ? 'You were banned from this room.' : 'Disconnected.');
    this._setBadge(false);
    $('#viewer-count').textContent = '';
    this.chat.line(text, 'error');
    const action = (this.endActions || {})[d.why] || null;
    this.notice.show(text, { kind: 'error', alert: true, action });
    this.dispatchEvent(new CustomEvent('ended', { detail: d }));
  }

  _setBadge(live) {
    const b = $('#live-badge');
    b.textContent = live ? 'live' : 'offline';
    b.classList.toggle('live', live);
  }

  _setStream(s) {
    this.stream = { live: !!s.live, hlsUrl: s.hlsUrl || '' };
    this._setBadge(this.stream.live);
    if (this.stream.live && this.stream.hlsUrl) this.player.play(this.stream.hlsUrl);
    else this.player.offline('The stream is offline.');
  }

  _setCount(n) {
    this.viewerCount = n;
    $('#viewer-count').textContent = `${n} ${n === 1 ? 'person' : 'people'} here`;
  }
}
