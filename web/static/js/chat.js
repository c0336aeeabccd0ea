// ChatView renders a room's chat and events into a chat log, and
// SendForm its send form. The log is a scrolling element with role="log"
// holding an <ol> of messages (or, in older markup, an <ol> that scrolls
// itself). Moderators get one actions menu per message. Every string
// comes from strings.js; text from the network is set as text, never as
// HTML.

import { h, timeOf } from './ui.js';
import { chat as S, common as C, time as T } from './strings.js';

const RANK = { producer: 2, moderator: 1, viewer: 0 };

export function rank(role) {
  return RANK[role] || 0;
}

// GENERIC_REASONS are reasons that only repeat what the sentence that
// shows them says ("kicked by a moderator", "banned", "you are banned").
const GENERIC_REASONS = /^(you are )?(kicked|banned|removed)( from this room)?( by a moderator)?\.?$/i;

// plainReason returns a moderator's reason worth showing: '' for none or
// a generic one, without a "you are banned:" prefix or a final period.
export function plainReason(reason) {
  const r = String(reason || '').replace(/^you are (banned|kicked)( from this room)?:? ?/i, '').trim();
  return !r || GENERIC_REASONS.test(r) ? '' : r.replace(/\.$/, '');
}

function who(u) {
  return (u && (u.name || u.userId)) || C.someone;
}

