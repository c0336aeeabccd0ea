// ChatView renders a room's chat and events into an <ol role="log">, and
// its send form. Moderators get per-message actions.

import { h, timeOf } from './ui.js';

const RANK = { producer: 2, moderator: 1, viewer: 0 };

export function rank(role) {
  return RANK[role] || 0;
}

function who(u) {
  return (u && (u.name || u.userId)) || 'someone';
}

export class ChatView {
  // opts.onModerate(action, target) is called for moderator actions:
  // action 'delete' with {seq}, or 'mute'/'kick'/'ban' with {userId, name}.
  constructor(list, opts = {}) {
    this.list = list;
    this.opts = opts;
    this.you = null;
    this.bySeq = new Map();
  }

  setYou(you) {
    this.you = you;
  }

  clear() {
    this.list.replaceChildren();
    this.bySeq.clear();
  }

  _append(li) {
    const l = this.list;
    const atBottom = l.scrollHeight - l.scrollTop - l.clientHeight < 40;
    l.append(li);
    while (l.children.length > 500) l.firstElementChild.remove();
    if (atBottom) l.scrollTop = l.scrollHeight;
  }

  // line adds a local line (not from the room): kind 'notice' or 'error'.
  line(text, kind = 'notice') {
    this._append(h('li', { class: kind + '-line' }, text));
  }

  _event(text, msg) {
    const li = h('li', { class: 'event', dataset: { type: msg.type } }, text, timeOf(msg.ts));
    if (msg.seq) li.dataset.seq = msg.seq;
    this._append(li);
  }

  _canModerate(target) {
    const me = this.you;
    return !!(me && rank(me.role) >= 1 && target && target.userId !== me.userId && rank(target.role) < rank(me.role));
  }

  _chat(msg) {
    if (this.bySeq.has(msg.seq)) return;
    const from = msg.from || {};
    const mine = this.you && from.userId === this.you.userId;
    const li = h('li', { class: 'chat' + (mine ? ' mine' : ''), dataset: { seq: msg.seq, user: from.userId || '' } },
      h('span', { class: 'who' }, who(from)),
      from.role && from.role !== 'viewer' ? [h('span', { class: 'badge role-' + from.role }, from.role), ' '] : null,
      h('span', { class: 'text' }, msg.text),
      timeOf(msg.ts));
    if (this._canModerate(from) || (this.you && rank(this.you.role) >= 1 && mine)) {
      const act = (action, extra) => () => this.opts.onModerate && this.opts.onModerate(action, extra);
      const box = h('span', { class: 'mod-actions' },
        h('button', { type: 'button', class: 'small secondary', 'aria-label': `Delete message from ${who(from)}`, onclick: act('delete', { seq: msg.seq }) }, 'Delete'));
      if (this._canModerate(from)) {
        const target = { userId: from.userId, name: who(from) };
        box.append(
          h('button', { type: 'button', class: 'small secondary', 'aria-label': `Mute ${who(from)}`, onclick: act('mute', target) }, 'Mute'),
          h('button', { type: 'button', class: 'small secondary', 'aria-label': `Kick ${who(from)}`, onclick: act('kick', target) }, 'Kick'),
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Ban ${who(from)}`, onclick: act('ban', target) }, 'Ban'));
      }
      li.append(box);
    }
    this.bySeq.set(msg.seq, li);
    this._append(li);
  }

  _deleted(msg) {
    const li = this.bySeq.get(msg.target);
    if (li) {
      li.classList.add('deleted');
      const t = li.querySelector('.text');
      if (t) t.textContent = 'message deleted' + (msg.by ? ' by ' + who(msg.by) : '');
      const box = li.querySelector('.mod-actions');
      if (box) box.remove();
    }
  }

  // add renders one server message; it returns whether it was shown.
  add(msg) {
    const by = msg.by ? ' by ' + who(msg.by) : '';
    const reason = msg.reason ? ': ' + msg.reason : '';
    switch (msg.type) {
      case 'chat':
        this._chat(msg);
        return true;
      case 'deleted':
        this._deleted(msg);
        return true;
      case 'join':
        this._event(`${who(msg)} joined`, msg);
        return true;
      case 'leave':
        this._event(`${who(msg)} left`, msg);
        return true;
      case 'muted':
        this._event(`${who(msg)} was muted${by}${msg.seconds ? ` for ${msg.seconds} s` : ''}`, msg);
        return true;
      case 'unmuted':
        this._event(`${who(msg)} was unmuted${by}`, msg);
        return true;
      case 'kicked':
        this._event(`${who(msg)} was kicked${by}${reason}`, msg);
        return true;
      case 'banned':
        this._event(`${who(msg)} was banned${by}${reason}`, msg);
        return true;
      case 'stream':
        this._event(msg.live ? 'The stream is live' : 'The stream went offline', msg);
        return true;
      case 'slowmode':
        this._event(msg.seconds ? `Slow mode on: one message every ${msg.seconds} s${by}` : `Slow mode off${by}`, msg);
        return true;
      case 'system':
        // A private kicked or banned notice precedes the close, which the
        // page reports itself.
        if (!msg.seq && (msg.kind === 'kicked' || msg.kind === 'banned')) return false;
        this._event(systemText(msg), msg);
        return true;
    }
    return false;
  }
}

// moderationMessage builds the client message for a moderator action of
// the chat or the viewer list. opts: muteSeconds, banMinutes, reason (0 or
// '' leave the field out: until unmuted, forever, no reason).
export function moderationMessage(action, target, opts = {}) {
  const reason = opts.reason ? { reason: opts.reason } : {};
  switch (action) {
    case 'delete':
      return { type: 'delete', seq: target.seq };
    case 'mute':
      return { type: 'mute', userId: target.userId, ...(opts.muteSeconds ? { seconds: opts.muteSeconds } : {}) };
    case 'unmute':
      return { type: 'unmute', userId: target.userId };
    case 'kick':
      return { type: 'kick', userId: target.userId, ...reason };
    case 'ban':
      return { type: 'ban', userId: target.userId, ...reason, ...(opts.banMinutes ? { minutes: opts.banMinutes } : {}) };
  }
  return null;
}

export function systemText(msg) {
  switch (msg.kind) {
    case 'global':
      return 'Announcement: ' + (msg.text || '');
    case 'closing':
      return 'The room is closing' + (msg.text ? ': ' + msg.text : '');
    case 'drain':
      return 'The server is restarting; you will be reconnected' + (msg.text ? ' (' + msg.text + ')' : '');
    case 'kicked':
    case 'banned':
      return msg.text || 'You were removed from the room';
  }
  return msg.text || '';
}

// bindSendForm wires a chat form: Enter sends, errors come back through
// showError. send(text) returns a clientId or '' (not connected).
export function bindSendForm(form, input, send, chat) {
  const pending = new Map(); // clientId -> text, until ack or error
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const id = send(text);
    if (!id) {
      chat.line('Not connected: the message was not sent.', 'error');
      return;
    }
    pending.set(id, text);
    input.value = '';
    input.focus();
  });
  return {
    ack(clientId) {
      pending.delete(clientId);
    },
    // error puts a refused message back into the field.
    error(ref, message) {
      const text = pending.get(ref);
      pending.delete(ref);
      chat.line('Not sent: ' + message, 'error');
      if (text !== undefined && !input.value) input.value = text;
    },
  };
}
