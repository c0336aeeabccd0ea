// Small DOM helpers and the parts every page has: the settings (API key)
// form in the header and the notice area. Text is always set as text, never
// as HTML.

import { apiKey, keySource, saveApiKey } from './settings.js';
import { common as C } from './strings.js';

export const $ = (sel, root = document) => root.querySelector(sel);

// h builds an element: h('button', {class: 'small', onclick: f}, 'Ban').
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function timeOf(ms) {
  const d = ms ? new Date(ms) : new Date();
  return h('time', { datetime: d.toISOString() }, d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
}

// Notice shows one message in a live region: kind '' (info), 'ok' or
// 'error'. Errors use role=alert so that screen readers say them at once.
export class Notice {
  constructor(el) {
    this.el = el;
  }

  show(text, { kind = '', action = null, alert = false } = {}) {
    this.el.replaceChildren();
    this.el.className = 'notice' + (kind ? ' ' + kind : '');
    this.el.setAttribute('role', alert ? 'alert' : 'status');
    this.el.append(h('span', { class: 'notice-text' }, text));
    if (action) this.el.append(h('button', { type: 'button', class: 'small secondary', onclick: action.run }, action.label));
    this.el.hidden = false;
  }

  clear() {
    this.el.replaceChildren();
    this.el.hidden = true;
  }
}

// setupSettings wires the header's API key form. onChange runs after a save.
export function setupSettings(onChange) {
  const form = $('#settings-form');
  if (!form) return;
  const input = $('#api-key');
  const status = $('#api-key-status');
  const show = () => {
    const src = keySource();
    input.value = src === 'saved' ? apiKey() : '';
    status.textContent =
      src === 'saved' ? C.keySaved :
      src === 'config' ? C.keyConfig :
      C.keyNone;
  };
  show();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    saveApiKey(input.value);
    show();
    form.closest('details').open = false;
    if (onChange) onChange();
  });
  $('#api-key-clear').addEventListener('click', () => {
    saveApiKey('');
    show();
    if (onChange) onChange();
  });
}

// openSettings opens the settings form and focuses the key field.
export function openSettings() {
  const d = $('details.settings');
  if (!d) return;
  d.open = true;
  $('#api-key').focus();
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    if (button) {
      const old = button.textContent;
      button.textContent = C.copied;
      setTimeout(() => (button.textContent = old), 1500);
    }
  } catch {
    // No clipboard (insecure origin): the text stays visible to copy by hand.
  }
}
