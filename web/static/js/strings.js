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
  navConsole: 'Operator console',
  room: 'Room', // a room page's heading until the room's title is known
  // The settings form's line on where the key comes from.
  keySaved: 'Using the key saved in this browser.',
  keyConfig: 'Using the key from /config.js.',
  keyNone: 'No key yet: the local stack\'s default is DEV_API_KEY.',
  copied: 'Copied',
  guestName: (n) => 'Guest-' + n, // this browser's name before people choose one
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
  // Why a connection was lost, for connectionLost (the room's own reasons
  // come as the room says them).
  whyOffline: 'the browser is offline',
  whyTimedOut: 'timed out connecting',
  whySSEFailed: 'event stream failed',
  whyNoAnswer: 'no answer from the room',
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
  docTitle: 'chatfleet · Watch',
  title: (room) => `${room} · chatfleet`,
  by: (name) => 'by ' + name,
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

// --- lobby and go-live ---

// countOf says n with the singular or plural word: "1 viewer", "3 viewers".
const countOf = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// api: the control API's failures, as the pages show them.
export const api = {
  unreachable: "Can't reach chatfleet right now. Check your connection and try again.",
  needKey: 'This page needs the API key: open Settings and enter it.',
  wrongKey: 'The API key was refused: open Settings and check it.',
  failed: (status) => `chatfleet could not do that (error ${status}). Try again in a moment.`,
  enterKey: 'Enter API key',
  requestFailed: 'request failed', // when the server gave no reason
};

export const lobby = {
  docTitle: 'chatfleet · Live rooms',
  heading: 'Live rooms',
  intro: 'Rooms on this chatfleet. The list refreshes every few seconds.',
  goLive: 'Go live',
  rooms: 'Rooms',
  sortBy: 'Sort by',
  sortViewers: 'Most viewers',
  sortNewest: 'Newest',
  caption: 'Rooms and their viewers',
  colRoom: 'Room',
  colStatus: 'Status',
  colViewers: 'Viewers',
  // "No rooms yet. [Go live] to start one.": the link between two parts.
  emptyStart: 'No rooms yet.',
  emptyLink: 'Go live',
  emptyEnd: 'to start one.',
  more: 'Show more rooms',
  roomsCount: (rooms, live) => `${countOf(rooms, 'room', 'rooms')}, ${live} live.`,
  updated: (time) => 'Updated ' + time,
  live: 'live',
  offline: 'offline',
  status: (s) => s,
  by: (name) => 'by ' + name,
  viewers: (n) => (n === 1 ? ' viewer' : ' viewers'),
  watch: 'Watch',
  watchLabel: (title) => 'Watch ' + title,
  cannotLoad: (why) => "The rooms can't be shown right now. " + why,
};

