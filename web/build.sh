#!/usr/bin/env bash
# Installs the web client's third-party assets (hls.js, pinned in
# package-lock.json) and copies them into static/vendor/, which go:embed
# picks up at the next `go build`. The client works without them (the
# browser's native HLS), so a machine without npm or the registry gets a
# warning, not a failure. Quick when the copy is newer than the lock file.
set -euo pipefail
cd "$(dirname "$0")"
out=static/vendor/hls.min.js
if [[ -f $out && $out -nt package-lock.json && -z ${FORCE:-} ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "web: npm not found: the client will use the browser's native HLS (apt-get install npm, then make web)" >&2
  exit 0
fi
if ! npm ci --no-audit --no-fund --loglevel=error; then
  echo "web: npm ci failed: the client will use the browser's native HLS" >&2
  exit 0
fi
mkdir -p static/vendor
cp node_modules/hls.js/dist/hls.min.js "$out"
echo "web: $out ($(node -p 'require("./node_modules/hls.js/package.json").version' 2>/dev/null || echo '?'))"
