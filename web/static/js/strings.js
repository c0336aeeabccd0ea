// Every string the pages show to people, in one module, so that a
// translation is one file (English only for now). Organised by page or
// section; each section is one exported object: plain strings, and small
// functions for the parameterised ones. Code never builds sentences from
// pieces of its own: it calls the function here that says the whole thing.

// plural picks the singular or the plural form by n.
function plural(n, one, many) {
  return n === 1 ? one : many;
}

// listNames says a list of names compactly: "Ann", "Ann and Bob",
// "Ann, Bob and Cid", "Ann, Bob, Cid and 2 others".
function listNames(names) {
  if (names.length <= 1) return names.join('');
  if (names.length <= 3) return names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1];
  const rest = names.length - 3;
  return names.slice(0, 3).join(', ') + ` and ${rest} ${plural(rest, 'other', 'others')}`;
}

// ---- common: what every room page says ----
export const common = {
  // The header every page has.
  skipLink: 'Skip to content',
  navLabel: 'Main',
  navLobby: 'Lobby',
  navGoLive: 'Go live',
  settings: 'Settings',
  apiKeyLabel: 'Control API key',
  saveKey: 'Save key',
  clearKey: 'Clear',
  someone: 'someone',
  live: 'live',
  offline: 'offline',
  people: (n) => `${n} ${plural(n, 'person', 'people')} here`,
  connecting: 'Connecting…',
  connected: (sse) => `Connected (${sse ? 'SSE fallback' : 'WebSocket'})`,
  reconnectingVia: (sse) => `Reconnecting (${sse ? 'SSE fallback' : 'WebSocket'})…`,
  disconnected: 'Disconnected',
  reconnected: 'Reconnected.',
  retryNow: 'Retry now',
  trySSE: 'WebSocket could not connect; trying the SSE fallback…',
  connectionLost: (everOpen, why, secs, attempt) =>
    `${everOpen ? 'Connection lost' : 'Cannot connect to the room'}${why ? ` (${why})` : ''}. Reconnecting in ${secs} s (attempt ${attempt})…`,
  missed: 'Some messages were missed while you were disconnected: the room keeps only its latest messages.',
  recovered: (n) => `Reconnected: ${n} missed ${plural(n, 'event', 'events')} recovered.`,
  notConnected: 'Not connected: try again when the connection is back.',
  // The ends of a session (docs/web.md, "Final ends"); reason is what the
  // room gave, already stripped of what these sentences say.
  ended: {
    banned: 'You were banned from this room.',
    kicked: 'A moderator removed you from this room. You may rejoin.',
    closed: 'The room has ended.',
    replaced: 'This room was opened in another tab or window.',
    notEntitled: 'Your access to this paid room was refused.',
    gone: 'This room does not exist or has ended.',
    error: 'The connection was closed.',
  },
  reason: (r) => `Reason: ${r}.`,
  playerBanned: 'You were banned from this room.',
  rejoin: 'Rejoin',
  // The player.
  streamOffline: 'The stream is offline.',
  streamOfflineWhy: (why) => `The stream is offline: ${why}.`,
  lastLive: (time) => `Last live at ${time}`,
  streamLoading: 'Loading the stream…',
  streamRetrying: (attempt, max) => `The stream cannot be loaded; trying again (${attempt} of ${max})…`,
  streamUnavailable: 'Stream unavailable',
  streamUnavailableHint: 'The page will try again when the stream goes live again.',
  httpStatus: (code, text) => `the stream server answered HTTP ${code}${text ? ' ' + text : ''}`,
  timedOut: (secs) => `the stream server did not answer within ${secs} s`,
  unreachable: 'the stream server cannot be reached (network error, or it does not allow this site)',
  notPlaylist: 'the address is not an HLS playlist',
  mediaError: 'the video cannot be decoded',
  cannotPlay: 'This browser cannot play HLS streams.',
  cannotPlayHint: 'The web client was built without hls.js (make web).',
  cannotPlayNative: 'The stream cannot be played.',
};

