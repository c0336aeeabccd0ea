// Unit tests of the chat's pure parts (web/static/js/chat.js, player.js,
// roompage.js), run with `node --test` by TestClientJS (web/web_test.go);
// the strings module's own tests are in strings.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';

globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

const { linkParts, mentions, presenceUpdate, presenceText, waitSeconds, DEFAULT_MAX_LEN } = await import('../static/js/chat.js');
const { probe } = await import('../static/js/player.js');
const { ROOM_NAME, endText } = await import('../static/js/roompage.js');
const strings = await import('../static/js/strings.js');

test('linkParts makes links of http and https addresses only', () => {
  assert.deepEqual(linkParts('see https://example.com/a?b=1#c, then'), [
    { text: 'see ' },
    { text: 'https://example.com/a?b=1#c', href: 'https://example.com/a?b=1#c' },
    { text: ', then' },
  ]);
  assert.deepEqual(linkParts('(http://x.org/path).'), [
    { text: '(' },
    { text: 'http://x.org/path', href: 'http://x.org/path' },
    { text: ').' },
  ]);
  assert.deepEqual(linkParts('wiki http://en.wikipedia.org/wiki/Foo_(bar) ok')[1],
    { text: 'http://en.wikipedia.org/wiki/Foo_(bar)', href: 'http://en.wikipedia.org/wiki/Foo_(bar)' });
  for (const text of ['javascript:alert(1)', 'data:text/html,<b>x</b>', 'ftp://example.com/x', 'mailto:a@b.c', 'https://', 'no links here']) {
    assert.ok(linkParts(text).every((p) => !p.href), `a link in ${text}`);
    assert.equal(linkParts(text).map((p) => p.text).join(''), text);
  }
  // A quote or an angle bracket ends an address: no attribute can be broken out of.
  const parts = linkParts('<a href="https://evil.example/"onmouseover=x>');
  assert.deepEqual(parts.filter((p) => p.href).map((p) => p.href), ['https://evil.example/']);
  assert.equal(parts.map((p) => p.text).join(''), '<a href="https://evil.example/"onmouseover=x>');
  assert.deepEqual(linkParts(''), []);
});

test('mentions finds @name as a whole word, in any case', () => {
  assert.ok(mentions('hi @Ann!', 'Ann'));
  assert.ok(mentions('@ann how are you', 'Ann'));
  assert.ok(mentions('ping @Guest-1234', 'Guest-1234'));
  assert.ok(!mentions('hi @Anna', 'Ann'));
  assert.ok(!mentions('hi Ann', 'Ann'));
  assert.ok(!mentions('mail ann@Ann.com', 'Ann'));
  assert.ok(!mentions('@Guest-12345', 'Guest-1234'));
  assert.ok(mentions('hey @A.B', 'A.B'), 'a name with a regexp character');
  assert.ok(!mentions('hey @AxB', 'A.B'));
  assert.ok(!mentions('anything', ''));
});

test('presence lines coalesce joins and leaves', () => {
  const u = (id) => ({ id, name: id[0].toUpperCase() + id.slice(1) });
  let s = { joined: [], left: [] };
  s = presenceUpdate(s, 'join', u('ann'));
  assert.equal(presenceText(s), 'Ann joined');
  s = presenceUpdate(s, 'join', u('bob'));
  s = presenceUpdate(s, 'leave', u('cid'));
  assert.equal(presenceText(s), 'Ann and Bob joined · Cid left');
  s = presenceUpdate(s, 'join', u('dee'));
  assert.equal(presenceText(s), 'Ann, Bob and Dee joined · Cid left');
  s = presenceUpdate(s, 'join', u('eve'));
  s = presenceUpdate(s, 'join', u('fay'));
  assert.equal(presenceText(s), 'Ann, Bob, Dee and 2 others joined · Cid left');
  // Cid reconnects: the leave and the join cancel out.
  s = presenceUpdate(s, 'join', u('cid'));
  assert.equal(presenceText(s), 'Ann, Bob, Dee and 2 others joined');
  // A short visit cancels out too.
  for (const id of ['bob', 'dee', 'eve', 'fay']) s = presenceUpdate(s, 'leave', u(id));
  assert.equal(presenceText(s), 'Ann joined');
  s = presenceUpdate(s, 'leave', u('ann'));
  assert.equal(presenceText(s), '');
  // A join twice (two tabs) is one.
  s = presenceUpdate(presenceUpdate({ joined: [], left: [] }, 'join', u('ann')), 'join', u('ann'));
  assert.equal(presenceText(s), 'Ann joined');
});

test('countdowns and durations', () => {
  const { countdown, duration } = strings.time;
  assert.equal(countdown(0), '0 s');
  assert.equal(countdown(9.2), '10 s');
  assert.equal(countdown(59), '59 s');
  assert.equal(countdown(60), '1:00');
  assert.equal(countdown(65), '1:05');
  assert.equal(countdown(3599), '59:59');
  assert.equal(countdown(3600 + 61), '1:01:01');
  assert.equal(countdown(-5), '0 s');
  assert.equal(duration(30), '30 s');
  assert.equal(duration(300), '5 min');
  assert.equal(duration(7200), '2 h');
  assert.equal(duration(86400), '1 day');
  assert.equal(duration(3 * 86400), '3 days');
});

test('slow mode refusals give the seconds left', () => {
  assert.equal(waitSeconds('slow mode: one message every 10 seconds; wait 7 more'), 7);
  assert.equal(waitSeconds('something else'), 0);
  assert.equal(waitSeconds(undefined), 0);
  assert.equal(DEFAULT_MAX_LEN, 500);
});

test('the end of a session is said once, without repeating the room\'s generic reason', () => {
  assert.equal(endText('kicked', 'kicked by a moderator'), strings.common.ended.kicked);
  assert.equal(endText('banned', 'banned'), strings.common.ended.banned);
  assert.equal(endText('banned', 'you are banned'), strings.common.ended.banned);
  assert.equal(endText('banned', 'you are banned: abuse'), strings.common.ended.banned + ' Reason: abuse.');
  assert.equal(endText('kicked', 'spam.'), strings.common.ended.kicked + ' Reason: spam.');
  assert.equal(endText('closed', ''), 'The room has ended.');
  assert.equal(endText('nonsense', ''), strings.common.ended.error);
  assert.doesNotMatch(endText('kicked', 'kicked by a moderator'), /moderator.*moderator/);
});

test('probe says why a playlist cannot be loaded', async () => {
  const answer = (status, body = '#EXTM3U\n') => async () => ({ ok: status < 300, status, statusText: status === 404 ? 'Not Found' : '', text: async () => body });
  assert.equal(await probe('http://x/a.m3u8', answer(200)), '');
  assert.match(await probe('http://x/a.m3u8', answer(404)), /HTTP 404 Not Found/);
  assert.match(await probe('http://x/a.m3u8', answer(200, '<html>')), /not an HLS playlist/);
  assert.match(await probe('http://x/a.m3u8', async () => { throw new TypeError('Failed to fetch'); }), /cannot be reached/);
  const never = (_, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))));
  assert.match(await probe('http://x/a.m3u8', never, 20), /did not answer within 0 s/);
});

test('room names follow the control API\'s rule', () => {
  for (const ok of ['a', 'demo', 'e2e-room', 'A_1', 'x'.repeat(64)]) assert.ok(ROOM_NAME.test(ok), ok);
  for (const bad of ['', '-a', '_a', 'a b', 'a/b', 'ä', 'x'.repeat(65), '<script>']) assert.ok(!ROOM_NAME.test(bad), bad);
});
