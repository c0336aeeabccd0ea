// Unit tests of the operator console's helpers (web/static/js/admin.js),
// run with `node --test` by TestClientJS (web/web_test.go).
import { test } from 'node:test';
import assert from 'node:assert/strict';

const { parseWords, failures } = await import('../static/js/admin.js');

test('parseWords splits on lines, spaces and commas and drops empties', () => {
  assert.deepEqual(parseWords('darn\nheck,  gosh\r\n\n shoot '), ['darn', 'heck', 'gosh', 'shoot']);
  assert.deepEqual(parseWords('  \n '), []);
  assert.deepEqual(parseWords(''), []);
});

test('failures names the hosts not told', () => {
  assert.equal(failures({ hosts: 2, failed: [], down: [] }), '');
  assert.equal(failures({}), '');
  assert.equal(
    failures({ failed: [{ hostId: 'host-3', error: 'host is down' }], down: ['host-4', 'host-5'] }),
    ' Not told: host-3: host is down; down: host-4, host-5.');
  assert.equal(failures({ failed: [{ hostId: '', error: 'cannot list hosts' }] }), ' Not told: hosts: cannot list hosts.');
});