// ---- chat: the chat log, the send form and moderation ----
export const chat = {
  messageLabel: 'Message',
  placeholder: 'Say something…',
  send: 'Send',
  sendWait: (countdown) => `Wait ${countdown}`,
  moreBelow: 'More messages below ↓',
  // Presence: "Ann, Bob joined · Cid left".
  joined: (names) => `${listNames(names)} joined`,
  left: (names) => `${listNames(names)} left`,
  presenceSep: ' · ',
  deleted: 'message deleted',
  deletedBy: (name) => `message deleted by ${name}`,
  muted: (name, by, duration) => `${name} was muted${by ? ' by ' + by : ''}${duration ? ' for ' + duration : ''}`,
  unmuted: (name, by) => `${name} was unmuted${by ? ' by ' + by : ''}`,
  kicked: (name, by, reason) => `${name} was removed${by ? ' by ' + by : ''}${reason ? ` (${reason})` : ''}`,
  banned: (name, by, reason) => `${name} was banned${by ? ' by ' + by : ''}${reason ? ` (${reason})` : ''}`,
  streamLive: 'The stream is live',
  streamOffline: 'The stream went offline',
  streamOfflineWhy: (why) => `The stream went offline: ${why}`,
  slowOn: (secs, by) => `Slow mode on: one message every ${secs} s${by ? ' (set by ' + by + ')' : ''}`,
  slowOff: (by) => `Slow mode off${by ? ' (set by ' + by + ')' : ''}`,
  announcement: (text) => `Announcement: ${text}`,
  closing: (text) => `The room is closing${text ? ': ' + text : ''}`,
  drain: (text) => `The server is restarting; you will be reconnected${text ? ' (' + text + ')' : ''}`,
  removed: 'You were removed from the room',
  // Refused sends.
  notSent: (why) => `Not sent: ${why}`,
  notConnected: 'Not connected: the message was not sent.',
  empty: 'Write something first: a message cannot be only spaces.',
  tooLong: (max) => `A message can have at most ${max} characters.`,
  counter: (n, max) => `${n} / ${max}`,
  slowMode: (secs) => `Slow mode: you can send your next message in ${secs} s.`,
  youAreMuted: 'You are muted: you cannot send messages.',
  mutedFor: (left) => `You are muted for ${left}.`,
  mutedInput: (left) => (left ? `Muted: ${left} left` : 'You are muted'),
  rateLimited: 'You are sending too fast: wait a moment.',
  forbidden: 'You cannot chat in this room.',
  // Moderation menu.
  actionsFor: (name) => `Actions for the message from ${name}`,
  actionsMenu: 'Message actions',
  actDelete: 'Delete message',
  actMute: (name) => `Mute ${name}`,
  actKick: (name) => `Remove ${name}`,
  actBan: (name) => `Ban ${name}`,
  you: ' (you)',
  mention: 'mentions you',
};

// ---- watch: the watch page ----
export const watch = {
  title: (room) => `${room} · chatfleet`,
  pickTitle: 'Watch a room',
  roomName: 'Room name',
  watchButton: 'Watch',
  pickLobby: 'Or pick one in the lobby',
  missingTitle: 'Room not found',
  video: 'Video',
  chat: 'Chat',
  nameLabel: 'Your name in the chat',
  changeName: 'Change name',
  youAre: (name, role) => `You are in the chat as ${name}${role && role !== 'viewer' ? ` (${role})` : ''}.`,
  nameMenu: 'Your name',
  badName: (name) => `“${name}” is not a room name: room names are 1 to 64 letters, digits, '-' or '_', starting with a letter or digit.`,
  noRoom: (name) => `There is no room called “${name}”, or it has ended.`,
  toLobby: 'Find a room in the lobby',
  apiRefused: (why) => `The server refused the request: ${why}`,
  enterKey: 'Enter API key',
  noToken: 'the server gave no access to the room',
};

// Durations, for countdowns and mutes.
export const time = {
  // countdown says a number of seconds for a countdown: "9 s", "1:05", "2:00:00".
  countdown(secs) {
    const s = Math.max(0, Math.ceil(secs));
    if (s < 60) return `${s} s`;
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  },
  // duration says a length of time in words: "30 s", "5 min", "2 h", "3 days".
  duration(secs) {
    const s = Math.round(secs);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 86400) return `${Math.round(s / 3600)} h`;
    const d = Math.round(s / 86400);
    return `${d} ${plural(d, 'day', 'days')}`;
  },
};

// SECTIONS names the sections for applyStrings.
const SECTIONS = { common, chat, watch };

// lookup returns the string of a key such as "chat.send", or undefined.
export function lookup(key) {
  const [section, name] = String(key).split('.');
  const v = SECTIONS[section] && SECTIONS[section][name];
  return typeof v === 'string' ? v : undefined;
}

// applyStrings sets the static text of a page from this module: the text
// of elements with data-s="section.key", the placeholder of those with
// data-s-placeholder, the aria-label of those with data-s-label. The
// page's HTML keeps the English text, so it reads the same without script.
export function applyStrings(root = document) {
  for (const [attr, set] of [
    ['data-s', (el, v) => (el.textContent = v)],
    ['data-s-placeholder', (el, v) => el.setAttribute('placeholder', v)],
    ['data-s-label', (el, v) => el.setAttribute('aria-label', v)],
  ]) {
    for (const el of root.querySelectorAll(`[${attr}]`)) {
      const v = lookup(el.getAttribute(attr));
      if (v !== undefined) set(el, v);
    }
  }
}
