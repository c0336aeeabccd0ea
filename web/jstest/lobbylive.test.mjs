// Unit tests of the lobby's and go-live page's strings (the "lobby and
// go-live" part of web/static/js/strings.js) and of the create call's body
// (web/static/js/api.js), run with `node --test` by TestClientJS.
import { test } from 'node:test';
import assert from 'node:assert/strict';

const store = new Map();
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
globalThis.location = { search: '', pathname: '/live.html', hash: '' };

const { live, lobby, api } = await import('../static/js/strings.js');
const { createRoom, ApiError } = await import('../static/js/api.js');

test('the lobby and go-live texts', () => {
  assert.equal(lobby.roomsCount(1, 0), '1 room, 0 live.');
  assert.equal(lobby.roomsCount(3, 2), '3 rooms, 2 live.');
  assert.equal(live.mutedFor(65_000), 'muted, 1:05 left');
  assert.equal(live.mutedFor(9_000), 'muted, 9 s left');
  assert.equal(live.streamHttp(404, 'Not Found'), "The stream can't be loaded: its server answered 404 Not Found. Check the playlist URL.");
  assert.equal(live.streamHttp(502, ''), "The stream can't be loaded: its server answered 502. Check the playlist URL.");
  assert.equal(live.nameTaken, 'That name is taken: choose another.');
});

test('createRoom sends the title and the producer name, and only when given', async () => {
  const bodies = [];
  globalThis.fetch = async (url, init) => {
    bodies.push([url, init.headers['X-API-Key'], JSON.parse(init.body)]);
    return new Response(JSON.stringify({ data: { name: 'r', token: 't' } }), { status: 201 });
  };
  store.set('chatfleet.apiKey', 'K');
  assert.deepEqual(await createRoom('r', { title: 'Jazz', ownerName: 'Ann' }), { name: 'r', token: 't' });
  await createRoom('r');
  assert.deepEqual(bodies, [['/api/v1/rooms/r', 'K', { title: 'Jazz', ownerName: 'Ann' }], ['/api/v1/rooms/r', 'K', {}]]);
});

test('an unreachable API is said for people', async () => {
  globalThis.fetch = async () => {
    throw new TypeError('Failed to fetch');
  };
  await assert.rejects(createRoom('r'), (e) => e instanceof ApiError && e.status === 0 && e.message === api.unreachable);
});