// LINK finds http(s) addresses in chat text; linkParts checks each.
const LINK = /\bhttps?:\/\/[^\s<>"]+/gi;

// linkParts splits chat text into parts: {text} for plain text and
// {text, href} for a link. Only absolute http and https URLs become links;
// punctuation that ends a sentence is left out of them, and a closing
// parenthesis too unless the address opened one.
export function linkParts(text) {
  const parts = [];
  let last = 0;
  for (const m of String(text).matchAll(LINK)) {
    let url = m[0];
    let trim = url.match(/[.,;:!?'*]+$/);
    if (trim) url = url.slice(0, -trim[0].length);
    if (url.endsWith(')') && !url.includes('(')) url = url.slice(0, -1);
    let href = '';
    try {
      const u = new URL(url);
      if ((u.protocol === 'http:' || u.protocol === 'https:') && u.hostname) href = u.href;
    } catch {
      href = '';
    }
    if (!href) continue;
    if (m.index > last) parts.push({ text: text.slice(last, m.index) });
    parts.push({ text: url, href });
    last = m.index + url.length;
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return parts;
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// mentionPattern matches "@name" (any case) as a whole word, or null
// without a name.
export function mentionPattern(name) {
  if (!name) return null;
  return new RegExp(`(^|[^\\p{L}\\p{N}_@])(@${escapeRegExp(name)})(?![\\p{L}\\p{N}_-])`, 'giu');
}

// mentions reports whether text mentions name as "@name".
export function mentions(text, name) {
  const re = mentionPattern(name);
  return !!re && re.test(text);
}

// textNodes renders chat text: links as <a> (opened in a new tab, without
// the page as opener or referrer, and not endorsed), "@you" as <mark>.
function textNodes(text, you) {
  const re = mentionPattern(you);
  const out = [];
  for (const p of linkParts(text)) {
    if (p.href) {
      out.push(h('a', { href: p.href, target: '_blank', rel: 'noopener noreferrer nofollow' }, p.text));
      continue;
    }
    if (!re) {
      out.push(p.text);
      continue;
    }
    let last = 0;
    for (const m of p.text.matchAll(re)) {
      const at = m.index + m[1].length;
      if (at > last) out.push(p.text.slice(last, at));
      out.push(h('mark', { class: 'mention' }, m[2]));
      last = at + m[2].length;
    }
    if (last < p.text.length) out.push(p.text.slice(last));
  }
  return out;
}

// presenceUpdate folds a join or leave into a presence line's state
// {joined, left} (lists of {id, name}, in order) and returns the new
// state. Someone who leaves after joining in the same line (a short visit)
// and someone who comes back after leaving (a reconnect) cancel out.
export function presenceUpdate(state, type, user) {
  const joined = state.joined.filter((u) => u.id !== user.id);
  const left = state.left.filter((u) => u.id !== user.id);
  if (type === 'join') {
    if (left.length === state.left.length) joined.push(user);
  } else if (joined.length === state.joined.length) {
    left.push(user);
  }
  return { joined, left };
}

// presenceText says a presence line: "Ann, Bob joined · Cid left", or ''.
export function presenceText(state) {
  const parts = [];
  if (state.joined.length) parts.push(S.joined(state.joined.map((u) => u.name)));
  if (state.left.length) parts.push(S.left(state.left.map((u) => u.name)));
  return parts.join(S.presenceSep);
}

// Menu is the one open message actions menu of the page: arrow keys move,
// Escape or Tab close it, a click outside closes it.
let openMenu = null;

function closeMenu(focusButton) {
  const m = openMenu;
  if (!m) return;
  openMenu = null;
  m.menu.remove();
  m.button.setAttribute('aria-expanded', 'false');
  document.removeEventListener('pointerdown', m.outside, true);
  if (focusButton && m.button.isConnected) m.button.focus();
}

function showMenu(button, items) {
  const wasOpen = openMenu && openMenu.button === button;
  closeMenu(false);
  if (wasOpen) return;
  const buttons = items.map((it) => h('button', {
    type: 'button', role: 'menuitem', tabindex: '-1', class: it.danger ? 'danger' : '', dataset: { action: it.action },
    onclick: () => {
      closeMenu(true);
      it.run();
    },
  }, it.label));
  const menu = h('div', { role: 'menu', class: 'msg-menu', 'aria-label': S.actionsMenu }, buttons);
  menu.addEventListener('keydown', (ev) => {
    const i = buttons.indexOf(document.activeElement);
    let next = -1;
    switch (ev.key) {
      case 'ArrowDown': next = (i + 1) % buttons.length; break;
      case 'ArrowUp': next = (i - 1 + buttons.length) % buttons.length; break;
      case 'Home': next = 0; break;
      case 'End': next = buttons.length - 1; break;
      case 'Escape': ev.preventDefault(); closeMenu(true); return;
      case 'Tab': closeMenu(false); return;
      default: return;
    }
    ev.preventDefault();
    buttons[next].focus();
  });
  const outside = (ev) => {
    if (!menu.contains(ev.target) && ev.target !== button) closeMenu(false);
  };
  button.after(menu);
  // Near the bottom of the log the menu opens upwards, so that it is not
  // cut off by the log's edge.
  const log = button.closest('.chat-log');
  if (log) {
    const r = menu.getBoundingClientRect();
    const l = log.getBoundingClientRect();
    if (r.bottom > l.bottom && r.top - l.top > r.height) menu.classList.add('up');
  }
  button.setAttribute('aria-expanded', 'true');
  document.addEventListener('pointerdown', outside, true);
  openMenu = { button, menu, outside };
  buttons[0].focus();
}

export class ChatView {
  // el is the chat log: an element with role="log" that scrolls and holds
  // an <ol> (made if missing), or an <ol> that scrolls itself.
  // opts.onModerate(action, target) is called for moderator actions:
  // action 'delete' with {seq}, or 'mute'/'kick'/'ban' with {userId, name}.
  // opts.more: the "more messages below" button (default: the
  // .chat-more next to el, if any).
  constructor(el, opts = {}) {
    this.scroller = el;
    this.list = el.tagName === 'OL' || el.tagName === 'UL' ? el : el.querySelector('ol, ul') || el.appendChild(h('ol', { class: 'chat-list' }));
    this.opts = opts;
    this.you = null;
    this.bySeq = new Map();
    this.presence = null; // the last presence line: {li, state}
    this.more = opts.more || (el.parentElement && el.parentElement.querySelector('.chat-more')) || null;
    if (this.more) {
      this.more.addEventListener('click', () => this.scrollToEnd());
    }
    // stick: the reader is at the latest message, and stays there when
    // the log gets shorter (the page's header grew, a phone's keyboard
    // opened) or a line grows.
    this.stick = true;
    el.addEventListener('scroll', () => {
      this.stick = this._atBottom();
      if (this.stick) this._showMore(false);
    }, { passive: true });
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => {
        if (this.stick) this.scroller.scrollTop = this.scroller.scrollHeight;
      }).observe(el);
    }
  }

  setYou(you) {
    this.you = you;
  }

  clear() {
    closeMenu(false);
    this.list.replaceChildren();
    this.bySeq.clear();
    this.presence = null;
    this._showMore(false);
  }

  _atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  }

  _showMore(on) {
    if (this.more) this.more.hidden = !on;
  }

  // scrollToEnd shows the latest messages.
  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this._showMore(false);
  }

  _append(li) {
    const atBottom = this._atBottom();
    this.list.append(li);
    while (this.list.children.length > 500) {
      const first = this.list.firstElementChild;
      if (first.dataset.seq) this.bySeq.delete(Number(first.dataset.seq));
      first.remove();
    }
    if (atBottom) this.scrollToEnd();
    else this._showMore(true);
  }

  // line adds a local line (not from the room): kind 'notice' or 'error'.
  line(text, kind = 'notice') {
    this._append(h('li', { class: kind + '-line' }, text));
  }

  _event(text, msg) {
    const li = h('li', { class: 'event', dataset: { type: msg.type } }, text, ' ', timeOf(msg.ts));
    if (msg.seq) li.dataset.seq = msg.seq;
    this._append(li);
  }

  // _presence folds a join or leave into the last line when that is a
  // presence line, else starts one. Your own joins and leaves (around a
  // reconnect) are not shown.
  _presence(msg) {
    if (this.you && msg.userId === this.you.userId) return false;
    const user = { id: msg.userId || '', name: who(msg) };
    let p = this.presence;
    const fresh = !p || this.list.lastElementChild !== p.li;
    if (fresh) p = this.presence = { li: h('li', { class: 'event presence', dataset: { type: 'presence' } }), state: { joined: [], left: [] } };
    p.state = presenceUpdate(p.state, msg.type, user);
    const text = presenceText(p.state);
    if (!text) {
      p.li.remove();
      this.presence = null;
      return true;
    }
    const atBottom = this._atBottom();
    p.li.replaceChildren(text, ' ', timeOf(msg.ts));
    if (fresh) this._append(p.li);
    else if (atBottom) this.scrollToEnd();
    return true;
  }

  _canModerate(target) {
    const me = this.you;
    return !!(me && rank(me.role) >= 1 && target && target.userId !== me.userId && rank(target.role) < rank(me.role));
  }

  // _actions returns the items of a message's actions menu, if any.
  _actions(msg, from, mine) {
    const me = this.you;
    if (!me || rank(me.role) < 1 || !(mine || this._canModerate(from))) return [];
    const act = (action, target) => () => this.opts.onModerate && this.opts.onModerate(action, target);
    const items = [{ action: 'delete', label: S.actDelete, run: act('delete', { seq: msg.seq }) }];
    if (this._canModerate(from)) {
      const name = who(from);
      const target = { userId: from.userId, name };
      items.push(
        { action: 'mute', label: S.actMute(name), run: act('mute', target) },
        { action: 'kick', label: S.actKick(name), run: act('kick', target) },
        { action: 'ban', label: S.actBan(name), run: act('ban', target), danger: true });
    }
    return items;
  }

  _chat(msg) {
    if (this.bySeq.has(msg.seq)) return;
    const from = msg.from || {};
    const mine = !!(this.you && from.userId === this.you.userId);
    const myName = this.you && this.you.name;
    const mentioned = !mine && mentions(msg.text || '', myName);
    const li = h('li', { class: 'chat' + (mine ? ' mine' : '') + (mentioned ? ' mentioned' : ''), dataset: { seq: msg.seq, user: from.userId || '' } },
      h('span', { class: 'who' }, who(from)),
      from.role && from.role !== 'viewer' ? [h('span', { class: 'badge role-' + from.role }, from.role), ' '] : null,
      h('span', { class: 'text' }, textNodes(msg.text || '', mine ? '' : myName)),
      mentioned ? h('span', { class: 'visually-hidden' }, ` (${S.mention})`) : null,
      ' ', timeOf(msg.ts));
    const items = this._actions(msg, from, mine);
    if (items.length) {
      const button = h('button', {
        type: 'button', class: 'msg-actions', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-label': S.actionsFor(who(from)),
      }, '⋯');
      button.addEventListener('click', () => showMenu(button, items));
      li.append(button);
    }
    this.bySeq.set(msg.seq, li);
    this._append(li);
  }

  _deleted(msg) {
    const li = this.bySeq.get(msg.target);
    if (!li) return;
    if (openMenu && li.contains(openMenu.button)) closeMenu(false);
    li.classList.add('deleted');
    const t = li.querySelector('.text');
    if (t) t.textContent = msg.by ? S.deletedBy(who(msg.by)) : S.deleted;
    const b = li.querySelector('.msg-actions');
    if (b) {
      if (document.activeElement === b) this.scroller.focus(); // not lost to the page
      b.remove();
    }
  }

  // add renders one server message; it returns whether it was shown.
  add(msg) {
    const by = msg.by ? who(msg.by) : '';
    switch (msg.type) {
      case 'chat':
        this._chat(msg);
        return true;
      case 'deleted':
        this._deleted(msg);
        return true;
      case 'join':
      case 'leave':
        return this._presence(msg);
      case 'muted':
        this._event(S.muted(who(msg), by, msg.seconds ? T.duration(msg.seconds) : ''), msg);
        return true;
      case 'unmuted':
        this._event(S.unmuted(who(msg), by), msg);
        return true;
      case 'kicked':
        this._event(S.kicked(who(msg), by, plainReason(msg.reason)), msg);
        return true;
      case 'banned':
        this._event(S.banned(who(msg), by, plainReason(msg.reason)), msg);
        return true;
      case 'stream':
        this._event(msg.live ? S.streamLive : msg.reason ? S.streamOfflineWhy(msg.reason) : S.streamOffline, msg);
        return true;
      case 'slowmode':
        this._event(msg.seconds ? S.slowOn(msg.seconds, by) : S.slowOff(by), msg);
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
      return S.announcement(msg.text || '');
    case 'closing':
      return S.closing(msg.text);
    case 'drain':
      return S.drain(msg.text);
    case 'kicked':
    case 'banned':
      return msg.text || S.removed;
  }
  return msg.text || '';
}

// DEFAULT_MAX_LEN is the room's default MaxMessageLen (docs/protocol.md):
// the room does not tell its clients its own, so the form starts with the
// default and learns the room's from a too_large refusal.
export const DEFAULT_MAX_LEN = 500;

// waitSeconds reads the seconds left from a slow_mode refusal ("slow mode:
// one message every 10 seconds; wait 7 more"), or 0.
export function waitSeconds(message) {
  const m = /wait (\d+)/.exec(message || '');
  return m ? Number(m[1]) : 0;
}

// SendForm is a chat send form: Enter sends; what the room refuses comes
// back with a reason people can act on, in a status line under the form;
// slow mode counts down on the Send button, a mute disables the input with
// its remaining time.
export class SendForm {
  // send(text) returns a clientId, or '' when not connected.
  constructor(form, input, send, chat) {
    this.form = form;
    this.input = input;
    this.button = form.querySelector('button[type="submit"]');
    this.chat = chat;
    this.pending = new Map(); // clientId -> text, until ack or error
    this.connected = false;
    this.cooldownUntil = 0; // ms: slow mode
    this.mutedUntil = 0; // ms; Infinity: until unmuted
    this._tick = null;
    this.status = form.parentElement.querySelector('.chat-feedback');
    if (!this.status) {
      this.status = h('p', { class: 'chat-feedback hint', role: 'status' });
      form.after(this.status);
    }
    if (!this.status.id) this.status.id = (form.id || 'chat-form') + '-feedback';
    input.setAttribute('aria-describedby', this.status.id);
    this.setMaxLength(DEFAULT_MAX_LEN);
    input.addEventListener('input', () => this._count());
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this._submit(send);
    });
  }

  setMaxLength(n) {
    this.maxLength = n;
    this.input.maxLength = n;
  }

  // say shows feedback under the form ('' clears it); kind 'error' marks it.
  say(text, kind = '') {
    this.status.textContent = text;
    this.status.className = 'chat-feedback hint' + (kind ? ' ' + kind : '');
  }

  _count() {
    const n = [...this.input.value].length;
    this.input.removeAttribute('aria-invalid');
    if (n > this.maxLength) this.say(S.tooLong(this.maxLength), 'error');
    else if (n >= this.maxLength * 0.8) this.say(S.counter(n, this.maxLength));
    else if (!this._refusal()) this.say('');
  }

  // _refusal says why a message cannot be sent now, or ''.
  _refusal() {
    const now = Date.now();
    if (this.mutedUntil > now) return this.mutedUntil === Infinity ? S.youAreMuted : S.mutedFor(T.duration((this.mutedUntil - now) / 1000));
    if (this.cooldownUntil > now) return S.slowMode(Math.ceil((this.cooldownUntil - now) / 1000));
    return '';
  }

  _submit(send) {
    const text = this.input.value;
    if (!text.trim()) {
      this.input.setAttribute('aria-invalid', 'true');
      this.say(S.empty, 'error');
      this.input.focus();
      return;
    }
    if ([...text].length > this.maxLength) {
      this.input.setAttribute('aria-invalid', 'true');
      this.say(S.tooLong(this.maxLength), 'error');
      return;
    }
    const why = this._refusal();
    if (why) {
      this.say(why, 'error');
      return;
    }
    const id = send(text.trim());
    if (!id) {
      this.say(S.notConnected, 'error');
      return;
    }
    this.pending.set(id, text.trim());
    this.input.value = '';
    this.say('');
    this.input.focus();
  }

  setConnected(on) {
    this.connected = on;
    this._render();
  }

  // cooldown starts slow mode's wait before the next message.
  cooldown(secs) {
    this.cooldownUntil = secs > 0 ? Date.now() + secs * 1000 : 0;
    if (!this.cooldownUntil && this.status.classList.contains('error') && !(this.mutedUntil > Date.now())) this.say('');
    this._render();
  }

  // mute disables the input until untilMs (Infinity: until unmuted; 0:
  // not muted).
  mute(untilMs) {
    this.mutedUntil = untilMs;
    if (untilMs > Date.now()) this.say(this._refusal(), 'error');
    else this.say('');
    this._render();
  }

  ack(clientId) {
    this.pending.delete(clientId);
  }

  // error puts a refused message back into the field and says why.
  error(ref, code, message) {
    const text = this.pending.get(ref);
    this.pending.delete(ref);
    if (text !== undefined && !this.input.value) this.input.value = text;
    switch (code) {
      case 'slow_mode':
        this.cooldown(waitSeconds(message) || 1);
        this.say(this._refusal(), 'error');
        return;
      case 'muted':
        // Without the mute's end (it was made before this page joined) the
        // input stays enabled: a mute that ends sends no message.
        this.say(this.mutedUntil > Date.now() ? this._refusal() : S.youAreMuted, 'error');
        return;
      case 'too_large': {
        const m = /longer than (\d+)/.exec(message || '');
        if (m) this.setMaxLength(Number(m[1]));
        this.say(S.tooLong(this.maxLength), 'error');
        return;
      }
      case 'rate_limited':
        this.say(S.rateLimited, 'error');
        return;
      case 'forbidden':
        this.say(S.forbidden + (message ? ' (' + message + ')' : ''), 'error');
        return;
    }
    this.say(S.notSent(message || code), 'error');
  }

  // _render sets the input and the button from the connection, the mute
  // and slow mode, and ticks every second while a countdown runs.
  _render() {
    clearTimeout(this._tick);
    this._tick = null;
    const now = Date.now();
    const muted = this.mutedUntil > now;
    const cooling = this.cooldownUntil > now;
    if (!muted && this.mutedUntil) {
      this.mutedUntil = 0;
      if (this.status.classList.contains('error')) this.say('');
    }
    if (!cooling && this.cooldownUntil) {
      this.cooldownUntil = 0;
      if (this.status.classList.contains('error')) this.say('');
    }
    this.input.disabled = !this.connected || muted;
    // While slow mode holds, the button stays enabled (only marked), so
    // that Enter still submits and hears why not.
    this.button.disabled = !this.connected || muted;
    this.button.setAttribute('aria-disabled', String(cooling));
    this.button.classList.toggle('waiting', cooling);
    const left = muted && this.mutedUntil !== Infinity ? T.countdown((this.mutedUntil - now) / 1000) : '';
    this.input.placeholder = muted ? S.mutedInput(left) : S.placeholder;
    this.button.textContent = cooling ? S.sendWait(T.countdown((this.cooldownUntil - now) / 1000)) : muted && left ? left : S.send;
    this.form.dataset.state = muted ? 'muted' : cooling ? 'slow' : '';
    if ((muted && this.mutedUntil !== Infinity) || cooling) this._tick = setTimeout(() => this._render(), 1000 - (now % 1000) + 5);
  }
}

// bindSendForm wires a chat form (see SendForm).
export function bindSendForm(form, input, send, chat) {
  return new SendForm(form, input, send, chat);
}
