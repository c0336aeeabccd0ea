// Unit tests of the browser client's connection logic (web/static/js/room.js),
// run with `node --test` by TestClientJS (web/web_test.go).
import { test } from 'node:test';
import assert from 'node:assert/strict';

// room.js listens to the window's online/offline events.
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

const { RoomConnection, Close } = await import('../static/js/room.js');

// connection returns a RoomConnection past its welcome, as if its transport
// had just closed, and the events it dispatches.
function connection() {
  const c = new RoomConnection({ credentials: async () => ({}) });
  c._running = true;
  c._welcomed = true;
  c._worked.ws = true;
  const events = [];
  c.addEventListener('ended', (e) => events.push(['ended', e.detail]));
  c.addEventListener('state', (e) => events.push(['state', e.detail]));
  return { c, events };
}

for (const [code, why] of [
  [Close.banned, 'banned'],
  [Close.kicked, 'kicked'],
  [Close.notEntitled, 'notEntitled'],
  [Close.replaced, 'replaced'],
  [Close.goingAway, 'closed'],
]) {
  test(`close ${code} ends the connection (${why}) without a retry`, () => {
    const { c, events } = connection();
    try {
      c._lost(c._gen, code, 'the reason');
      assert.equal(c.state, 'ended');
      assert.equal(c._timer, null, 'a retry is scheduled');
      const ended = events.find(([type]) => type === 'ended');
      assert.deepEqual(ended && ended[1], { why, code, reason: 'the reason' });
    } finally {
      c.stop(); // clears any retry timer, so that a failure does not hang the run
    }
  });
}

for (const code of [1006, Close.restart, Close.tooSlow]) {
  test(`close ${code} after the welcome schedules a reconnect`, () => {
    const { c, events } = connection();
    try {
      c._lost(c._gen, code, '');
      assert.equal(c.state, 'reconnecting');
      assert.notEqual(c._timer, null, 'no retry scheduled');
      assert.ok(!events.some(([type]) => type === 'ended'));
    } finally {
      c.stop();
    }
  });
}
