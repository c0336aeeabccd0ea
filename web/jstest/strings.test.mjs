// Unit tests of the strings module (web/static/js/strings.js): that it
// says everything, that the pages name only keys it has, and that no other
// module still holds a text shown to people. Run with `node --test` by
// TestClientJS (web/web_test.go).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';

const strings = await import('../static/js/strings.js');
const read = (rel) => readFileSync(new URL('../static/' + rel, import.meta.url), 'utf8');

const PAGES = ['index.html', 'live.html', 'admin.html', 'watch.html'];
// SECTIONS are the exported objects applyStrings looks keys up in.
const SECTIONS = ['common', 'chat', 'watch', 'api', 'lobby', 'live', 'console'];

test('strings: every section says things, and lookup finds each of its strings', () => {
  for (const section of [...SECTIONS, 'time']) assert.equal(typeof strings[section], 'object', section);
  // Functions that take a list get one; the others get '2' for each argument.
  const lists = /\.(joined|left|hostsDown|notTold)$/;
  const check = (where, v) => {
    if (typeof v === 'function') v = lists.test(where) ? v(['Ann', 'Bob']) : v(...Array(v.length).fill('2'));
    if (typeof v === 'object') return;
    assert.equal(typeof v, 'string', where);
    assert.ok(v.length > 0, where);
    assert.doesNotMatch(v, /undefined|NaN|\[object/, where);
  };
  for (const section of SECTIONS) {
    for (const [k, v] of Object.entries(strings[section])) {
      check(`${section}.${k}`, v);
      if (typeof v === 'string') assert.equal(strings.lookup(`${section}.${k}`), v, `lookup(${section}.${k})`);
    }
  }
  for (const [k, v] of Object.entries(strings.common.ended)) check(`common.ended.${k}`, v);
  assert.equal(strings.lookup('chat.nope'), undefined);
  assert.equal(strings.lookup('nope.send'), undefined);
  assert.equal(strings.lookup('common.people'), undefined, 'a function is no static text');
  assert.equal(strings.common.people(1), '1 person here');
  assert.equal(strings.common.people(2), '2 people here');
  assert.equal(strings.chat.joined(['Ann', 'Bob']), 'Ann and Bob joined');
  assert.equal(strings.console.bansCount(1, 'r1', true), '1 ban in room r1 so far.');
  assert.equal(strings.console.auditCount(3, '', false), '3 entries.');
});

// pageKeys returns a page's data-s* keys: [attribute, key].
function pageKeys(html) {
  return [...html.matchAll(/(data-s(?:-placeholder|-label|-title)?)="([^"]+)"/g)].map((m) => [m[1], m[2]]);
}

test('strings: every key a page names exists, and the page holds its English as the fallback', () => {
  for (const page of PAGES) {
    const html = read(page);
    const keys = pageKeys(html);
    assert.ok(keys.length > 10, `${page} names few strings`);
    for (const [attr, k] of keys) assert.equal(typeof strings.lookup(k), 'string', `${page} names ${k} (${attr}), which strings.js lacks`);
    // The text in the HTML is the module's, so the page reads the same
    // before and after applyStrings.
    for (const m of html.matchAll(/<\w+[^>]*? data-s="([^"]+)"[^>]*>([^<]*)</g)) {
      assert.equal(m[2], strings.lookup(m[1]), `${page}: the text of ${m[1]}`);
    }
    for (const [attr, name] of [['data-s-label', 'aria-label'], ['data-s-placeholder', 'placeholder'], ['data-s-title', 'title']]) {
      for (const m of html.matchAll(new RegExp(`<[^>]*${attr}="([^"]+)"[^>]*>`, 'g'))) {
        const v = m[0].match(new RegExp(` ${name}="([^"]*)"`));
        assert.equal(v && v[1], strings.lookup(m[1]), `${page}: the ${name} of ${m[1]}`);
      }
    }
  }
});

test('strings: every text a page shows has a key', () => {
  // Limits: a text must follow its element's opening tag directly (mixed
  // content, "a <a>b</a> c", is wrapped in spans); only aria-label,
  // placeholder and title attributes are checked; inline scripts are not
  // pages' text (there are none).
  const allowed = new Set(['chatfleet', '…']); // the brand; a link's stand-in
  for (const page of PAGES) {
    const html = read(page).replace(/<!--[\s\S]*?-->/g, '');
    for (const m of html.matchAll(/(<[^>]*>)([^<]*)/g)) {
      const [, tag, after] = m;
      const t = after.trim();
      if (!t || allowed.has(t) || !/\p{L}/u.test(t)) continue;
      assert.match(tag, /^<\w[^>]* data-s="[^"]+"/, `${page}: “${t}” has no data-s key (after ${tag})`);
    }
    for (const [name, attr] of [['aria-label', 'data-s-label'], ['placeholder', 'data-s-placeholder'], ['title', 'data-s-title']]) {
      for (const m of html.matchAll(new RegExp(`<[^>]* ${name}="[^"]*"[^>]*>`, 'g'))) {
        assert.ok(m[0].includes(` ${attr}="`), `${page}: ${name} without ${attr} in ${m[0]}`);
      }
    }
  }
});

