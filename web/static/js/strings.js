// Every string the pages show to people, in one module, so that a
// translation is one file (English only for now). Sections: one object per
// page or part; a function where the text takes values.

// --- lobby and go-live ---

// plural picks the singular or plural word for n.
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// durationText says a duration for people: "45 s", "4 min 05 s", "2 h 10 min".
export function durationText(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

// api: the control API's failures, as the pages show them.
export const api = {
  unreachable: "Can't reach chatfleet right now. Check your connection and try again.",
  needKey: 'This page needs the API key: open Settings and enter it.',
  wrongKey: 'The API key was refused: open Settings and check it.',
  failed: (status) => `chatfleet could not do that (error ${status}). Try again in a moment.`,
  enterKey: 'Enter API key',
};

export const lobby = {
  roomsCount: (rooms, live) => `${plural(rooms, 'room', 'rooms')}, ${live} live.`,
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
  copied: 'Copied',
  // The viewer list.
  you: ' (you)',
  role: (role) => ({ producer: 'producer', moderator: 'moderator', viewer: 'viewer' })[role] || role,
  muted: 'muted',
  mutedFor: (ms) => 'muted, ' + durationText(ms) + ' left',
  page: (n, of) => `Page ${n} of ${of}`,
  mute: 'Mute', unmute: 'Unmute', kick: 'Kick', ban: 'Ban',
  actionLabel: (action, name) => `${action} ${name}`,
};
