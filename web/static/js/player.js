// Player plays the room's HLS stream in a <video>: with hls.js when it is
// installed (web/build.sh copies it to /vendor/), else with the browser's
// own HLS support (Safari, iOS, some Chromium builds).

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

export class Player {
  constructor(video, status) {
    this.video = video;
    this.status = status;
    this.url = '';
    this.hls = null;
    this.engine = ''; // 'hls.js', 'native' or ''
    this._retry = null;
    this.offline('The stream is offline.');
  }

  _say(text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  }

  offline(text = 'The stream is offline.') {
    this._stop();
    this.url = '';
    this._say(text);
  }

  _stop() {
    clearTimeout(this._retry);
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    this.video.removeAttribute('src');
    this.video.load();
    this.engine = '';
  }

  async play(url) {
    if (url === this.url && this.engine) return;
    this._stop();
    this.url = url;
    this._say('Loading the stream…');
    const Hls = await loadHls();
    if (this.url !== url) return; // changed meanwhile
    const v = this.video;
    v.muted = true; // browsers allow muted autoplay; the controls unmute
    if (Hls && Hls.isSupported()) {
      this.engine = 'hls.js';
      const hls = new Hls({ liveDurationInfinity: true });
      this.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        this._say('');
        v.play().catch(() => {});
      });
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        this._say('The stream cannot be loaded right now; retrying…');
        this.engine = '';
        this._retry = setTimeout(() => this.play(url), 5000);
      });
      hls.loadSource(url);
      hls.attachMedia(v);
    } else if (v.canPlayType('application/vnd.apple.mpegurl')) {
      this.engine = 'native';
      v.src = url;
      v.addEventListener('loadedmetadata', () => this._say(''), { once: true });
      v.addEventListener('error', () => this._say('The stream cannot be played.'), { once: true });
      v.play().catch(() => {});
    } else {
      this._say('This browser cannot play HLS and hls.js is not installed (run `make web`). Stream: ' + url);
    }
  }
}