test('strings: no key is given twice in a section (the last would silently win)', () => {
  const src = read('js/strings.js');
  const sections = [...src.matchAll(/export const (\w+) = \{\n([\s\S]*?)\n\};/g)];
  assert.ok(sections.length >= SECTIONS.length + 1, 'sections not found');
  for (const [, name, body] of sections) {
    // Keys are written one a line at two spaces' indent, so this finds
    // each of them; a second key on a line would hide from it.
    for (const line of body.split('\n')) {
      assert.doesNotMatch(line, /^ {2}\w+: '[^']*', \w+:/, `${name}: one key a line: ${line}`);
    }
    const keys = [...body.matchAll(/^ {2}(\w+)\s*[:(]/gm)].map((m) => m[1]);
    const twice = keys.filter((k, i) => keys.indexOf(k) !== i);
    assert.deepEqual(twice, [], `${name} gives ${twice.join(', ')} twice`);
  }
});

// A literal with letters: '…', "…" or `…` (with its ${…} left out).
const LIT = String.raw`(?:'[^'\n]*\p{L}[^'\n]*'|"[^"\n]*\p{L}[^"\n]*"|\x60[^\x60\n]*\p{L}[^\x60\n]*\x60)`;
// STRICT are the places a text shown to people goes: any literal with
// letters there is one.
const STRICT = [
  String.raw`\.textContent\s*=\s*`, // el.textContent = 'Hi'
  String.raw`\.(?:placeholder|title)\s*=\s*`, // input.placeholder = 'Hi', document.title = 'Hi'
  String.raw`setAttribute\(\s*'(?:aria-label|placeholder|title)'\s*,\s*`,
  String.raw`'aria-label'\s*:\s*`, // h('button', {'aria-label': 'Hi'})
  String.raw`\b(?:title|text|okLabel|label)\s*:\s*`, // {label: 'Retry', run}
  String.raw`\b(?:show|say|confirm|alert|ok|nameError)\(\s*`, // notice.show('Hi')
  String.raw`\bh\(\s*'\w+'\s*,\s*(?:\{[^{}\n]*\}|null)\s*,\s*`, // h('td', {}, 'Hi')
];
// LOOSE are the branches of a ternary and a fallback, where a text for
// people may hide among protocol values and class names: only a literal
// that reads as words (a capital first, or two words) counts there.
const LOOSE = [String.raw`\?\s*`, String.raw`\?[^:\n]*[^?:\s](?<![{,]\s*['\w-]+)\s*:\s*`, String.raw`\|\|\s*`];
const STRICT_RE = new RegExp(`(?:${STRICT.join('|')})(${LIT})`, 'gu');
const LOOSE_RE = new RegExp(`(?:${LOOSE.join('|')})(${LIT})`, 'gu');
const WORDS = /^\s*\p{Lu}\p{Ll}|\p{L}+ +\p{L}+/u;

// userTexts returns the literals of a module's source that look shown to
// people, as "line: literal". Limits: it reads one line at a time and
// skips comments; it knows only the places above, so a text built
// elsewhere and passed on (an Error's message, a reason given to a
// function) is not seen; in the loose places, a one-word lower-case text
// passes as a protocol value.
export function userTexts(src) {
  const found = [];
  src.split('\n').forEach((line, i) => {
    const code = line.replace(/^\s*\/\/.*$/, '').replace(/\s\/\/\s.*$/, '');
    const add = (m) => found.push(`${i + 1}: ${m[1]}`);
    const letters = (m) => /\p{L}/u.test(m[1].slice(1, -1).replace(/\$\{[^}]*\}/g, ''));
    for (const m of code.matchAll(STRICT_RE)) if (letters(m)) add(m);
    for (const m of code.matchAll(LOOSE_RE)) if (letters(m) && WORDS.test(m[1].slice(1, -1).replace(/\$\{[^}]*\}/g, ''))) add(m);
  });
  return found;
}

test('strings: the scan finds texts in the places texts go, and passes protocol values', () => {
  const bad = [
    "el.textContent = 'Hello there';",
    "document.title = `${name} · Go live`;",
    "notice.show('Type the admin key first.', { kind: 'error' });",
    "h('td', {}, 'forever'),",
    "h('button', { type: 'button', 'aria-label': `Stats of ${id}` }, 'Stats'),",
    "const display = x || (role === 'moderator' ? 'Moderator' : 'Guest');",
    "el.setAttribute('placeholder', 'Say something');",
    "const action = { label: 'Retry now', run };",
  ];
  for (const line of bad) assert.notDeepEqual(userTexts(line), [], line);
  const good = [
    "el.textContent = '';",
    "el.textContent = text.copied;",
    "h('span', { class: 'badge ' + cls }, x);",
    "if (['closed', 'failed'].includes(r.status)) return;",
    "const v = live ? 'live' : 'offline';",
    "q.set('room', room);",
    "this._lost(gen, 0, 'event stream failed'); // the developer's words",
    "// el.textContent = 'Hello there';",
    "$('#viewers-total').textContent = `(${total})`;",
    "x ? [h('span', { class: 'badge role-' + r }, r), ' '] : null",
  ];
  for (const line of good) assert.deepEqual(userTexts(line), [], line);
});

test('strings: no module but strings.js holds a text shown to people', () => {
  const dir = new URL('../static/js/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'strings.js');
  assert.ok(files.length >= 10, 'modules not found');
  for (const f of files) {
    assert.deepEqual(userTexts(readFileSync(new URL(f, dir), 'utf8')), [], `${f} holds texts for people: move them to strings.js`);
  }
});