export const live = {
  // The page's static text.
  docTitle: 'chatfleet · Go live',
  heading: 'Go live',
  intro: 'Create a room, point it at your HLS stream, and chat with your viewers.',
  roomName: 'Room name',
  roomNameHint: "In the room's address: letters, digits, '-' and '_'; up to 64 characters.",
  titleLabel: 'Title',
  titleHint: 'What viewers see in the lobby, such as "Friday night jazz". Optional.',
  ownerLabel: 'Your name',
  ownerHint: 'Shown next to your chat messages. Optional.',
  create: 'Create room',
  myRooms: 'Your rooms in this browser',
  stream: 'Stream',
  hlsUrl: 'HLS playlist URL',
  hlsPlaceholder: 'https://…/index.m3u8',
  goLive: 'Go live',
  goOffline: 'Go offline',
  demo: 'Use demo stream',
  inviteTitle: 'Invite viewers',
  watchPage: 'Watch page:',
  copy: 'Copy',
  inviteName: 'Name for a personal link',
  inviteRole: 'Role',
  roleViewer: 'Viewer',
  roleModerator: 'Moderator',
  createLink: 'Create link',
  deviceTitle: 'Open on another device',
  copyDevice: 'Copy the producer link',
  showDevice: 'Show the producer link',
  modTitle: 'Moderation',
  modReason: 'Reason (for kick and ban)',
  muteFor: 'Mute for',
  oneMinute: '1 minute',
  fiveMinutes: '5 minutes',
  oneHour: '1 hour',
  oneDay: '1 day',
  untilUnmuted: 'Until unmuted',
  banFor: 'Ban for',
  always: 'Always',
  slowLabel: 'Slow mode (seconds between messages, 0 = off)',
  setSlow: 'Set slow mode',
  closeRoom: 'Close room',
  closeConfirm: 'Yes, close it for everyone',
  closeCancel: 'Keep it open',
  chat: 'Chat',
  chatMessages: 'Chat messages',
  viewers: 'Viewers',
  previous: 'Previous',
  next: 'Next',
  // The name of a personal link made without one.
  defaultModerator: 'Moderator',
  defaultGuest: 'Guest',
  pageTitle: (name) => `${name} · Go live · chatfleet`,
  nameTaken: 'That name is taken: choose another.',
  noToken: (name) => `“${name}” was created on another device or browser. To present it here, open its producer link ("Open on another device" on the device that created it), or create a room with another name.`,
  badName: (name) => `“${name}” cannot be a room name: use letters, digits, '-' and '_' (up to 64).`,
  freeName: (name) => `There is no room “${name}” yet: create it to go live.`,
  noProducerToken: 'chatfleet did not hand out the producer key for this room. Try creating it again.',
  tokenExpired: 'Your producer access to this room has expired. Create a new room to go live again.',
  notProducer: (role) => `You joined as ${role}, not as the producer.`,
  offline: "You're offline. chatfleet reconnects as soon as your connection is back.",
  retrying: (secs) => `Can't reach chatfleet right now. Retrying in ${secs} s…`,
  retryNow: 'Retry now',
  closed: 'The room is closed. Your viewers were told.',
  closeReason: 'the producer closed the room', // sent to the viewers with the close
  gone: 'This room has ended or no longer exists.',
  createAnother: 'Create another room',
  replaced: 'This room is now open as producer on another device, tab or window.',
  useHere: 'Present from here',
  // The stream check before going live.
  checking: 'Checking the stream…',
  streamHttp: (status, text) => `The stream can't be loaded: its server answered ${status}${text ? ' ' + text : ''}. Check the playlist URL.`,
  streamTimeout: (secs) => `The stream did not answer within ${secs} s. Check that it is running and that the URL is right.`,
  streamNetwork: "The stream can't be reached from this browser: the address is wrong, the server is down, or it does not allow other sites to play it (CORS).",
  streamNotHls: 'That address does not hold an HLS playlist (it should start with #EXTM3U). Check the playlist URL.',
  streamBadUrl: 'That is not a web address. Enter the playlist URL, such as https://example.com/live/index.m3u8.',
  goLiveAnyway: 'Go live anyway',
  streamLive: 'Your stream is live.',
  streamOffline: 'Your stream is offline: viewers see that you are away.',
  // Invitations and the producer link.
  invite: (role, name, until) => `A personal ${role} link for ${name}` + (until ? `, valid until ${until}` : '') + '. Anyone with it joins as that person.',
  deviceHint: 'Open this link on your phone or another computer to present from there. It holds your producer key: anyone with it can run this room, so share it with no one.',
  // The viewer list.
  you: ' (you)',
  role: (role) => ({ producer: 'producer', moderator: 'moderator', viewer: 'viewer' })[role] || role,
  muted: 'muted',
  mutedFor: (ms) => 'muted, ' + time.countdown(ms / 1000) + ' left', // as the watch page counts down
  page: (n, of) => `Page ${n} of ${of}`,
  mute: 'Mute',
  unmute: 'Unmute',
  kick: 'Kick',
  ban: 'Ban',
  actionLabel: (action, name) => `${action} ${name}`,
};

