#!/usr/bin/env bash
# Makes a short HLS test stream (video on demand) for the web client's "Use demo
# stream" button, without a streaming engine: ffmpeg's test pattern and tone,
# 30 seconds in 2-second segments, written to .data/demo-hls/index.m3u8
# (DEMO_HLS_DIR to change it). The local stack serves it at /demo/ when it
# is there. Needs ffmpeg (Debian: apt-get install ffmpeg); without it, it
# says so and exits 0, since the demo is a nicety.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DEMO_HLS_DIR:-.data/demo-hls}
if ! command -v ffmpeg >/dev/null; then
  echo "demo-hls: ffmpeg not found (apt-get install ffmpeg); no demo stream" >&2
  exit 0
fi
if [[ -f $out/index.m3u8 && -z ${FORCE:-} ]]; then
  echo "demo-hls: $out/index.m3u8 exists (FORCE=1 makes it again)"
  exit 0
fi
mkdir -p "$out"
rm -f "$out"/*.ts "$out"/index.m3u8
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100" \
  -t 30 -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -g 50 -keyint_min 50 -sc_threshold 0 \
  -c:a aac -b:a 96k -ac 2 \
  -f hls -hls_time 2 -hls_list_size 0 -hls_playlist_type vod \
  -hls_segment_filename "$out/seg%03d.ts" "$out/index.m3u8"
echo "demo-hls: $out/index.m3u8 ($(ls "$out"/*.ts | wc -l) segments)"
