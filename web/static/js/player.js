// Player plays the room's HLS stream in a <video>: with hls.js when it is
// installed (web/build.sh copies it to /vendor/), else with the browser's
// own HLS support (Safari, iOS, some Chromium builds). A stream that cannot
// be loaded is tried a few times, then shown as unavailable with the cause
// (HTTP status, timeout) until the page is told to try again.

import { common as C } from './strings.js';

const HLS_SRC = '/vendor/hls.min.js';

let hlsLoad = null;

// loadHls loads hls.js once; it resolves to window.Hls or null.
function loadHls() {
  if (!hlsLoad) {
    hlsLoad = new Promise((resolve) => {
      if (window.Hls) return resolve(window.Hls);
      const s = document.createElement('script');
      s.src = HLS_SRC;
      s.async = true;
      s.onload = () => resolve(window.Hls || null);
      s.onerror = () => resolve(null);
      document.head.append(s);
    });
  }
  return hlsLoad;
}

// RETRIES is how many times a stream that fails to load is tried again
// before the player says it is unavailable; RETRY_DELAYS the waits (ms).
export const RETRIES = 3;
const RETRY_DELAYS = [1000, 2000, 4000];
const PROBE_TIMEOUT = 10000; // ms for the playlist to answer

// probe asks for the playlist and returns '' when it answers with one,
// else why not, for people.
export async function probe(url, fetchFn = fetch, timeout = PROBE_TIMEOUT) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeout);
  try {
    const res = await fetchFn(url, { cache: 'no-store', signal: ctl.signal });
    if (!res.ok) return C.httpStatus(res.status, res.statusText);
    const text = await res.text();
    return text.trimStart().startsWith('#EXTM3U') ? '' : C.notPlaylist;
  } catch (e) {
    return e && e.name === 'AbortError' ? C.timedOut(Math.round(timeout / 1000)) : C.unreachable;
  } finally {
    clearTimeout(timer);
  }
}

// hlsReason says why hls.js gave up on the stream, from its error data.
function hlsReason(data) {
  const code = data.response && data.response.code;
  if (code) return C.httpStatus(code, '');
  if (/TimeOut/i.test(data.details || '')) return C.timedOut(Math.round(PROBE_TIMEOUT / 1000));
  return C.unreachable;
}

export class Player {
  constructor(video, status) {
    this.video = video;
    this.status = status;
    this.url = '';
    this.hls = null;
    this.engine = ''; // 'hls.js', 'native' or ''
    this.state = ''; // offline, loading, retrying, playing, unavailable
    this.reason = ''; // why the stream is unavailable or retried
    this.failures = 0;
    this._retry = null;
    this.offline(C.streamOffline);
  }

  // _say shows text over the video, with detail in smaller type below it.
  _say(state, text, detail = '') {
    this.state = state;
    this.status.dataset.state = state;
    this.status.replaceChildren();
    if (text) this.status.append(Object.assign(document.createElement('strong'), { textContent: text }));
    if (detail) this.status.append(Object.assign(document.createElement('small'), { textContent: detail }));
    this.status.hidden = !text;
  }

  offline(text = C.streamOffline) {
    this._stop();
    this.url = '';
    this.failures = 0;
    this.reason = '';
    this._say('offline', text);
  }

  _stop() {
    clearTimeout(this._retry);
    this._retry = null;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    this.video.removeAttribute('src');
    this.video.load();
    this.engine = '';
  }

  // _failed counts a failed load: it tries again after a while, or, after
  // RETRIES, says the stream is unavailable and why, and waits for play
  // with fresh.
  _failed(url, reason) {
    if (this.url !== url) return;
    this._stop();
    this.reason = reason;
    this.failures++;
    if (this.failures > RETRIES) {
      this._say('unavailable', C.streamUnavailable, reason);
      return;
    }
    this._say('retrying', C.streamRetrying(this.failures, RETRIES), reason);
    this._retry = setTimeout(() => this._load(url), RETRY_DELAYS[this.failures - 1] || 10000);
  }

  // play plays url. fresh (the room just said the stream is live) starts
  // the count of failures again, so that a player that gave up tries anew.
  play(url, { fresh = false } = {}) {
    if (url === this.url && !fresh && (this.engine || this._retry || this.state === 'unavailable' || this.state === 'loading')) return;
    this._stop();
    this.url = url;
    this.failures = 0;
    this.reason = '';
    this._load(url);
  }

  async _load(url) {
    this._say('loading', C.streamLoading);
    const Hls = await loadHls();
    const v = this.video;
    const withHls = !!(Hls && Hls.isSupported());
    const why = await probe(url);
    if (this.url !== url) return; // changed meanwhile
    // A browser's own HLS player needs no CORS, which the probe does: a
    // stream it cannot read may still play there.
    const nativeMayPlay = !withHls && why === C.unreachable && v.canPlayType('application/vnd.apple.mpegurl');
    if (why && !nativeMayPlay) {
      this._failed(url, why);
      return;
    }
    v.muted = true; // browsers allow muted autoplay; the controls unmute
    if (withHls) {
      this.engine = 'hls.js';
      const hls = new Hls({ liveDurationInfinity: true });
      this.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        this.failures = 0;
        this._say('playing', '');
        v.play().catch(() => {});
      });
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        this._failed(url, hlsReason(data));
      });
      hls.loadSource(url);
      hls.attachMedia(v);
    } else if (v.canPlayType('application/vnd.apple.mpegurl')) {
      this.engine = 'native';
      v.src = url;
      v.addEventListener('loadedmetadata', () => {
        this.failures = 0;
        this._say('playing', '');
      }, { once: true });
      v.addEventListener('error', () => this._failed(url, C.mediaError), { once: true });
      v.play().catch(() => {});
    } else {
      this._say('unavailable', C.cannotPlay, C.cannotPlayHint);
    }
  }
}