// ---- console: the operator console (admin.html, admin.js) ----
// (Named after the page; inside this module the name shadows the global
// console, which this module does not use.)
export const console = {
  docTitle: 'chatfleet · Operator console',
  heading: 'Operator console',
  intro: 'The fleet through the admin API. The admin key stays in this tab only (session storage) and is sent as X-API-Key to /admin/v1.',
  keyLabel: 'Admin API key',
  useKey: 'Use key',
  forgetKey: 'Forget key',
  hosts: 'Hosts',
  refreshHosts: 'Refresh hosts',
  hostsCaption: 'Fleet hosts, their state and load',
  colHost: 'Host',
  colState: 'State',
  colRooms: 'Rooms',
  colConns: 'Connections',
  colCpu: 'CPU',
  colLastSeen: 'Last seen',
  colActions: 'Actions',
  hostsEmpty: 'No host is known to the load balancers.',
  rooms: 'Rooms',
  refreshRooms: 'Refresh rooms',
  roomsCaption: 'Rooms, their status and viewers',
  colRoom: 'Room',
  colStatus: 'Status',
  colViewers: 'Viewers',
  roomName: 'Room name',
  inspect: 'Inspect',
  close: 'Close…',
  onHost: 'On its host',
  messageTitle: 'Global message',
  messageLabel: 'Message to every room of every host (1 to 1000 bytes)',
  sendAll: 'Send to all rooms',
  bans: 'Bans',
  userId: 'User id',
  reason: 'Reason',
  banMinutes: 'Minutes (0: forever)',
  addBan: 'Add fleet ban',
  bansRoom: 'Room (empty: fleet bans)',
  listBans: 'List bans',
  bansCaption: 'Active bans',
  colUser: 'User',
  colUntil: 'Until',
  colBy: 'By',
  moreBans: 'Show more bans',
  words: 'Blocked words',
  wordsLabel: 'Words masked in chat, one per line or separated by spaces (letters and digits only; empty: none)',
  replaceWords: 'Replace blocked words',
  reload: 'Reload',
  defaults: 'Room defaults',
  historySize: 'History size',
  maxMessageLen: 'Max message length',
  slowMode: 'Slow mode (s)',
  idleTimeout: 'Idle timeout (s)',
  anonymous: 'Anonymous guests',
  replaceDefaults: 'Replace defaults',
  audit: 'Audit log',
  auditTarget: 'Target (room, host id, user id or *; empty: all)',
  showAudit: 'Show audit log',
  auditCaption: 'Admin actions, newest first',
  colWhen: 'When',
  colActor: 'Actor',
  colAction: 'Action',
  colTarget: 'Target',
  colDetail: 'Detail',
  moreAudit: 'Show older entries',
  confirmReason: 'Reason (shown to the room, at most 200 bytes)',
  cancel: 'Cancel',
  // What admin.js says.
  none: '—', // a value the API did not give
  percent: (p) => p + ' %',
  unknownState: 'unknown',
  keyRefused: (status, msg) => `the admin key was refused (${status}): ${msg}`,
  callFailed: (call, msg) => `${call}: ${msg}`,
  // failures: " Not told: host-3: host is down; down: host-4, host-5."
  hostFailed: (host, error) => `${host || 'hosts'}: ${error}`,
  hostsDown: (ids) => 'down: ' + ids.join(', '),
  notTold: (parts) => ' Not told: ' + parts.join('; ') + '.',
  stats: 'Stats',
  statsOf: (id) => `Stats of ${id}`,
  drain: 'Drain',
  resume: 'Resume',
  restart: 'Restart',
  shutDown: 'Shut down…',
  actionOn: (label, id) => `${label} ${id}`,
  shutDownHost: (id) => `Shut down ${id}`,
  hostAnswered: (id, action, status, state, message) =>
    `${id}: ${action} answered ${status}${state ? ', state ' + state : ''}${message ? ': ' + message : ''}.`,
  hostsNotRefreshed: (said, why) => said + ' The host list could not be refreshed: ' + why,
  shutDownTitle: (id) => `Shut down ${id}?`,
  shutDownText: 'The host drains its rooms and its daemon exits; the API does not start it again.',
  shutDownCancelled: (id) => `${id}: shutdown cancelled.`,
  inspectRoom: (name) => 'Inspect ' + name,
  bansOf: (name) => 'Bans of ' + name,
  closeRoom: (name) => 'Close ' + name,
  roomsNote: (n) => `${n} open ${plural(n, 'room', 'rooms')} (newest first, at most 100).`,
  noOpenRoom: 'No open room.',
  listingNeedsKey: (why) => 'The listing needs the room API key (' + why + '): inspect a room by its name below.',
  roomTitle: (name) => 'Room ' + name,
  hostTerm: 'host',
  notOpen: 'the room is not open, or its host cannot say',
  closeTitle: (name) => `Close ${name}?`,
  closeText: 'Everyone in the room is disconnected and sees the reason.',
  roomClosed: (name, said, status) => `${name}: ${said || 'closed'} (${status}).`,
  removeBan: (user, room) => (room ? `Remove ${user}'s ban from ${room}` : `Remove ${user}'s fleet ban`),
  forever: 'forever',
  remove: 'Remove',
  bansCount: (n, room, more) => `${n} ${plural(n, 'ban', 'bans')}${room ? ' in room ' + room : ' of the fleet'}${more ? ' so far' : ''}.`,
  banAdded: (user, status, hosts, rooms, notTold) => `Fleet ban of ${user} added (${status}): told ${hosts} hosts, ${rooms} rooms.${notTold}`,
  bansRemoved: (n, user, room, status, hosts, rooms, notTold) =>
    `${n} ${plural(n, 'ban', 'bans')} of ${user} removed${room ? ' from ' + room : ''} (${status}): told ${hosts} hosts, ${rooms} rooms.${notTold}`,
  wordsCount: (n) => `${n} ${plural(n, 'word', 'words')} stored.`,
  wordsReplaced: (status, n, hosts, notTold) => `Blocked words replaced (${status}): ${n} words, told ${hosts} hosts.${notTold}`,
  defaultsReplaced: (status, hosts, notTold) => `Room defaults replaced (${status}): told ${hosts} hosts.${notTold}`,
  auditCount: (n, target, more) => `${n} ${plural(n, 'entry', 'entries')}${target ? ' for ' + target : ''}${more ? ' so far' : ''}.`,
  keyHeld: 'A key is held for this tab; it is forgotten when the tab closes or on "Forget key".',
  keyNeeded: 'Enter the admin API key (the local stack\'s is DEV_ADMIN_API_KEY).',
  connected: 'Connected to the admin API.',
  typeKey: 'Type the admin key first.',
  keyForgotten: 'The admin key is forgotten.',
  messageSent: (status, rooms, hosts, notTold) => `Message sent (${status}) to ${rooms} rooms on ${hosts} hosts.${notTold}`,
};

// SECTIONS names the sections lookup and applyStrings find keys in.
const SECTIONS = { common, chat, watch, api, lobby, live, console };

// lookup returns the string of a key such as "chat.send", or undefined.
export function lookup(key) {
  const [section, name] = String(key).split('.');
  const v = SECTIONS[section] && SECTIONS[section][name];
  return typeof v === 'string' ? v : undefined;
}

// applyStrings sets the static text of a page from this module: the text
// of elements with data-s="section.key", the placeholder of those with
// data-s-placeholder, the aria-label of those with data-s-label, the
// title of those with data-s-title. The page's HTML keeps the English
// text, so it reads the same before this runs or without script.
export function applyStrings(root = document) {
  for (const [attr, set] of [
    ['data-s', (el, v) => (el.textContent = v)],
    ['data-s-placeholder', (el, v) => el.setAttribute('placeholder', v)],
    ['data-s-label', (el, v) => el.setAttribute('aria-label', v)],
    ['data-s-title', (el, v) => el.setAttribute('title', v)],
  ]) {
    for (const el of root.querySelectorAll(`[${attr}]`)) {
      const v = lookup(el.getAttribute(attr));
      if (v !== undefined) set(el, v);
    }
  }
}

